//! The Ollama backend against a fake Ollama that speaks the real wire protocol.

use chimera::llm::{
    CallRecord, LlmError, LlmErrorKind, Message, ModelSpec, OllamaBackend, Timeouts,
};
use chimera::workflow::BackendKind;
use chimera_tests::fake_ollama::{Chunking, FakeConfig, FakeOllama, Fault, Metrics, refused_url};
use chimera_tests::support::{chat_collecting, model_spec};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::Duration;

const MODEL: &str = "gemma3:latest";

fn model_at(host: &str, options: &[(&str, Value)], keep_alive: Option<Value>) -> ModelSpec {
    ModelSpec {
        hosts: Vec::new(),
        keep_alive,
        ..model_spec(BackendKind::Ollama, MODEL, Some(host), options)
    }
}

fn prompt() -> Vec<Message> {
    vec![
        Message::new("system", "You are a careful analyst."),
        Message::new("user", "Summarise the data."),
    ]
}

/// Runs one chat against `host`; returns the result and the pieces `on_token` saw.
async fn chat_with(
    backend: &OllamaBackend,
    model: &ModelSpec,
    messages: &[Message],
) -> (Result<CallRecord, LlmError>, Vec<String>) {
    chat_collecting(backend, model, messages).await
}

async fn chat(fake: &FakeOllama) -> (Result<CallRecord, LlmError>, Vec<String>) {
    let backend = OllamaBackend::new(Timeouts::default());
    chat_with(&backend, &model_at(&fake.url(), &[], None), &prompt()).await
}

async fn chat_error(fake: &FakeOllama) -> LlmError {
    match chat(fake).await.0 {
        Ok(r) => panic!("expected a failure, got {r:?}"),
        Err(e) => e,
    }
}

fn assert_mentions(message: &str, phrases: &[&str]) {
    for phrase in phrases {
        assert!(
            message.contains(phrase),
            "`{phrase}` missing from: {message}"
        );
    }
}

#[tokio::test]
async fn the_request_carries_options_exactly_as_declared_and_keep_alive() {
    let fake = FakeOllama::start(FakeConfig::default());
    let options = [
        ("num_gpu", json!(80)),
        ("num_ctx", json!(512)),
        ("temperature", json!(0.8)),
    ];
    let model = model_at(&fake.url(), &options, Some(json!("10m")));
    let backend = OllamaBackend::new(Timeouts::default());
    let (record, _) = chat_with(&backend, &model, &prompt()).await;
    let record = record.expect("the call succeeds");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/api/chat")
    );
    let body = &request.body;
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["stream"], true);
    assert_eq!(body["keep_alive"], "10m");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You are a careful analyst."},
            {"role": "user", "content": "Summarise the data."}
        ])
    );
    // Exactly as declared: same keys, same order, same JSON types.
    assert_eq!(
        body["options"].to_string(),
        r#"{"num_gpu":80,"num_ctx":512,"temperature":0.8}"#
    );
    assert_eq!(record.options, model.options);
    assert_eq!(
        (
            record.backend.as_str(),
            record.endpoint.as_str(),
            record.model.as_str()
        ),
        ("ollama", "/api/chat", MODEL)
    );
    assert_eq!(record.host, fake.url());
    assert_eq!(record.attempts, 1);
    let started = &record.started_at;
    assert!(
        started.len() >= 20 && started.contains('T') && started.ends_with('Z'),
        "{started}"
    );
}

#[tokio::test]
async fn no_options_and_no_keep_alive_are_sent_when_none_are_declared() {
    let fake = FakeOllama::start(FakeConfig::default());
    chat(&fake).await.0.expect("the call succeeds");
    let body = &fake.requests()[0].body;
    assert!(body.get("options").is_none(), "{body}");
    assert!(body.get("keep_alive").is_none(), "{body}");
}

