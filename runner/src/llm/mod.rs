//! LLM backends and call metrics.
//!
//! A [`Backend`] streams one chat completion and returns a [`CallRecord`]: the
//! text plus what the call cost (time to first token, tokens per second, the
//! server's own durations). Timings come from the host's clock, never from a
//! plugin. A failed call still carries its record (partial text, whatever
//! metrics were seen) inside [`LlmError`], so a run can show what happened.
//!
//! Backends: [`OllamaBackend`] (native `/api/chat`, NDJSON streaming) and
//! [`OpenAiBackend`] (`/v1/chat/completions` with server-sent events, for
//! llama.cpp server, vLLM, LM Studio and other OpenAI-compatible servers).

pub mod embedded;
mod http;
pub mod models;
pub mod ndjson;
mod ollama;
pub mod openai;
pub mod pool;
pub mod retry;
pub mod sse;

pub use crate::workflow::ModelSpec;
pub use embedded::EmbeddedBackend;
pub use ndjson::{DEFAULT_MAX_LINE, NdjsonDecoder, NdjsonError};
pub use ollama::{OllamaBackend, resolve_ollama_host};
pub use openai::{OpenAiBackend, resolve_openai_base};
pub use retry::{RetryPolicy, chat_with_retry};
pub use sse::{DEFAULT_MAX_EVENT, SseDecoder, SseError, SseEvent};

use futures_util::future::BoxFuture;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// One chat message, as the server's `messages` array carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text of the message.
    pub content: String,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// How long a call may wait on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For the TCP (and TLS) connection to the server.
    pub connect: Duration,
    /// The longest gap allowed between two pieces of the response (and before
    /// the response headers, which include the model load): a larger gap is a
    /// stalled stream.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(120),
        }
    }
}

/// What one LLM call did and cost; one entry of a run's `metrics.json`.
///
/// Durations are milliseconds (the server reports nanoseconds); a field is
/// `None` when the server did not report it (for example, the call failed
/// before the final chunk).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// `ollama`, `openai`, …
    pub backend: String,
    /// The server's base URL, e.g. `http://127.0.0.1:11434`.
    pub host: String,
    /// The model's name, `name:tag`.
    pub model: String,
    /// The options exactly as sent (for `openai`: under the names the request
    /// used, without the options that are server settings there).
    pub options: IndexMap<String, Value>,
    /// The API path called, e.g. `/api/chat`, `/v1/chat/completions`.
    pub endpoint: String,
    /// When the request was sent, RFC 3339.
    pub started_at: String,
    /// Client-side: request sent → first non-empty token.
    pub ttft_ms: Option<f64>,
    /// Client-side: request sent → end of the response (or the failure).
    pub wall_ms: f64,
    /// Server-side: the whole request (`openai`: client-side, the wall time,
    /// as OpenAI-compatible servers do not report it).
    pub total_duration_ms: Option<f64>,
    /// Server-side: loading the model.
    pub load_duration_ms: Option<f64>,
    /// Server-side: evaluating the prompt (`openai`: only when the server
    /// sends llama.cpp's `timings`).
    pub prompt_eval_duration_ms: Option<f64>,
    /// Server-side: generating the response (`openai`: from llama.cpp's
    /// `timings` when sent, else client-side: first token → end of stream).
    pub eval_duration_ms: Option<f64>,
    /// Prompt tokens the server evaluated.
    pub prompt_eval_count: Option<u64>,
    /// Tokens generated.
    pub eval_count: Option<u64>,
    /// `eval_count / eval_duration`, in tokens per second (so client-side too
    /// when `eval_duration_ms` is).
    pub tokens_per_second: Option<f64>,
    /// `stop`, `length`, …
    pub done_reason: Option<String>,
    /// The prompt probably did not fit the context window (see the backend for
    /// the heuristic).
    pub prompt_truncated: bool,
    /// The whole response, or the part received before a failure.
    pub text: String,
    /// Requests made for this call, retries included.
    pub attempts: u32,
    /// The failure's message, when the call failed.
    pub error: Option<String>,
    /// The messages of the tries before the last one, oldest first, when the
    /// call was retried (see [`retry`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempt_errors: Vec<String>,
    /// The fields above that Chimera estimated because the server did not
    /// report them (an OpenAI-compatible server that streams no usage:
    /// `eval_count` is the number of streamed chunks, and `tokens_per_second`
    /// follows from it). Reports label these figures as estimates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub estimated: Vec<String>,
    /// Whether the call began by loading the model (`embedded`: this call
    /// loaded the GGUF; `ollama`: a `load_duration` of at least
    /// [`COLD_LOAD_MS`]); such a call is left out of warm statistics.
    /// `None` when the backend cannot tell (OpenAI-compatible servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold: Option<bool>,
    /// The model as the server named it in its answer (an OpenAI-compatible
    /// server's `model`), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// For a model with `hosts:`: how long the call waited for a free host
    /// (ms), and the hosts it left before this one (failed before any token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts_left: Vec<String>,
    /// `embedded`: how the call shared the model with calls decoded
    /// together in one batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchShare>,
}

/// How an `embedded` call shared its model's context with concurrent calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchShare {
    /// Sequences the context had room for (`CHIMERA_EMBEDDED_PARALLEL`).
    pub slots: u32,
    /// The most calls decoded in one step together with this one, itself
    /// included: 1 means it ran alone.
    pub peak_sequences: u32,
    /// Its share of the decode time (ms): each step's time split among the
    /// calls in it by the tokens each put in the batch. Over calls that ran
    /// together these add up to the time the model spent on them.
    pub compute_ms: f64,
}

/// The `load_duration` from which an Ollama call counts as cold: a resident
/// model reports a few milliseconds, a load from disk hundreds or thousands.
pub const COLD_LOAD_MS: f64 = 100.0;

