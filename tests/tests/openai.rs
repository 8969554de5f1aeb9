//! The OpenAI-compatible backend against a fake server that speaks the real
//! wire protocol (server-sent events over chunked HTTP/1.1).

use chimera::llm::{
    CallRecord, LlmError, LlmErrorKind, Message, ModelSpec, OpenAiBackend, Timeouts,
};
use chimera::workflow::BackendKind;
use chimera_tests::fake_openai::{
    Chunking, FakeConfig, FakeOpenAi, Fault, RETRY_AFTER_SECS, Timings, refused_url,
};
use chimera_tests::support::{chat_collecting, model_spec};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

const MODEL: &str = "qwen2.5-7b-instruct";
/// Set in the child process a test re-runs itself in (see [`in_child_with_env`]).
const CHILD_MARK: &str = "CHIMERA_OPENAI_TEST_CHILD";

fn model_at(host: &str, options: &[(&str, Value)], api_key_env: Option<&str>) -> ModelSpec {
    ModelSpec {
        hosts: Vec::new(),
        api_key_env: api_key_env.map(str::to_owned),
        ..model_spec(BackendKind::Openai, MODEL, Some(host), options)
    }
}

fn prompt() -> Vec<Message> {
    vec![
        Message::new("system", "You are a careful analyst."),
        Message::new("user", "Summarise the data."),
    ]
}

/// Runs one chat; returns the result and the pieces `on_token` saw.
async fn chat_with(
    backend: &OpenAiBackend,
    model: &ModelSpec,
) -> (Result<CallRecord, LlmError>, Vec<String>) {
    chat_collecting(backend, model, &prompt()).await
}

async fn chat(fake: &FakeOpenAi) -> (Result<CallRecord, LlmError>, Vec<String>) {
    let backend = OpenAiBackend::new(Timeouts::default());
    chat_with(&backend, &model_at(&fake.base_url(), &[], None)).await
}

async fn chat_error(fake: &FakeOpenAi) -> LlmError {
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

/// Whether this process is the child that runs `test` with `vars` set.
///
/// A test binary runs its tests on many threads, so its own environment
/// cannot be changed safely; a test that needs a variable runs again in a
/// child process of the binary, started with the variable set. The parent
/// gets `false` after checking that the child ran the test and passed.
fn in_child_with_env(test: &str, vars: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD_MARK).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let output = Command::new(exe)
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_MARK, "1")
        .envs(vars.iter().copied())
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "`{test}` failed in its child process:\n{stdout}\n{stderr}"
    );
    false
}

#[tokio::test]
async fn the_request_carries_the_messages_a_usage_request_and_the_mapped_options() {
    let fake = FakeOpenAi::start(FakeConfig::default());
    let options = [
        ("num_ctx", json!(8192)),
        ("temperature", json!(0.2)),
        ("num_gpu", json!(99)),
        ("num_predict", json!(256)),
        ("top_k", json!(40)),
        ("stop", json!("</answer>")),
        ("repeat_penalty", json!(1.1)),
        ("use_mmap", json!(true)),
        ("seed", json!(7)),
    ];
    let model = model_at(&fake.base_url(), &options, None);
    let backend = OpenAiBackend::new(Timeouts::default());
    let record = chat_with(&backend, &model)
        .await
        .0
        .expect("the call succeeds");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(request.header("authorization"), None);
    assert_eq!(
        request.body.to_string(),
        json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are a careful analyst."},
                {"role": "user", "content": "Summarise the data."}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.2,
            "max_tokens": 256,
            "top_k": 40,
            "stop": "</answer>",
            "repeat_penalty": 1.1,
            "seed": 7
        })
        .to_string()
    );
    for server_side in ["num_ctx", "num_gpu", "use_mmap", "num_predict", "options"] {
        assert!(request.body.get(server_side).is_none(), "{server_side}");
    }
    // The record holds what was sent, under the names sent.
    assert_eq!(
        serde_json::to_string(&record.options).expect("JSON"),
        r#"{"temperature":0.2,"max_tokens":256,"top_k":40,"stop":"</answer>","repeat_penalty":1.1,"seed":7}"#
    );
    assert_eq!(
        (
            record.backend.as_str(),
            record.endpoint.as_str(),
            record.model.as_str()
        ),
        ("openai", "/v1/chat/completions", MODEL)
    );
    assert_eq!(record.host, fake.url());
    assert_eq!(record.attempts, 1);
}