#[tokio::test]
async fn streamed_text_is_the_tokens_in_order_whatever_the_chunking() {
    let tokens = ["h", "é", "llo", " w", "ö", "rld", " 🚀"];
    let modes = [
        Chunking::LinePerChunk,
        Chunking::LinesPerChunk(3),
        Chunking::SplitMidLine,
        Chunking::Bytes(1),
        Chunking::Bytes(7),
    ];
    for mode in modes {
        let fake = FakeOllama::start(FakeConfig::tokens(tokens).chunking(mode));
        let (record, pieces) = chat(&fake).await;
        let record = record.unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(record.text, "héllo wörld 🚀", "{mode:?}");
        assert_eq!(pieces, tokens, "{mode:?}");
        assert_eq!(record.eval_count, Some(tokens.len() as u64), "{mode:?}");
        assert_eq!(record.done_reason.as_deref(), Some("stop"), "{mode:?}");
    }
}

#[tokio::test]
async fn ttft_is_at_least_the_servers_first_token_delay_and_at_most_wall_time() {
    let first = Duration::from_millis(150);
    let config = FakeConfig::token_count(5).delays(first, Duration::from_millis(10));
    let fake = FakeOllama::start(config);
    let record = chat(&fake).await.0.expect("the call succeeds");
    let ttft = record.ttft_ms.expect("a first token");
    assert!(ttft >= 150.0, "ttft {ttft} ms");
    assert!(
        ttft <= record.wall_ms,
        "ttft {ttft} ms > wall {} ms",
        record.wall_ms
    );
    // Four more tokens, 10 ms apart, come after the first one.
    assert!(
        record.wall_ms >= ttft + 40.0,
        "wall {} ms, ttft {ttft} ms",
        record.wall_ms
    );
}

#[tokio::test]
async fn metrics_come_from_the_final_chunk_and_tokens_per_second_is_computed() {
    let metrics = Metrics {
        total_duration: Some(2_750_000_000),
        load_duration: Some(500_000_000),
        prompt_eval_count: Some(26),
        prompt_eval_duration: Some(250_000_000),
        eval_count: Some(40),
        eval_duration: Some(1_600_000_000),
        done_reason: Some("length".into()),
    };
    let fake = FakeOllama::start(FakeConfig::token_count(3).metrics(metrics));
    let r = chat(&fake).await.0.expect("the call succeeds");
    assert_eq!(r.total_duration_ms, Some(2750.0));
    assert_eq!(r.load_duration_ms, Some(500.0));
    assert_eq!(r.prompt_eval_duration_ms, Some(250.0));
    assert_eq!(r.eval_duration_ms, Some(1600.0));
    assert_eq!(r.prompt_eval_count, Some(26));
    assert_eq!(r.eval_count, Some(40));
    let tps = r.tokens_per_second.expect("tokens per second");
    assert!((tps - 40.0 / 1_600_000_000.0 * 1e9).abs() < 1e-9, "{tps}");
    assert!((tps - 25.0).abs() < 1e-9, "{tps}");
    assert_eq!(r.done_reason.as_deref(), Some("length"));
    assert!(!r.prompt_truncated);
    assert!(r.error.is_none());
}

#[tokio::test]
async fn a_prompt_that_fills_num_ctx_is_flagged_as_truncated() {
    let metrics = Metrics {
        prompt_eval_count: Some(512),
        ..Metrics::default()
    };
    let fake = FakeOllama::start(FakeConfig::default().metrics(metrics));
    let backend = OllamaBackend::new(Timeouts::default());
    let with_ctx = model_at(&fake.url(), &[("num_ctx", json!(512))], None);
    let record = chat_with(&backend, &with_ctx, &prompt())
        .await
        .0
        .expect("ok");
    assert!(record.prompt_truncated);
    let without_ctx = model_at(&fake.url(), &[], None);
    let record = chat_with(&backend, &without_ctx, &prompt())
        .await
        .0
        .expect("ok");
    assert!(!record.prompt_truncated);
}

