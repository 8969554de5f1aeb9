//! Retrying an LLM call, only where a retry cannot repeat work or show the
//! user text twice.
//!
//! A call is retried when it failed before the server produced anything: the
//! connection failed, or the server said it is rate-limited (429) or busy
//! (503), and no token arrived. Everything else is final: a request the server
//! rejected (400, 401, 404) fails the same way again, a 500 usually means the
//! model does not fit and retrying only repeats the crash, and a stream that
//! broke after tokens has already shown its text to the user.
//!
//! The wait between tries is exponential backoff with full jitter (a random
//! delay in `[0, min(max_delay, base_delay · 2ⁿ)]`), so many stages hitting a
//! busy server do not retry in step; a server's `Retry-After` replaces it.

use super::{Backend, CallRecord, LlmError, LlmErrorKind, Message, ModelSpec};
use std::time::Duration;

/// How often, and how patiently, a failed call is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first one included; `1` (or `0`) never retries.
    pub attempts: u32,
    /// The cap of the first backoff; it doubles with every retry.
    pub base_delay: Duration,
    /// No wait is longer, the server's `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Three tries, backing off from up to 500 ms, never waiting more than 8 s.
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// One try, no retry.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// The longest backoff before retry number `retry` (`0`: the first retry):
    /// `min(max_delay, base_delay · 2^retry)`.
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = 1_u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A random backoff in `[0, backoff_cap(retry)]` (full jitter).
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self.backoff_cap(retry);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        // Without an entropy source, waiting the whole cap is still a backoff.
        match getrandom::u64() {
            Ok(r) if nanos < u64::MAX => Duration::from_nanos(r % (nanos + 1)),
            Ok(r) => Duration::from_nanos(r),
            Err(_) => cap,
        }
    }

    /// The wait before retry number `retry` after `error`: the server's
    /// `Retry-After` when it sent one (capped by `max_delay`), else [`backoff`](Self::backoff).
    pub fn delay_after(&self, error: &LlmError, retry: u32) -> Duration {
        match retry_after(error) {
            Some(asked) => asked.min(self.max_delay),
            None => self.backoff(retry),
        }
    }
}

/// Whether `error` may be retried: it failed before any token arrived, in a
/// way that another try may not repeat.
pub fn is_retryable(error: &LlmError) -> bool {
    error.record.text.is_empty()
        && matches!(
            error.kind,
            LlmErrorKind::ConnectionRefused
                | LlmErrorKind::Connect
                | LlmErrorKind::ConnectTimeout
                | LlmErrorKind::RateLimited
                // Ollama's backend reports a 429 by its status.
                | LlmErrorKind::Http(429 | 503)
        )
}

