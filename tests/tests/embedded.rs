//! The `embedded` backend with the real default model (SmolLM2-135M): these
//! tests fail, on purpose, when it is not downloaded — run
//! `scripts/fetch-model` first (CI does).

use chimera::llm::models::{self, DEFAULT_MODEL};
use chimera::llm::{
    Backend, CallRecord, EmbeddedBackend, LlmError, LlmErrorKind, Message, ModelSpec,
};
use chimera::workflow::BackendKind;
use chimera_tests::support::{chat_collecting, model_spec};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The default model's file; fails the test when it is not downloaded.
fn model_path() -> PathBuf {
    match models::resolve(DEFAULT_MODEL) {
        Ok(m) => m.path,
        Err(e) => panic!(
            "the embedded tests need model `{DEFAULT_MODEL}`: run scripts/fetch-model first ({e})"
        ),
    }
}

fn spec(name: &str, options: &[(&str, Value)]) -> ModelSpec {
    model_spec(BackendKind::Embedded, name, None, options)
}

/// Greedy and short, so answers are fast and repeatable. One thread: test
/// runners run tests side by side, and llama.cpp threads that outnumber the
/// free cores spin at every barrier (measured on 2 cores: ~70 tok/s with one
/// thread, down to ~1-15 tok/s with two while another process is busy).
fn greedy(num_predict: i64) -> Vec<(&'static str, Value)> {
    vec![
        ("num_predict", json!(num_predict)),
        ("temperature", json!(0)),
        ("seed", json!(1)),
        ("num_thread", json!(1)),
    ]
}

fn ask(question: &str) -> Vec<Message> {
    vec![
        Message::new("system", "You are a helpful assistant. Answer briefly."),
        Message::new("user", question),
    ]
}

/// One chat; the result and the pieces `on_token` saw.
async fn chat(
    backend: &EmbeddedBackend,
    model: &ModelSpec,
    messages: &[Message],
) -> (Result<CallRecord, LlmError>, Vec<String>) {
    chat_collecting(backend, model, messages).await
}

async fn chat_ok(model: &ModelSpec, messages: &[Message]) -> (CallRecord, Vec<String>) {
    let (result, pieces) = chat(&EmbeddedBackend::new(), model, messages).await;
    match result {
        Ok(r) => (r, pieces),
        Err(e) => panic!("the call failed: {e}"),
    }
}

#[tokio::test]
async fn a_short_generation_streams_text_and_reports_its_metrics() {
    model_path();
    let model = spec(DEFAULT_MODEL, &greedy(24));
    let (r, pieces) = chat_ok(&model, &ask("What is the capital of France?")).await;

    assert!(!r.text.trim().is_empty(), "{r:?}");
    assert_eq!(pieces.concat(), r.text, "on_token saw the whole text");
    assert!(pieces.iter().all(|p| !p.is_empty()));
    assert_eq!(
        (r.backend.as_str(), r.host.as_str(), r.model.as_str()),
        ("embedded", "in-process", DEFAULT_MODEL)
    );
    assert!(r.endpoint.ends_with(".gguf"), "{}", r.endpoint);
    let eval_count = r.eval_count.expect("eval_count");
    assert!((1..=24).contains(&eval_count), "{eval_count}");
    assert!(r.tokens_per_second.expect("tokens/s") > 0.0);
    assert!(r.eval_duration_ms.expect("eval_duration") > 0.0);
    assert!(r.prompt_eval_count.expect("prompt_eval_count") > 0);
    assert!(r.prompt_eval_duration_ms.expect("prompt_eval_duration") > 0.0);
    let (ttft, total) = (
        r.ttft_ms.expect("ttft"),
        r.total_duration_ms.expect("total"),
    );
    assert!(
        ttft > 0.0 && ttft <= total && total <= r.wall_ms,
        "ttft {ttft}, total {total}, wall {}",
        r.wall_ms
    );
    assert!(r.load_duration_ms.is_some());
    assert!(
        matches!(r.done_reason.as_deref(), Some("stop" | "length")),
        "{:?}",
        r.done_reason
    );
    assert!(!r.prompt_truncated);
    assert_eq!(r.error, None);
    assert_eq!(r.options["num_predict"], 24);
}