#[tokio::test]
async fn one_server_answers_several_calls() {
    let fake = FakeOllama::start(FakeConfig::tokens(["a", "b"]));
    let backend = OllamaBackend::new(Timeouts::default());
    let model = model_at(&fake.url(), &[], None);
    for _ in 0..3 {
        let record = chat_with(&backend, &model, &prompt()).await.0.expect("ok");
        assert_eq!(record.text, "ab");
    }
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn model_not_found_names_the_model_and_host_and_says_to_pull_it() {
    let fake = FakeOllama::start(FakeConfig::default().fault(Fault::Status(404)));
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::ModelNotFound);
    assert_mentions(
        &e.to_string(),
        &[
            "model `gemma3:latest` not found on ",
            &fake.url(),
            "`ollama pull gemma3:latest`",
            r#"model "gemma3:latest" not found, try pulling it first"#,
        ],
    );
    assert_eq!(e.record.error.as_deref(), Some(e.to_string().as_str()));
}

#[tokio::test]
async fn a_bad_request_shows_the_status_and_the_servers_error() {
    let fake = FakeOllama::start(FakeConfig::default().fault(Fault::Status(400)));
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::BadRequest);
    assert_mentions(
        &e.to_string(),
        &[
            "400 Bad Request",
            "invalid options: num_ctx must be a number",
            &fake.url(),
            "`gemma3:latest`",
            "`options:`",
        ],
    );
}

#[tokio::test]
async fn a_server_error_shows_the_status_the_servers_error_and_a_hint() {
    let fake = FakeOllama::start(FakeConfig::default().fault(Fault::Status(500)));
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::ServerError);
    assert_mentions(
        &e.to_string(),
        &[
            "500 Internal Server Error",
            "llama runner process has terminated",
            &fake.url(),
            "`gemma3:latest`",
            "`num_ctx`",
            "server log",
        ],
    );
}

#[tokio::test]
async fn an_error_line_in_the_stream_fails_the_call_and_keeps_the_partial_text() {
    let fake = FakeOllama::start(
        FakeConfig::tokens(["one ", "two ", "three"]).fault(Fault::ErrorLineAfter(2)),
    );
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::ErrorInStream);
    assert_mentions(
        &e.to_string(),
        &["unexpected EOF", &fake.url(), "`gemma3:latest`"],
    );
    assert_eq!(e.record.text, "one two ");
    assert!(e.record.ttft_ms.is_some());
    assert!(e.record.eval_count.is_none());
}

#[tokio::test]
async fn a_stream_without_a_done_chunk_is_incomplete_and_keeps_the_partial_text() {
    let fake =
        FakeOllama::start(FakeConfig::tokens(["one ", "two ", "three"]).fault(Fault::CutAfter(2)));
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::IncompleteStream);
    assert_mentions(
        &e.to_string(),
        &[
            "without its final `done` chunk",
            &fake.url(),
            "`gemma3:latest`",
        ],
    );
    assert_eq!(e.record.text, "one two ");
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_incomplete_and_keeps_the_partial_text() {
    let config = FakeConfig::tokens(["one ", "two ", "three"]).fault(Fault::ResetAfter(1));
    let fake = FakeOllama::start(config);
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::IncompleteStream);
    assert_mentions(
        &e.to_string(),
        &["broke before its final `done` chunk", &fake.url()],
    );
    assert_eq!(e.record.text, "one ");
}

#[tokio::test]
async fn a_stalled_stream_fails_after_the_read_timeout_and_keeps_the_partial_text() {
    let fake = FakeOllama::start(FakeConfig::tokens(["one ", "two "]).fault(Fault::StallAfter(1)));
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        read: Duration::from_millis(300),
    };
    let backend = OllamaBackend::new(timeouts);
    let (result, pieces) = chat_with(&backend, &model_at(&fake.url(), &[], None), &prompt()).await;
    let e = result.expect_err("the stream stalls");
    assert_eq!(e.kind, LlmErrorKind::Stalled);
    assert_mentions(
        &e.to_string(),
        &["sent nothing for 300ms", &fake.url(), "`gemma3:latest`"],
    );
    assert_eq!(e.record.text, "one ");
    assert_eq!(pieces, ["one "]);
    assert!(
        e.record.wall_ms >= 300.0 && e.record.wall_ms < 5000.0,
        "{}",
        e.record.wall_ms
    );
}