/// The wait a rate-limited server asked for, in seconds.
///
/// The backends pass the `Retry-After` header on only in the message (the
/// `openai` one: "it asks to retry after `20`"), so it is read from there; an
/// HTTP date there is ignored, and the backoff applies.
fn retry_after(error: &LlmError) -> Option<Duration> {
    if !matches!(
        error.kind,
        LlmErrorKind::RateLimited | LlmErrorKind::Http(429)
    ) {
        return None;
    }
    const MARK: &str = "retry after `";
    let start = error.message.find(MARK)? + MARK.len();
    let value = error.message[start..].split('`').next()?.trim();
    let seconds = value.parse::<f64>().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// Runs `backend.chat`, retrying under `policy` while [`is_retryable`] says a
/// retry is safe.
///
/// The record returned (or carried by the error) is the last try's, with
/// `attempts` set to the number of tries and `attempt_errors` holding the
/// earlier tries' messages, oldest first. A retried failure's message says how
/// many tries were made. Every retry is logged as a warning.
///
/// # Errors
/// The last try's error, when it was not retryable or the tries ran out.
pub async fn chat_with_retry(
    backend: &dyn Backend,
    policy: &RetryPolicy,
    model: &ModelSpec,
    messages: &[Message],
    on_token: &(dyn Fn(&str) + Send + Sync),
) -> Result<CallRecord, LlmError> {
    let tries = policy.attempts.max(1);
    let mut earlier = Vec::new();
    let mut attempt = 1;
    loop {
        let mut error = match backend.chat(model, messages, on_token).await {
            Ok(mut record) => {
                record.attempts = attempt;
                record.attempt_errors = earlier;
                return Ok(record);
            }
            Err(error) => error,
        };
        if attempt >= tries || !is_retryable(&error) {
            error.record.attempts = attempt;
            if attempt > 1 {
                tracing::warn!(
                    attempt,
                    kind = %error.kind,
                    error = %error.message,
                    "llm call failed; giving up after {attempt} attempts"
                );
                error.message = format!("{} (tried {attempt} times)", error.message);
                error.record.error = Some(error.message.clone());
            }
            error.record.attempt_errors = earlier;
            return Err(error);
        }
        let delay = policy.delay_after(&error, attempt - 1);
        tracing::warn!(
            attempt,
            of = tries,
            kind = %error.kind,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %error.message,
            "llm call failed; retrying"
        );
        earlier.push(format!("attempt {attempt}: {}", error.message));
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::BackendKind;
    use futures_util::future::BoxFuture;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// One scripted answer: text streamed, then success or a failure of a kind.
    type Step = (&'static str, Option<(LlmErrorKind, &'static str)>);

    /// A backend that answers from a script, one step per call, and counts calls.
    struct Scripted {
        steps: Mutex<VecDeque<Step>>,
        calls: Mutex<u32>,
    }

    impl Scripted {
        fn new(steps: impl IntoIterator<Item = Step>) -> Self {
            Self {
                steps: Mutex::new(steps.into_iter().collect()),
                calls: Mutex::new(0),
            }
        }

        fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }
    }

    impl Backend for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }

        fn chat<'a>(
            &'a self,
            _model: &'a ModelSpec,
            _messages: &'a [Message],
            on_token: &'a (dyn Fn(&str) + Send + Sync),
        ) -> BoxFuture<'a, Result<CallRecord, LlmError>> {
            *self.calls.lock().unwrap() += 1;
            let (text, failure) = self
                .steps
                .lock()
                .unwrap()
                .pop_front()
                .expect("the backend was called more often than scripted");
            Box::pin(async move {
                if !text.is_empty() {
                    on_token(text);
                }
                let record = CallRecord {
                    backend: "scripted".into(),
                    text: text.into(),
                    attempts: 1,
                    ..CallRecord::default()
                };
                match failure {
                    None => Ok(record),
                    Some((kind, message)) => Err(LlmError::new(kind, message.into(), record)),
                }
            })
        }
    }

    fn model() -> ModelSpec {
        ModelSpec {
            hosts: Vec::new(),
            backend: BackendKind::Ollama,
            name: "gemma3:latest".into(),
            host: None,
            api_key_env: None,
            keep_alive: None,
            options: indexmap::IndexMap::new(),
        }
    }

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        }
    }

    async fn run(
        backend: &Scripted,
        policy: &RetryPolicy,
    ) -> (Result<CallRecord, LlmError>, Vec<String>) {
        let seen = Mutex::new(Vec::new());
        let on_token = |t: &str| seen.lock().unwrap().push(t.to_owned());
        let result = chat_with_retry(backend, policy, &model(), &[], &on_token).await;
        (result, seen.into_inner().unwrap())
    }

    fn fail(kind: LlmErrorKind) -> Step {
        ("", Some((kind, "it failed")))
    }

    #[tokio::test]
    async fn failures_before_any_token_that_may_pass_are_retried() {
        for kind in [
            LlmErrorKind::ConnectionRefused,
            LlmErrorKind::Connect,
            LlmErrorKind::ConnectTimeout,
            LlmErrorKind::RateLimited,
            LlmErrorKind::Http(429),
            LlmErrorKind::Http(503),
        ] {
            let backend = Scripted::new([fail(kind), ("ok", None)]);
            let (result, seen) = run(&backend, &fast(3)).await;
            let record = result.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(record.attempts, 2, "{kind:?}");
            assert_eq!(record.text, "ok");
            assert_eq!(record.error, None);
            assert_eq!(record.attempt_errors, ["attempt 1: it failed"], "{kind:?}");
            assert_eq!(seen, ["ok"]);
            assert_eq!(backend.calls(), 2);
        }
    }

    #[tokio::test]
    async fn failures_a_retry_would_repeat_are_final() {
        for kind in [
            LlmErrorKind::BadRequest,
            LlmErrorKind::Unauthorized,
            LlmErrorKind::ModelNotFound,
            LlmErrorKind::ServerError,
            LlmErrorKind::MissingApiKey,
            LlmErrorKind::Http(404),
            LlmErrorKind::Http(502),
            LlmErrorKind::ErrorInStream,
            LlmErrorKind::IncompleteStream,
            LlmErrorKind::Stalled,
            LlmErrorKind::Protocol,
        ] {
            let backend = Scripted::new([fail(kind), ("ok", None)]);
            let error = run(&backend, &fast(3)).await.0.expect_err("no retry");
            assert_eq!(error.kind, kind);
            assert_eq!(error.record.attempts, 1, "{kind:?}");
            assert!(error.record.attempt_errors.is_empty());
            assert_eq!(
                error.message, "it failed",
                "{kind:?}: the message is untouched"
            );
            assert_eq!(backend.calls(), 1, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn a_call_that_already_streamed_tokens_is_never_retried() {
        for kind in [
            LlmErrorKind::Connect,
            LlmErrorKind::Http(503),
            LlmErrorKind::IncompleteStream,
        ] {
            let backend = Scripted::new([("Hel", Some((kind, "broke"))), ("Hello", None)]);
            let (result, seen) = run(&backend, &fast(3)).await;
            let error = result.expect_err("no retry after a token");
            assert_eq!(error.record.text, "Hel");
            assert_eq!(error.record.attempts, 1);
            assert_eq!(seen, ["Hel"], "the user saw the text once");
            assert_eq!(backend.calls(), 1);
        }
    }

    #[tokio::test]
    async fn running_out_of_tries_keeps_every_error_and_says_how_many() {
        let backend = Scripted::new([
            ("", Some((LlmErrorKind::Http(503), "busy 1"))),
            ("", Some((LlmErrorKind::Http(503), "busy 2"))),
            ("", Some((LlmErrorKind::Http(503), "busy 3"))),
        ]);
        let error = run(&backend, &fast(3)).await.0.expect_err("tries run out");
        assert_eq!(error.kind, LlmErrorKind::Http(503));
        assert_eq!(error.record.attempts, 3);
        assert_eq!(
            error.record.attempt_errors,
            ["attempt 1: busy 1", "attempt 2: busy 2"]
        );
        assert_eq!(error.message, "busy 3 (tried 3 times)");
        assert_eq!(
            error.record.error.as_deref(),
            Some("busy 3 (tried 3 times)")
        );
        assert_eq!(backend.calls(), 3);
    }

    #[tokio::test]
    async fn no_retry_policy_tries_once() {
        for policy in [RetryPolicy::none(), fast(0)] {
            let backend = Scripted::new([fail(LlmErrorKind::ConnectionRefused)]);
            let error = run(&backend, &policy).await.0.expect_err("one try");
            assert_eq!(error.record.attempts, 1);
            assert_eq!(backend.calls(), 1);
        }
    }

    #[test]
    fn the_default_policy_tries_three_times_within_eight_seconds() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.attempts, 3);
        assert_eq!(policy.base_delay, Duration::from_millis(500));
        assert_eq!(policy.max_delay, Duration::from_secs(8));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_below_it() {
        let policy = RetryPolicy::default();
        let caps: Vec<u64> = (0..7)
            .map(|n| u64::try_from(policy.backoff_cap(n).as_millis()).unwrap())
            .collect();
        assert_eq!(caps, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(policy.backoff_cap(u32::MAX), Duration::from_secs(8));

        for retry in 0..6 {
            let cap = policy.backoff_cap(retry);
            let delays: Vec<Duration> = (0..200).map(|_| policy.backoff(retry)).collect();
            assert!(
                delays.iter().all(|d| *d <= cap),
                "retry {retry}: {delays:?}"
            );
            // 200 draws all in the top tenth would mean no jitter (p ≈ 10⁻²⁰⁰).
            assert!(delays.iter().any(|d| *d < cap * 9 / 10), "retry {retry}");
        }
        let zero = RetryPolicy {
            base_delay: Duration::ZERO,
            ..policy
        };
        assert_eq!(zero.backoff(3), Duration::ZERO);
    }

    fn rate_limited(message: &str) -> LlmError {
        LlmError::new(
            LlmErrorKind::RateLimited,
            message.into(),
            CallRecord::default(),
        )
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let policy = RetryPolicy::default();
        let asks = |secs: &str| {
            rate_limited(&format!(
                "the server at h rate-limited the request (429, the server said `slow down`; it asks to retry after `{secs}`); wait and run again"
            ))
        };
        assert_eq!(policy.delay_after(&asks("2"), 0), Duration::from_secs(2));
        assert_eq!(
            policy.delay_after(&asks(" 1.5 "), 0),
            Duration::from_millis(1500)
        );
        assert_eq!(policy.delay_after(&asks("120"), 0), Duration::from_secs(8));
        // An HTTP date, or no header: the jittered backoff.
        let date = asks("Wed, 21 Oct 2015 07:28:00 GMT");
        assert!(policy.delay_after(&date, 0) <= Duration::from_millis(500));
        let plain = rate_limited("rate-limited; wait and run again");
        assert!(policy.delay_after(&plain, 1) <= Duration::from_secs(1));
        // Only a rate limit's message is read for it.
        let busy = LlmError::new(
            LlmErrorKind::Http(503),
            "retry after `5`".into(),
            CallRecord::default(),
        );
        assert!(policy.delay_after(&busy, 0) <= Duration::from_millis(500));
        // The server's wait replaces the backoff, even when shorter.
        let patient = RetryPolicy {
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(60),
            ..policy
        };
        assert_eq!(patient.delay_after(&asks("0"), 0), Duration::ZERO);
    }
}