#[tokio::test]
async fn the_base_url_may_be_written_with_or_without_v1() {
    let fake = FakeOpenAi::start(FakeConfig::default());
    let backend = OpenAiBackend::new(Timeouts::default());
    let bases = [
        fake.url(),
        format!("{}/", fake.url()),
        fake.base_url(),
        format!("{}/", fake.base_url()),
    ];
    for base in &bases {
        let record = chat_with(&backend, &model_at(base, &[], None)).await.0;
        assert_eq!(record.expect("the call succeeds").text, "Hello, world!");
    }
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v1/chat/completions"; 4]);
}

#[tokio::test]
async fn streamed_text_is_the_tokens_in_order_whatever_the_chunking() {
    let tokens = ["h", "é", "llo", " w", "ö", "rld", " 🚀"];
    let modes = [
        Chunking::EventPerChunk,
        Chunking::EventsPerChunk(3),
        Chunking::SplitMidEvent,
        Chunking::Bytes(1),
        Chunking::Bytes(7),
    ];
    for mode in modes {
        for (crlf, comments) in [(false, false), (true, true)] {
            let mut config = FakeConfig::tokens(tokens).chunking(mode);
            config.crlf = crlf;
            config.comments = comments;
            let fake = FakeOpenAi::start(config);
            let (record, pieces) = chat(&fake).await;
            let case = format!("{mode:?}, crlf {crlf}, comments {comments}");
            let record = record.unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(record.text, "héllo wörld 🚀", "{case}");
            assert_eq!(pieces, tokens, "{case}");
            assert_eq!(record.eval_count, Some(tokens.len() as u64), "{case}");
            assert_eq!(record.done_reason.as_deref(), Some("stop"), "{case}");
        }
    }
}

#[tokio::test]
async fn done_ends_the_stream_and_a_finish_reason_without_done_is_also_an_end() {
    let fake = FakeOpenAi::start(FakeConfig {
        done: false,
        ..FakeConfig::default()
    });
    let record = chat(&fake).await.0.expect("a finish_reason ends the call");
    assert_eq!(record.text, "Hello, world!");
    assert_eq!(record.done_reason.as_deref(), Some("stop"));

    // `[DONE]` alone ends it too, as some servers send no `finish_reason`.
    let fake = FakeOpenAi::start(FakeConfig {
        finish_reason: None,
        ..FakeConfig::default()
    });
    let record = chat(&fake).await.0.expect("`[DONE]` ends the call");
    assert_eq!(record.text, "Hello, world!");
    assert_eq!(record.done_reason, None);
}

#[tokio::test]
async fn the_usage_chunk_gives_the_token_counts() {
    let fake = FakeOpenAi::start(FakeConfig {
        prompt_tokens: Some(26),
        ..FakeConfig::token_count(5)
    });
    let record = chat(&fake).await.0.expect("the call succeeds");
    assert_eq!(record.prompt_eval_count, Some(26));
    assert_eq!(record.eval_count, Some(5));
    assert!(record.estimated.is_empty(), "{:?}", record.estimated);

    // Without usage, the streamed chunks are counted and the record says the
    // count (and the rate from it) is an estimate; the prompt's stays unknown.
    let fake = FakeOpenAi::start(FakeConfig {
        usage: false,
        ..FakeConfig::token_count(5)
    });
    let record = chat(&fake).await.0.expect("the call succeeds");
    assert_eq!(
        (record.prompt_eval_count, record.eval_count),
        (None, Some(5))
    );
    assert_eq!(record.estimated, ["eval_count", "tokens_per_second"]);
    assert!(record.tokens_per_second.is_some_and(|t| t > 0.0));
    assert_eq!(record.text.matches("tok").count(), 5);
}

#[tokio::test]
async fn ttft_and_generation_time_are_measured_by_the_client() {
    let first = Duration::from_millis(150);
    let config = FakeConfig::token_count(5).delays(first, Duration::from_millis(20));
    let fake = FakeOpenAi::start(config);
    let r = chat(&fake).await.0.expect("the call succeeds");
    let ttft = r.ttft_ms.expect("a first token");
    assert!(ttft >= 150.0, "ttft {ttft} ms");
    assert!(ttft <= r.wall_ms, "ttft {ttft} ms > wall {} ms", r.wall_ms);
    // Four more tokens, 20 ms apart, come after the first one.
    let eval = r.eval_duration_ms.expect("a generation time");
    assert!(eval >= 80.0, "eval {eval} ms");
    assert!(ttft + eval <= r.wall_ms + 1.0, "{r:?}");
    let tps = r.tokens_per_second.expect("tokens per second");
    assert!((tps - 5.0 / eval * 1000.0).abs() < 1e-9, "{tps}");
    assert_eq!(r.total_duration_ms, Some(r.wall_ms));
    assert_eq!(
        (r.prompt_eval_duration_ms, r.load_duration_ms),
        (None, None)
    );
}