/// Why a call failed, for code that reacts to the kind (retries, exit codes,
/// metrics). The message a person reads is [`LlmError`]'s `Display`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmErrorKind {
    /// Nothing listens at the address.
    ConnectionRefused,
    /// No connection within [`Timeouts::connect`].
    ConnectTimeout,
    /// Any other failure to connect (name resolution, TLS, …) or to get an
    /// answer (the server closed the connection before its response headers).
    Connect,
    /// The model names an environment variable for its API key that is not
    /// set; no request was made.
    MissingApiKey,
    /// The server refused the request's credentials, or wants some (HTTP 401, 403).
    Unauthorized,
    /// The server does not have the model (HTTP 404).
    ModelNotFound,
    /// The server rejected the request (HTTP 400).
    BadRequest,
    /// The server failed (HTTP 500: the model runner crashed, ran out of memory…).
    ServerError,
    /// Too many requests (HTTP 429).
    RateLimited,
    /// Any other non-success HTTP status (503: the server is busy).
    Http(u16),
    /// The stream started, then carried an `{"error": …}` line (or event).
    ErrorInStream,
    /// The stream ended (or broke) before its end (Ollama's `done` chunk, an
    /// OpenAI `finish_reason` or `[DONE]`).
    IncompleteStream,
    /// Nothing arrived within [`Timeouts::read`].
    Stalled,
    /// The server sent something that is not the protocol.
    Protocol,
}

impl fmt::Display for LlmErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConnectionRefused => f.write_str("connection refused"),
            Self::ConnectTimeout => f.write_str("connect timeout"),
            Self::Connect => f.write_str("connection failed"),
            Self::MissingApiKey => f.write_str("missing API key"),
            Self::Unauthorized => f.write_str("unauthorized"),
            Self::ModelNotFound => f.write_str("model not found"),
            Self::BadRequest => f.write_str("bad request"),
            Self::ServerError => f.write_str("server error"),
            Self::RateLimited => f.write_str("rate limited"),
            Self::Http(status) => write!(f, "HTTP {status}"),
            Self::ErrorInStream => f.write_str("error in stream"),
            Self::IncompleteStream => f.write_str("incomplete stream"),
            Self::Stalled => f.write_str("stalled stream"),
            Self::Protocol => f.write_str("protocol error"),
        }
    }
}

/// A failed LLM call: what went wrong, and the record of the call so far
/// (partial text, whatever metrics were seen; `record.error` holds the message).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LlmError {
    /// The class of failure.
    pub kind: LlmErrorKind,
    /// What happened and what to do, naming the host and the model.
    pub message: String,
    /// The call so far: partial text, the metrics seen, the message in `error`.
    pub record: Box<CallRecord>,
}

impl LlmError {
    /// An error of `kind`; stores `message` in the record too.
    pub fn new(kind: LlmErrorKind, message: String, mut record: CallRecord) -> Self {
        record.error = Some(message.clone());
        Self {
            kind,
            message,
            record: Box::new(record),
        }
    }
}

/// Whether the server's own count shows the prompt filled the context window.
///
/// Servers may truncate an overlong prompt silently (Ollama does). The flag
/// is raised only on evidence: `num_ctx` is declared and the server reported
/// evaluating at least that many prompt tokens. Without a reported count
/// nothing is claimed (a guess from the prompt's length once warned about
/// prompts that fitted).
pub(crate) fn prompt_truncated(
    options: &IndexMap<String, Value>,
    prompt_eval_count: Option<u64>,
) -> bool {
    let num_ctx = options.get("num_ctx").and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
    });
    matches!((num_ctx, prompt_eval_count), (Some(ctx), Some(n)) if n >= ctx)
}

/// A server (or library) that completes chats.
pub trait Backend: Send + Sync {
    /// The backend's name as workflows write it (`ollama`, …).
    fn name(&self) -> &'static str;

    /// Streams a chat completion; `on_token` is called with each non-empty
    /// piece of text as it arrives.
    ///
    /// # Errors
    /// When the server cannot be reached, refuses the request, or the stream
    /// fails; the error carries the record of the call so far.
    fn chat<'a>(
        &'a self,
        model: &'a ModelSpec,
        messages: &'a [Message],
        on_token: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<CallRecord, LlmError>>;

    /// The model's identity beyond its name, for the run record: the digest
    /// Ollama lists for it, the SHA-256 of an embedded GGUF file, the id an
    /// OpenAI-compatible server lists. `None` when the backend has none or
    /// the server does not say.
    fn identify<'a>(&'a self, _model: &'a ModelSpec) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
}

/// Logs how a call ended, inside its `llm_call` span (every backend's last step).
pub(crate) fn log_outcome(result: &Result<CallRecord, LlmError>) {
    match result {
        Ok(r) => tracing::info!(
            ttft_ms = r.ttft_ms,
            wall_ms = r.wall_ms,
            load_duration_ms = r.load_duration_ms,
            tokens_per_second = r.tokens_per_second,
            eval_count = r.eval_count,
            "llm call finished"
        ),
        Err(e) => tracing::warn!(kind = %e.kind, error = %e, "llm call failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truncation_is_claimed_only_on_the_servers_count() {
        let none: IndexMap<String, Value> = IndexMap::new();
        assert!(!prompt_truncated(&none, Some(100_000)));

        let ctx: IndexMap<String, Value> =
            [("num_ctx".to_owned(), json!(512))].into_iter().collect();
        // No count from the server: no evidence, however long the prompt.
        assert!(!prompt_truncated(&ctx, None));
        assert!(!prompt_truncated(&ctx, Some(100)));
        assert!(prompt_truncated(&ctx, Some(512)));
    }
}
