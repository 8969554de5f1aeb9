//! Concurrent calls to the embedded model are decoded together, each as its
//! own sequence of one llama.cpp context: each gets its own answer, and its
//! record counts its own tokens and its own share of the time.

use chimera::llm::{Backend, CallRecord, EmbeddedBackend, Message, ModelSpec};
use chimera::workflow::BackendKind;
use serde_json::json;
use std::sync::Mutex;

fn spec() -> ModelSpec {
    let mut options = indexmap::IndexMap::new();
    options.insert("temperature".to_owned(), json!(0));
    options.insert("num_predict".to_owned(), json!(12));
    options.insert("num_ctx".to_owned(), json!(512));
    ModelSpec {
        hosts: Vec::new(),
        backend: BackendKind::Embedded,
        name: "smollm2-135m".into(),
        host: None,
        api_key_env: None,
        keep_alive: None,
        options,
    }
}

fn ask(word: &str) -> Vec<Message> {
    vec![Message::new(
        "user",
        format!("Repeat this word exactly, and write nothing else: {word}"),
    )]
}

/// One call: its record and the pieces `on_token` saw.
async fn call(
    backend: &EmbeddedBackend,
    model: &ModelSpec,
    word: &str,
) -> (CallRecord, Vec<String>) {
    send(backend, model, &ask(word)).await
}

async fn send(
    backend: &EmbeddedBackend,
    model: &ModelSpec,
    messages: &[Message],
) -> (CallRecord, Vec<String>) {
    let pieces = Mutex::new(Vec::new());
    let record = backend
        .chat(model, messages, &|p| {
            pieces.lock().unwrap().push(p.to_owned())
        })
        .await
        .unwrap_or_else(|e| panic!("the call {messages:?} failed: {e}"));
    (record, pieces.into_inner().unwrap())
}

#[test]
fn concurrent_calls_each_get_their_own_answer_and_their_own_counts() {
    chimera::llm::models::resolve("smollm2-135m")
        .unwrap_or_else(|e| panic!("{e}\nrun scripts/fetch-model first"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = EmbeddedBackend::new();
    let model = spec();
    let words = ["giraffe", "violin"];

    // Alone first (this loads the model): what each prompt gives by itself.
    let solo: Vec<(CallRecord, Vec<String>)> = words
        .iter()
        .map(|w| runtime.block_on(call(&backend, &model, w)))
        .collect();
    for ((record, _), word) in solo.iter().zip(words) {
        let batch = record
            .batch
            .as_ref()
            .expect("the embedded record says how it was batched");
        assert_eq!(batch.peak_sequences, 1, "`{word}` ran alone: {batch:?}");
    }

    // Then both at once.
    let (a, b) = runtime.block_on(async {
        tokio::join!(
            call(&backend, &model, words[0]),
            call(&backend, &model, words[1])
        )
    });
    let together = [a, b];
    for ((((record, pieces), word), other), (alone, alone_pieces)) in together
        .iter()
        .zip(words)
        .zip(words.iter().rev())
        .zip(&solo)
    {
        let text = record.text.to_lowercase();
        assert!(
            text.contains(word),
            "the call for `{word}` answered {:?}",
            record.text
        );
        assert!(
            !text.contains(other),
            "the call for `{word}` got the other call's word: {:?}",
            record.text
        );
        let batch = record.batch.as_ref().unwrap();
        assert_eq!(
            batch.peak_sequences, 2,
            "the calls were decoded together: {batch:?}"
        );
        assert!(batch.slots >= 2, "{batch:?}");
        // Its tokens are its own: greedy decoding starts the way it did
        // alone (only the start: a batch of other shapes may round the last
        // bits differently, and a near-tie later could then go the other
        // way), and one streamed piece per generated token (plain words, no
        // stop strings).
        let head = 4.min(alone_pieces.len());
        assert_eq!(
            pieces[..head.min(pieces.len())],
            alone_pieces[..head],
            "`{word}` together and alone: {:?} / {:?}",
            record.text,
            alone.text
        );
        assert_eq!(pieces.concat(), record.text);
        assert_eq!(
            record.eval_count,
            Some(pieces.len() as u64),
            "`{word}`: {pieces:?}"
        );
        assert!(record.ttft_ms.is_some_and(|t| t > 0.0));
        assert!(batch.compute_ms > 0.0);
        assert!(
            batch.compute_ms <= record.wall_ms,
            "a share of the time, not more than the call took: {batch:?} vs {} ms",
            record.wall_ms
        );
    }
}

#[test]
fn a_cancelled_call_leaves_the_batch_at_once() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = EmbeddedBackend::new();
    let mut long = spec();
    long.options.insert("num_predict".to_owned(), json!(400));
    // Loads the model, so the timeout below cuts a call mid-generation.
    runtime.block_on(call(&backend, &spec(), "maple"));
    // A story, not one word: the model must still be generating when the
    // timeout cuts the call (a one-word answer ends at its end-of-turn token
    // well inside 200 ms).
    let story = [Message::new(
        "user",
        "Write a long story about a harbor town, with many characters.",
    )];
    let cut = runtime.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_millis(200),
            send(&backend, &long, &story),
        )
        .await
    });
    assert!(
        cut.is_err(),
        "a 400-token story takes longer than 200 ms here"
    );
    let (record, _) = runtime.block_on(call(&backend, &spec(), "violin"));
    assert_eq!(
        record.batch.unwrap().peak_sequences,
        1,
        "the dropped call's sequence is no longer decoded"
    );
}