#[tokio::test]
async fn connection_refused_says_where_and_to_start_ollama_serve() {
    let url = refused_url();
    let backend = OllamaBackend::new(Timeouts::default());
    let (result, _) = chat_with(&backend, &model_at(&url, &[], None), &prompt()).await;
    let e = result.expect_err("nothing listens");
    assert_eq!(e.kind, LlmErrorKind::ConnectionRefused);
    assert_eq!(
        e.to_string(),
        format!(
            "cannot reach Ollama at {url} for model `gemma3:latest`: connection refused; is Ollama running at {url}? start it with `ollama serve`"
        )
    );
    assert!(e.record.text.is_empty());
}

#[test]
fn the_fake_answers_root_and_tags_from_a_sync_test() {
    let fake = FakeOllama::start(FakeConfig::default());
    let get = |path: &str| {
        let mut stream = std::net::TcpStream::connect(fake.addr()).expect("connect");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut response = String::new();
        // `Connection: close`: the fake closes after answering.
        stream.read_to_string(&mut response).expect("read");
        response
    };
    let root = get("/");
    assert!(root.starts_with("HTTP/1.1 200 OK\r\n"), "{root}");
    assert!(root.ends_with("\r\n\r\nOllama is running"), "{root}");
    let tags = get("/api/tags");
    let body = tags
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let tags: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(tags["models"][0]["name"], MODEL);
    let paths: Vec<_> = fake
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            ("GET".to_owned(), "/".to_owned()),
            ("GET".to_owned(), "/api/tags".to_owned())
        ]
    );
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a
/// connect hangs until the client gives up (Linux behaviour).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_connect_timeout_names_the_host_and_the_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(([127, 0, 0, 1], 0).into()).expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("address");
    let mut held = Vec::new();
    let full = (0..64).any(|_| {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(stream) => {
                held.push(stream);
                false
            }
            Err(_) => true,
        }
    });
    assert!(
        full,
        "the accept queue never filled; connections held: {}",
        held.len()
    );

    let timeouts = Timeouts {
        connect: Duration::from_millis(200),
        read: Duration::from_secs(5),
    };
    let url = format!("http://{addr}");
    let backend = OllamaBackend::new(timeouts);
    let (result, _) = chat_with(&backend, &model_at(&url, &[], None), &prompt()).await;
    let e = result.expect_err("no connection");
    assert_eq!(e.kind, LlmErrorKind::ConnectTimeout);
    assert_mentions(
        &e.to_string(),
        &[
            &url,
            "`gemma3:latest`",
            "no connection within 200ms",
            "`OLLAMA_HOST`",
        ],
    );
    assert!(
        e.record.wall_ms >= 200.0 && e.record.wall_ms < 5000.0,
        "{}",
        e.record.wall_ms
    );
    drop(listener);
}

#[tokio::test]
async fn a_busy_server_says_so() {
    let fake = FakeOllama::start(FakeConfig::default().fault(Fault::Status(503)));
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::Http(503));
    assert_mentions(
        &e.to_string(),
        &[
            "503 Service Unavailable",
            "too busy",
            &fake.url(),
            "`gemma3:latest`",
        ],
    );
}

#[tokio::test]
async fn a_server_that_is_not_ollama_is_named_as_such() {
    let fake = FakeOllama::start(FakeConfig::default().fault(Fault::Status(418)));
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::Http(418));
    let url = fake.url();
    assert_mentions(
        &e.to_string(),
        &["418", &format!("is {url} an Ollama server?")],
    );
}

#[tokio::test]
async fn a_stall_before_the_first_line_is_a_stall() {
    let fake = FakeOllama::start(FakeConfig::default().fault(Fault::StallAfter(0)));
    let timeouts = Timeouts {
        connect: Duration::from_secs(1),
        read: Duration::from_millis(200),
    };
    let backend = OllamaBackend::new(timeouts);
    let (result, pieces) = chat_with(&backend, &model_at(&fake.url(), &[], None), &prompt()).await;
    let e = result.expect_err("the server stalls");
    assert_eq!(e.kind, LlmErrorKind::Stalled);
    assert_mentions(
        &e.to_string(),
        &["sent no answer within 1.2s", &fake.url(), "`ollama ps`"],
    );
    assert!(pieces.is_empty());
    assert!(e.record.ttft_ms.is_none());
}
