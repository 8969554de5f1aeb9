//! Retries over real HTTP: a fake server fails some requests, then answers;
//! only failures before any token, that another try may not repeat, are retried.

use chimera::llm::{
    Backend, CallRecord, LlmError, LlmErrorKind, Message, ModelSpec, OllamaBackend, OpenAiBackend,
    RetryPolicy, Timeouts, chat_with_retry,
};
use chimera::workflow::BackendKind;
use chimera_tests::fake_ollama::{FakeConfig, FakeOllama, Fault, refused_url};
use chimera_tests::fake_openai::{self, FakeOpenAi, RETRY_AFTER_SECS};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MODEL: &str = "gemma3:latest";

fn model_at(backend: BackendKind, name: &str, host: &str) -> ModelSpec {
    ModelSpec {
        hosts: Vec::new(),
        backend,
        name: name.into(),
        host: Some(host.into()),
        api_key_env: None,
        keep_alive: None,
        options: Default::default(),
    }
}

/// Retries in a test's time: waits of a few milliseconds.
fn fast(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    }
}

/// One call through the retries; returns the result and the pieces `on_token` saw.
async fn call(
    backend: &dyn Backend,
    model: &ModelSpec,
    policy: &RetryPolicy,
) -> (Result<CallRecord, LlmError>, Vec<String>) {
    let messages = [Message::new("user", "Summarise the data.")];
    let pieces = Mutex::new(Vec::new());
    let on_token = |t: &str| pieces.lock().expect("pieces").push(t.to_owned());
    let result = chat_with_retry(backend, policy, model, &messages, &on_token).await;
    (result, pieces.into_inner().expect("pieces"))
}

async fn call_ollama(
    fake: &FakeOllama,
    policy: &RetryPolicy,
) -> (Result<CallRecord, LlmError>, Vec<String>) {
    let backend = OllamaBackend::new(Timeouts::default());
    let model = model_at(BackendKind::Ollama, MODEL, &fake.url());
    call(&backend, &model, policy).await
}

/// Chat requests the fake received.
fn chats(fake: &FakeOllama) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path == "/api/chat")
        .count()
}

fn busy() -> FakeConfig {
    FakeConfig::default().fault(Fault::Status(503))
}

#[tokio::test]
async fn a_busy_server_is_tried_again_and_the_answer_counts_two_attempts() {
    let fake = FakeOllama::start(busy().then(FakeConfig::tokens(["Hel", "lo"])));
    let (result, pieces) = call_ollama(&fake, &fast(3)).await;
    let record = result.expect("the second try succeeds");
    assert_eq!(record.text, "Hello");
    assert_eq!(pieces, ["Hel", "lo"]);
    assert_eq!(record.attempts, 2);
    assert_eq!(record.error, None);
    assert_eq!(record.attempt_errors.len(), 1);
    assert!(
        record.attempt_errors[0].starts_with("attempt 1: ")
            && record.attempt_errors[0].contains("too busy"),
        "{:?}",
        record.attempt_errors
    );
    assert_eq!(chats(&fake), 2);
}

#[tokio::test]
async fn a_rate_limit_is_tried_again_until_it_lifts() {
    let limited = || FakeConfig::default().fault(Fault::Status(429));
    let fake = FakeOllama::start(limited().then(limited()).then(FakeConfig::default()));
    let record = call_ollama(&fake, &fast(3))
        .await
        .0
        .expect("the third try succeeds");
    assert_eq!(record.text, "Hello, world!");
    assert_eq!(record.attempts, 3);
    assert_eq!(record.attempt_errors.len(), 2);
    assert_eq!(chats(&fake), 3);
}