#[tokio::test]
async fn llama_cpp_timings_are_preferred_to_client_measurements() {
    let timings = Timings {
        prompt_n: 26,
        prompt_ms: 250.0,
        predicted_n: 40,
        predicted_ms: 1600.0,
        predicted_per_second: 25.0,
    };
    let fake = FakeOpenAi::start(FakeConfig {
        usage: false,
        ..FakeConfig::token_count(3).timings(timings)
    });
    let r = chat(&fake).await.0.expect("the call succeeds");
    assert_eq!(r.prompt_eval_duration_ms, Some(250.0));
    assert_eq!(r.eval_duration_ms, Some(1600.0));
    assert_eq!(r.tokens_per_second, Some(25.0));
    // Without a usage chunk, the counts come from the timings too.
    assert_eq!((r.prompt_eval_count, r.eval_count), (Some(26), Some(40)));
}

#[tokio::test]
async fn a_prompt_that_fills_the_declared_num_ctx_is_flagged_as_truncated() {
    let fake = FakeOpenAi::start(FakeConfig {
        prompt_tokens: Some(512),
        ..FakeConfig::default()
    });
    let backend = OpenAiBackend::new(Timeouts::default());
    let with_ctx = model_at(&fake.base_url(), &[("num_ctx", json!(512))], None);
    let record = chat_with(&backend, &with_ctx).await.0.expect("ok");
    assert!(record.prompt_truncated);
    let without_ctx = model_at(&fake.base_url(), &[], None);
    let record = chat_with(&backend, &without_ctx).await.0.expect("ok");
    assert!(!record.prompt_truncated);
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_token_and_never_recorded() {
    const VAR: &str = "CHIMERA_TEST_OPENAI_KEY_SENT";
    const KEY: &str = "sk-test-7c1f0b2e";
    if !in_child_with_env(
        "the_api_key_is_sent_as_a_bearer_token_and_never_recorded",
        &[(VAR, KEY)],
    ) {
        return;
    }
    let fake = FakeOpenAi::start(FakeConfig::default().api_key(KEY));
    let backend = OpenAiBackend::new(Timeouts::default());
    let model = model_at(&fake.base_url(), &[], Some(VAR));
    let record = chat_with(&backend, &model)
        .await
        .0
        .expect("the key is accepted");
    assert_eq!(record.text, "Hello, world!");
    let request = &fake.requests()[0];
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let recorded = serde_json::to_string(&record).expect("JSON");
    assert!(!recorded.contains(KEY), "{recorded}");

    let models = backend
        .list_models(Some(&fake.base_url()), Some(VAR))
        .await
        .expect("the key is accepted");
    assert_eq!(models, [MODEL]);
}

#[tokio::test]
async fn a_refused_api_key_names_its_variable_but_not_the_key() {
    const VAR: &str = "CHIMERA_TEST_OPENAI_KEY_REFUSED";
    const KEY: &str = "sk-test-wrong-5d2a";
    if !in_child_with_env(
        "a_refused_api_key_names_its_variable_but_not_the_key",
        &[(VAR, KEY)],
    ) {
        return;
    }
    let fake = FakeOpenAi::start(FakeConfig::default().api_key("sk-test-right"));
    let backend = OpenAiBackend::new(Timeouts::default());
    let model = model_at(&fake.base_url(), &[], Some(VAR));
    let e = chat_with(&backend, &model)
        .await
        .0
        .expect_err("a wrong key");
    assert_eq!(e.kind, LlmErrorKind::Unauthorized);
    assert_mentions(
        &e.to_string(),
        &[
            &format!("refused the API key from `${VAR}`"),
            "401 Unauthorized",
            "`Invalid API Key`",
            &fake.url(),
            "check",
        ],
    );
    assert!(!format!("{e:?}").contains(KEY));
}

#[tokio::test]
async fn a_server_that_wants_a_key_says_to_set_api_key_env() {
    let fake = FakeOpenAi::start(FakeConfig::default().api_key("sk-test-right"));
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::Unauthorized);
    assert_mentions(
        &e.to_string(),
        &["wants an API key", "`api_key_env:`", &fake.url(), MODEL],
    );
}