#[tokio::test]
async fn the_model_load_is_recorded_once_per_model() {
    // A file of its own, so no other test has loaded it in this process.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("own.gguf");
    if std::fs::hard_link(model_path(), &copy).is_err() {
        std::fs::copy(model_path(), &copy).expect("copy the model");
    }
    let backend = Arc::new(EmbeddedBackend::new());
    let model = spec(copy.to_str().expect("utf-8 path"), &greedy(4));

    let (first, _) = chat(&backend, &model, &ask("Say hi.")).await;
    let first = first.expect("first call");
    assert!(first.load_duration_ms.expect("load") > 0.0, "{first:?}");

    let second = tokio::spawn({
        let (backend, model) = (backend.clone(), model.clone());
        async move { backend.chat(&model, &ask("Say hi."), &|_| {}).await }
    })
    .await
    .expect("task")
    .expect("second call");
    assert_eq!(
        second.load_duration_ms,
        Some(0.0),
        "the second call reuses the loaded model"
    );
    assert_eq!(second.text, first.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_to_one_model_are_serialized_and_both_succeed() {
    model_path();
    let backend = Arc::new(EmbeddedBackend::new());
    let model = spec(DEFAULT_MODEL, &greedy(16));
    let call = || {
        let (backend, model) = (backend.clone(), model.clone());
        tokio::spawn(async move {
            let pieces = Mutex::new(Vec::new());
            let on_token = |t: &str| pieces.lock().expect("pieces").push(t.to_owned());
            let r = backend
                .chat(&model, &ask("Name three colours."), &on_token)
                .await;
            (r, pieces.into_inner().expect("pieces"))
        })
    };
    let (a, b) = (call(), call());
    let (a, a_pieces) = a.await.expect("task a");
    let (b, b_pieces) = b.await.expect("task b");
    let (a, b) = (a.expect("call a"), b.expect("call b"));
    assert!(!a.text.trim().is_empty());
    // Greedy decoding on one model: the same prompt gives the same answer
    // unless the calls corrupted each other's state.
    assert_eq!(a.text, b.text);
    assert_eq!(a_pieces.concat(), a.text);
    assert_eq!(b_pieces.concat(), b.text);
    assert_eq!(a.eval_count, b.eval_count);
}

#[tokio::test]
async fn a_stop_string_ends_generation_and_is_left_out() {
    model_path();
    let question = ask("List the days of the week, one per line.");
    let (free, _) = chat_ok(&spec(DEFAULT_MODEL, &greedy(32)), &question).await;
    // A word from the middle of the free answer becomes the stop string.
    let words: Vec<&str> = free
        .text
        .split_whitespace()
        .filter(|w| w.chars().all(char::is_alphabetic) && w.len() >= 3)
        .collect();
    assert!(words.len() >= 3, "too short an answer: {:?}", free.text);
    let stop = words[words.len() / 2].to_owned();
    let at = free.text.find(&stop).expect("the stop is in the text");

    let mut options = greedy(32);
    options.push(("stop", json!([stop.clone(), "unlikely-stop-string"])));
    let (stopped, pieces) = chat_ok(&spec(DEFAULT_MODEL, &options), &question).await;
    assert_eq!(stopped.text, free.text[..at], "stop {stop:?}");
    assert!(
        !pieces.concat().contains(&stop),
        "the stop string never reaches on_token"
    );
    assert_eq!(stopped.done_reason.as_deref(), Some("stop"));
    assert!(stopped.eval_count < free.eval_count);
}

#[tokio::test]
async fn num_predict_bounds_the_answer() {
    model_path();
    let model = spec(DEFAULT_MODEL, &greedy(5));
    let (r, _) = chat_ok(
        &model,
        &ask("Write a long story about a lighthouse keeper."),
    )
    .await;
    assert_eq!(r.eval_count, Some(5));
    assert_eq!(r.done_reason.as_deref(), Some("length"));
}

#[tokio::test]
async fn a_prompt_longer_than_num_ctx_is_cut_and_flagged() {
    model_path();
    let options = |num_ctx: u32| {
        let mut o = greedy(8);
        // Small batches: the prompt is decoded in several chunks.
        o.extend([("num_ctx", json!(num_ctx)), ("num_batch", json!(32))]);
        o
    };
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(20);
    let question = ask(&format!("{long}\nHow many foxes?"));
    let (r, _) = chat_ok(&spec(DEFAULT_MODEL, &options(128)), &question).await;
    assert!(r.prompt_truncated);
    let prompt = r.prompt_eval_count.expect("prompt_eval_count");
    assert!(
        (100..=128 - 8).contains(&prompt),
        "{prompt} prompt tokens in a 128-token context"
    );
    assert!(r.eval_count.expect("eval_count") <= 8);

    // The same prompt fits a larger context, and is not flagged there.
    let (r, _) = chat_ok(&spec(DEFAULT_MODEL, &options(512)), &question).await;
    assert!(!r.prompt_truncated);
    assert!(r.prompt_eval_count.expect("prompt_eval_count") > 128);
}

/// Set in the child process of the test below.
const EMPTY_MODEL_DIR: &str = "CHIMERA_TEST_EMPTY_MODEL_DIR";

#[tokio::test]
async fn a_missing_catalogue_model_gives_the_fetch_command() {
    if std::env::var_os(EMPTY_MODEL_DIR).is_none() {
        // The model dir comes from the environment: run this test again in a
        // child process whose model dir is empty.
        let dir = tempfile::tempdir().expect("temp dir");
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "a_missing_catalogue_model_gives_the_fetch_command",
                "--exact",
                "--nocapture",
            ])
            .env("CHIMERA_MODEL_DIR", dir.path())
            .env(EMPTY_MODEL_DIR, "1")
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let model = spec(DEFAULT_MODEL, &greedy(4));
    let (result, pieces) = chat(&EmbeddedBackend::new(), &model, &ask("Hi")).await;
    let e = result.expect_err("no model in an empty model dir");
    assert_eq!(e.kind, LlmErrorKind::ModelNotFound);
    assert!(
        e.message
            .starts_with("model `smollm2-135m` is not downloaded"),
        "{e}"
    );
    assert!(
        e.message
            .ends_with("run `scripts/fetch-model smollm2-135m`"),
        "{e}"
    );
    assert_eq!(e.record.error.as_deref(), Some(e.message.as_str()));
    assert_eq!(e.record.backend, "embedded");
    assert!(pieces.is_empty());
}

#[tokio::test]
async fn a_file_that_is_not_a_gguf_fails_to_load_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"this is not a model").expect("write");
    let model = spec(bad.to_str().expect("utf-8 path"), &greedy(4));
    let (result, _) = chat(&EmbeddedBackend::new(), &model, &ask("Hi")).await;
    let e = result.expect_err("not a model");
    assert_eq!(e.kind, LlmErrorKind::ServerError);
    assert!(e.message.starts_with("cannot load model `"), "{e}");
    assert!(
        e.message
            .ends_with("check that the path names a GGUF model file"),
        "{e}"
    );
}