#[tokio::test]
async fn a_server_busy_on_every_try_fails_with_every_error_noted() {
    let fake = FakeOllama::start(busy());
    let error = call_ollama(&fake, &fast(3))
        .await
        .0
        .expect_err("every try fails");
    assert_eq!(error.kind, LlmErrorKind::Http(503));
    assert_eq!(error.record.attempts, 3);
    let earlier = &error.record.attempt_errors;
    assert_eq!(earlier.len(), 2, "{earlier:?}");
    assert!(earlier[0].starts_with("attempt 1: ") && earlier[1].starts_with("attempt 2: "));
    assert!(error.message.contains("too busy"), "{}", error.message);
    assert!(
        error.message.ends_with("(tried 3 times)"),
        "{}",
        error.message
    );
    assert_eq!(error.record.error.as_deref(), Some(error.message.as_str()));
    assert_eq!(chats(&fake), 3);
}

#[tokio::test]
async fn a_missing_model_is_not_tried_again() {
    let fake = FakeOllama::start(
        FakeConfig::default()
            .fault(Fault::Status(404))
            .then(FakeConfig::default()),
    );
    let error = call_ollama(&fake, &fast(3))
        .await
        .0
        .expect_err("a 404 is final");
    assert_eq!(error.kind, LlmErrorKind::ModelNotFound);
    assert_eq!(error.record.attempts, 1);
    assert!(error.record.attempt_errors.is_empty());
    assert!(!error.message.contains("tried"), "{}", error.message);
    assert_eq!(chats(&fake), 1);
}

#[tokio::test]
async fn an_error_after_tokens_is_not_tried_again() {
    let fake = FakeOllama::start(
        FakeConfig::tokens(["Hel", "lo", "!"])
            .fault(Fault::ErrorLineAfter(2))
            .then(FakeConfig::default()),
    );
    let (result, pieces) = call_ollama(&fake, &fast(3)).await;
    let error = result.expect_err("the stream's error is final");
    assert_eq!(error.kind, LlmErrorKind::ErrorInStream);
    assert_eq!(error.record.text, "Hello");
    assert_eq!(pieces, ["Hel", "lo"], "the user saw the text once");
    assert_eq!(error.record.attempts, 1);
    assert_eq!(chats(&fake), 1);
}

#[tokio::test]
async fn a_refused_connection_is_tried_as_often_as_the_policy_says_then_fails_fast() {
    let backend = OllamaBackend::new(Timeouts::default());
    let model = model_at(BackendKind::Ollama, MODEL, &refused_url());
    let started = Instant::now();
    let error = call(&backend, &model, &fast(2))
        .await
        .0
        .expect_err("nothing listens");
    assert_eq!(error.kind, LlmErrorKind::ConnectionRefused);
    assert_eq!(error.record.attempts, 2);
    assert_eq!(error.record.attempt_errors.len(), 1);
    assert!(error.message.contains("ollama serve"), "{}", error.message);
    assert!(
        error.message.ends_with("(tried 2 times)"),
        "{}",
        error.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_servers_retry_after_is_waited_for_up_to_the_policys_cap() {
    // The fake asks for RETRY_AFTER_SECS; the policy's backoff alone would be 0.
    let cap = Duration::from_millis(300);
    assert!(cap < Duration::from_secs(RETRY_AFTER_SECS));
    let policy = RetryPolicy {
        attempts: 2,
        base_delay: Duration::ZERO,
        max_delay: cap,
    };
    let fake = FakeOpenAi::start(
        fake_openai::FakeConfig::default().fault(fake_openai::Fault::Status(429)),
    );
    let backend = OpenAiBackend::new(Timeouts::default());
    let model = model_at(BackendKind::Openai, "qwen2.5-7b-instruct", &fake.base_url());
    let started = Instant::now();
    let error = call(&backend, &model, &policy)
        .await
        .0
        .expect_err("rate-limited on every try");
    let waited = started.elapsed();
    assert_eq!(error.kind, LlmErrorKind::RateLimited);
    assert_eq!(error.record.attempts, 2);
    assert!(waited >= cap, "waited {waited:?}, the cap is {cap:?}");
    assert!(waited < Duration::from_secs(RETRY_AFTER_SECS), "{waited:?}");
}