#[tokio::test]
async fn an_unset_key_variable_fails_before_any_request_and_names_the_variable() {
    const VAR: &str = "CHIMERA_TEST_OPENAI_KEY_NEVER_SET";
    let fake = FakeOpenAi::start(FakeConfig::default());
    let backend = OpenAiBackend::new(Timeouts::default());
    let model = model_at(&fake.base_url(), &[], Some(VAR));
    let e = chat_with(&backend, &model).await.0.expect_err("no key");
    assert_eq!(e.kind, LlmErrorKind::MissingApiKey);
    assert_eq!(
        e.to_string(),
        format!(
            "the API key for model `{MODEL}` on the server at {} comes from `${VAR}`, which is not set; set `{VAR}` to the key, or remove `api_key_env:` from the model if the server needs none",
            fake.url()
        )
    );
    assert!(fake.requests().is_empty());

    let e = backend
        .list_models(Some(&fake.url()), Some(VAR))
        .await
        .expect_err("no key");
    assert_eq!(e.kind, LlmErrorKind::MissingApiKey);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn an_error_event_in_the_stream_fails_the_call_and_keeps_the_partial_text() {
    let fake = FakeOpenAi::start(
        FakeConfig::tokens(["one ", "two ", "three"]).fault(Fault::ErrorEventAfter(2)),
    );
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::ErrorInStream);
    assert_mentions(
        &e.to_string(),
        &[
            "`llama_decode failed: the KV cache is full`",
            &fake.url(),
            MODEL,
            "partial response (8 characters) is kept",
        ],
    );
    assert_eq!(e.record.text, "one two ");
    assert!(e.record.ttft_ms.is_some());
    assert_eq!(e.record.error.as_deref(), Some(e.to_string().as_str()));
}

#[tokio::test]
async fn a_stream_without_finish_reason_or_done_is_incomplete_and_keeps_the_partial_text() {
    let fake =
        FakeOpenAi::start(FakeConfig::tokens(["one ", "two ", "three"]).fault(Fault::CutAfter(2)));
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::IncompleteStream);
    assert_mentions(
        &e.to_string(),
        &[
            "without a `finish_reason` or `data: [DONE]`",
            &fake.url(),
            MODEL,
        ],
    );
    assert_eq!(e.record.text, "one two ");
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_incomplete_and_keeps_the_partial_text() {
    let config = FakeConfig::tokens(["one ", "two ", "three"]).fault(Fault::ResetAfter(1));
    let fake = FakeOpenAi::start(config);
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::IncompleteStream);
    assert_mentions(&e.to_string(), &["broke before its end", &fake.url()]);
    assert_eq!(e.record.text, "one ");
}

#[tokio::test]
async fn a_stalled_stream_fails_after_the_read_timeout_and_keeps_the_partial_text() {
    let fake = FakeOpenAi::start(FakeConfig::tokens(["one ", "two "]).fault(Fault::StallAfter(1)));
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        read: Duration::from_millis(300),
    };
    let backend = OpenAiBackend::new(timeouts);
    let (result, pieces) = chat_with(&backend, &model_at(&fake.base_url(), &[], None)).await;
    let e = result.expect_err("the stream stalls");
    assert_eq!(e.kind, LlmErrorKind::Stalled);
    assert_mentions(
        &e.to_string(),
        &["sent nothing for 300ms", &fake.url(), MODEL],
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
async fn a_stall_before_the_response_headers_is_a_stall() {
    let fake = FakeOpenAi::start(FakeConfig::default().fault(Fault::StallAfter(0)));
    let timeouts = Timeouts {
        connect: Duration::from_secs(1),
        read: Duration::from_millis(200),
    };
    let backend = OpenAiBackend::new(timeouts);
    let (result, pieces) = chat_with(&backend, &model_at(&fake.base_url(), &[], None)).await;
    let e = result.expect_err("the server stalls");
    assert_eq!(e.kind, LlmErrorKind::Stalled);
    assert_mentions(&e.to_string(), &["sent no answer within 1.2s", &fake.url()]);
    assert!(pieces.is_empty());
    assert!(e.record.ttft_ms.is_none());
}

#[tokio::test]
async fn connection_refused_asks_whether_the_server_is_running_there() {
    let url = refused_url();
    let backend = OpenAiBackend::new(Timeouts::default());
    let (result, _) = chat_with(&backend, &model_at(&format!("{url}/v1"), &[], None)).await;
    let e = result.expect_err("nothing listens");
    assert_eq!(e.kind, LlmErrorKind::ConnectionRefused);
    assert_mentions(
        &e.to_string(),
        &[
            &format!(
                "cannot reach the OpenAI-compatible server at {url} for model `{MODEL}`: connection refused; is the server running at {url}?"
            ),
            "`OPENAI_BASE_URL`",
        ],
    );
    assert!(e.record.text.is_empty());
}

#[tokio::test]
async fn an_unknown_model_names_both_the_model_and_the_base_url_as_suspects() {
    let fake = FakeOpenAi::start(FakeConfig::default().fault(Fault::Status(404)));
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::ModelNotFound);
    let url = fake.url();
    assert_mentions(
        &e.to_string(),
        &[
            &format!("model `{MODEL}` not found at {url}"),
            &format!("The model `{MODEL}` does not exist."),
            &format!("or {url} is not the base URL of an OpenAI-compatible API"),
            &format!("`{url}/v1/chat/completions`"),
            "`OPENAI_BASE_URL`",
        ],
    );
}

#[tokio::test]
async fn a_wrong_base_url_path_is_a_404_that_names_the_url_requested() {
    let fake = FakeOpenAi::start(FakeConfig::default());
    let backend = OpenAiBackend::new(Timeouts::default());
    let base = format!("{}/api/v1", fake.url());
    let e = chat_with(&backend, &model_at(&base, &[], None))
        .await
        .0
        .expect_err("no such path");
    assert_eq!(e.kind, LlmErrorKind::ModelNotFound);
    assert_mentions(
        &e.to_string(),
        &[
            "`File Not Found`",
            &format!("`{}/api/v1/chat/completions`", fake.url()),
        ],
    );
}

#[tokio::test]
async fn a_rate_limit_says_so_and_passes_on_retry_after() {
    let fake = FakeOpenAi::start(FakeConfig::default().fault(Fault::Status(429)));
    let e = chat_error(&fake).await;
    assert_eq!(e.kind, LlmErrorKind::RateLimited);
    assert_mentions(
        &e.to_string(),
        &[
            "rate-limited",
            "429 Too Many Requests",
            "`Rate limit reached for requests`",
            &format!("retry after `{RETRY_AFTER_SECS}`"),
            &fake.url(),
            MODEL,
        ],
    );
}

#[tokio::test]
async fn bad_requests_and_server_errors_show_the_servers_message() {
    let cases = [
        (
            400,
            LlmErrorKind::BadRequest,
            "the request exceeds the available context size",
            "`options:`",
        ),
        (
            500,
            LlmErrorKind::ServerError,
            "failed to allocate memory for the KV cache",
            "server's log",
        ),
        (
            503,
            LlmErrorKind::Http(503),
            "Loading model",
            "loading the model",
        ),
        (
            418,
            LlmErrorKind::Http(418),
            "something went wrong",
            "is http",
        ),
    ];
    for (code, kind, said, hint) in cases {
        let fake = FakeOpenAi::start(FakeConfig::default().fault(Fault::Status(code)));
        let e = chat_error(&fake).await;
        assert_eq!(e.kind, kind, "{code}");
        assert_mentions(
            &e.to_string(),
            &[&code.to_string(), said, hint, &fake.url()],
        );
    }
}

#[tokio::test]
async fn list_models_reads_v1_models() {
    let fake = FakeOpenAi::start(FakeConfig {
        models: vec!["qwen2.5-7b-instruct".into(), "gemma-3-4b-it".into()],
        ..FakeConfig::default()
    });
    let backend = OpenAiBackend::new(Timeouts::default());
    for base in [fake.url(), fake.base_url()] {
        let models = backend
            .list_models(Some(&base), None)
            .await
            .expect("a model list");
        assert_eq!(models, ["qwen2.5-7b-instruct", "gemma-3-4b-it"]);
    }
    let request = &fake.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/v1/models")
    );
}

#[tokio::test]
async fn list_models_failures_say_where_and_why() {
    let backend = OpenAiBackend::new(Timeouts::default());
    let url = refused_url();
    let e = backend
        .list_models(Some(&url), None)
        .await
        .expect_err("nothing listens");
    assert_eq!(e.kind, LlmErrorKind::ConnectionRefused);
    assert_mentions(&e.to_string(), &[&url, "for its model list"]);

    let fake = FakeOpenAi::start(FakeConfig::default().api_key("sk-test-right"));
    let e = backend
        .list_models(Some(&fake.url()), None)
        .await
        .expect_err("a key is wanted");
    assert_eq!(e.kind, LlmErrorKind::Unauthorized);
    assert_mentions(&e.to_string(), &["`api_key_env:`"]);

    let wrong = format!("{}/api", fake.url());
    let e = backend
        .list_models(Some(&wrong), None)
        .await
        .expect_err("no such path");
    assert_eq!(e.kind, LlmErrorKind::Http(404));
    assert_mentions(
        &e.to_string(),
        &[
            &format!("`{wrong}/v1/models`"),
            "base URL",
            "`OPENAI_BASE_URL`",
        ],
    );
}
