//! The Ollama backend: native `POST /api/chat` with NDJSON streaming
//! (Ollama's API reference: <https://github.com/ollama/ollama/blob/main/docs/api.md>).

mod host;

use super::http::{Clients, connection_refused, human, ms, quote, source_text};
use super::ndjson::NdjsonDecoder;
use super::{
    Backend, CallRecord, LlmError, LlmErrorKind, Message, ModelSpec, Timeouts, prompt_truncated,
};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};
use std::time::Instant;
use tokio::time::timeout;
use tracing::Instrument as _;

pub use host::resolve_ollama_host;

const ENDPOINT: &str = "/api/chat";

/// Talks to an Ollama server; the server is chosen per call (see
/// [`resolve_ollama_host`]).
pub struct OllamaBackend {
    timeouts: Timeouts,
    clients: Clients,
}

impl std::fmt::Debug for OllamaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OllamaBackend")
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl OllamaBackend {
    /// A backend whose calls wait at most `timeouts`.
    pub fn new(timeouts: Timeouts) -> Self {
        Self {
            timeouts,
            clients: Clients::new(timeouts.connect),
        }
    }

    /// The models the server at `host` (else `OLLAMA_HOST`, else the
    /// default) has pulled, from `GET /api/tags`.
    ///
    /// # Errors
    /// A message naming the host when it cannot be reached or answers badly.
    pub async fn list_models(&self, host: Option<&str>) -> Result<Vec<String>, String> {
        Ok(self
            .tags(host)
            .await?
            .iter()
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect())
    }

    /// The models the server lists at `GET /api/tags`, as it describes them.
    async fn tags(&self, host: Option<&str>) -> Result<Vec<Value>, String> {
        let host = resolve_ollama_host(host, std::env::var("OLLAMA_HOST").ok().as_deref());
        let client = self
            .clients
            .pick(&host)
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let wait = self.timeouts.connect + self.timeouts.read;
        let answer = timeout(wait, async {
            let response = client.get(format!("{host}/api/tags")).send().await?.error_for_status()?;
            response.json::<Value>().await
        })
        .await
        .map_err(|_| format!("Ollama at {host} did not answer `GET /api/tags` within {}", human(wait)))?
        .map_err(|e| {
            format!(
                "cannot list models at {host}: {}; is Ollama running there? start it with `ollama serve`",
                source_text(&e)
            )
        })?;
        Ok(answer["models"].as_array().cloned().unwrap_or_default())
    }

    async fn chat_stream(
        &self,
        host: String,
        model: &ModelSpec,
        messages: &[Message],
        on_token: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<CallRecord, LlmError> {
        let mut call = Call {
            record: CallRecord {
                backend: "ollama".into(),
                host: host.clone(),
                model: model.name.clone(),
                options: model.options.clone(),
                endpoint: ENDPOINT.into(),
                started_at: jiff::Timestamp::now().to_string(),
                attempts: 1,
                ..CallRecord::default()
            },
            sent: Instant::now(),
            timeouts: self.timeouts,
        };
        let client = match self.clients.pick(&host) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot start the HTTP client for Ollama at {host}: {e}");
                return Err(call.fail(LlmErrorKind::Connect, msg));
            }
        };
        let request = client
            .post(format!("{host}{ENDPOINT}"))
            .json(&request_body(model, messages));
        tracing::debug!(messages = messages.len(), "sending chat request");

        call.sent = Instant::now();
        // Ollama sends its headers with the first line, after loading the model.
        let wait = self.timeouts.connect + self.timeouts.read;
        let response = match timeout(wait, request.send()).await {
            Err(_) => {
                let msg = format!(
                    "the Ollama server at {host} sent no answer within {} for model `{}`; the model may still be loading or the server is stuck: check `ollama ps`, or raise the read timeout",
                    human(wait),
                    model.name
                );
                return Err(call.fail(LlmErrorKind::Stalled, msg));
            }
            Ok(Err(e)) => return Err(call.send_failed(&e)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if !status.is_success() {
            let body = match timeout(self.timeouts.read, response.bytes()).await {
                Ok(Ok(b)) => String::from_utf8_lossy(&b).into_owned(),
                _ => String::new(),
            };
            return Err(call.status_failed(status, &body));
        }
        call.read_stream(response, on_token).await
    }
}

impl Backend for OllamaBackend {
    fn name(&self) -> &'static str {
        "ollama"
    }

    fn identify<'a>(&'a self, model: &'a ModelSpec) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            // Ollama names an untagged model `name:latest`.
            let wanted = if model.name.contains(':') {
                model.name.clone()
            } else {
                format!("{}:latest", model.name)
            };
            let tags = self.tags(model.host.as_deref()).await.ok()?;
            tags.iter()
                .find(|m| {
                    m["name"].as_str() == Some(&wanted) || m["model"].as_str() == Some(&wanted)
                })
                .and_then(|m| m["digest"].as_str())
                .map(|d| format!("digest:{d}"))
        })
    }

    fn chat<'a>(
        &'a self,
        model: &'a ModelSpec,
        messages: &'a [Message],
        on_token: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<CallRecord, LlmError>> {
        let host = resolve_ollama_host(
            model.host.as_deref(),
            std::env::var("OLLAMA_HOST").ok().as_deref(),
        );
        // The span wraps the whole future; prompts are never recorded in it.
        let span = tracing::info_span!(
            "llm_call",
            backend = "ollama",
            model = %model.name,
            host = %host
        );
        Box::pin(
            async move {
                let result = self.chat_stream(host, model, messages, on_token).await;
                super::log_outcome(&result);
                result
            }
            .instrument(span),
        )
    }
}

/// One call in progress: its record and clock.
struct Call {
    record: CallRecord,
    sent: Instant,
    timeouts: Timeouts,
}

impl Call {
    /// Reads the NDJSON body up to the final `done` chunk.
    async fn read_stream(
        mut self,
        response: reqwest::Response,
        on_token: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<CallRecord, LlmError> {
        let mut stream = response.bytes_stream();
        let mut decoder = NdjsonDecoder::new();
        loop {
            let Ok(next) = timeout(self.timeouts.read, stream.next()).await else {
                let msg = format!(
                    "the Ollama server at {} sent nothing for {} while streaming model `{}` ({} characters received); it may be overloaded or stuck: check `ollama ps` and the server log, or raise the read timeout",
                    self.record.host,
                    human(self.timeouts.read),
                    self.record.model,
                    self.record.text.chars().count()
                );
                return Err(self.fail(LlmErrorKind::Stalled, msg));
            };
            let ended = next.is_none();
            let values = match next {
                Some(Ok(bytes)) => decoder.push(&bytes),
                Some(Err(e)) => {
                    let msg = format!(
                        "the stream from Ollama at {} for model `{}` broke before its final `done` chunk: {}; the partial response ({} characters) is kept; see the Ollama server log",
                        self.record.host,
                        self.record.model,
                        source_text(&e),
                        self.record.text.chars().count()
                    );
                    return Err(self.fail(LlmErrorKind::IncompleteStream, msg));
                }
                None => decoder.finish().into_iter().collect(),
            };
            for value in values {
                if self.take(value, on_token)? {
                    return Ok(self.finish());
                }
            }
            if ended {
                let msg = format!(
                    "the stream from Ollama at {} for model `{}` ended without its final `done` chunk; the partial response ({} characters) is kept; the model runner may have crashed: see the Ollama server log",
                    self.record.host,
                    self.record.model,
                    self.record.text.chars().count()
                );
                return Err(self.fail(LlmErrorKind::IncompleteStream, msg));
            }
        }
    }

    fn fail(mut self, kind: LlmErrorKind, message: String) -> LlmError {
        self.record.wall_ms = ms(self.sent.elapsed());
        LlmError::new(kind, message, self.record)
    }

    /// Takes one stream line; `Ok(true)` at the final `done` chunk.
    fn take(
        &mut self,
        value: Result<Value, super::NdjsonError>,
        on_token: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<bool, LlmError> {
        let r = &mut self.record;
        let value = match value {
            Ok(Value::Object(v)) => v,
            Ok(other) => {
                let msg = format!(
                    "the Ollama server at {} sent a stream line that is not an object for model `{}`: {}; is {} an Ollama server?",
                    r.host,
                    r.model,
                    quote(&other.to_string()),
                    r.host
                );
                return Err(self.fail_take(LlmErrorKind::Protocol, msg));
            }
            Err(e) => {
                let msg = format!(
                    "the Ollama server at {} sent an unreadable stream for model `{}`: {e}; is {} an Ollama server?",
                    r.host, r.model, r.host
                );
                return Err(self.fail_take(LlmErrorKind::Protocol, msg));
            }
        };
        if let Some(error) = value.get("error") {
            let error = error
                .as_str()
                .map_or_else(|| error.to_string(), str::to_owned);
            let msg = format!(
                "the Ollama server at {} reported an error while streaming model `{}`: {}; the partial response ({} characters) is kept; see the Ollama server log",
                r.host,
                r.model,
                quote(&error),
                r.text.chars().count()
            );
            return Err(self.fail_take(LlmErrorKind::ErrorInStream, msg));
        }
        let content = value
            .get("message")
            .and_then(|m| m.get("content"))
            .or_else(|| value.get("response"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !content.is_empty() {
            if r.ttft_ms.is_none() {
                r.ttft_ms = Some(ms(self.sent.elapsed()));
            }
            r.text.push_str(content);
            on_token(content);
        }
        if value.get("done").and_then(Value::as_bool) != Some(true) {
            return Ok(false);
        }
        let nanos = |key: &str| value.get(key).and_then(Value::as_f64);
        let count = |key: &str| value.get(key).and_then(Value::as_u64);
        r.total_duration_ms = nanos("total_duration").map(|n| n / 1e6);
        r.load_duration_ms = nanos("load_duration").map(|n| n / 1e6);
        r.cold = r.load_duration_ms.map(|ms| ms >= super::COLD_LOAD_MS);
        r.prompt_eval_duration_ms = nanos("prompt_eval_duration").map(|n| n / 1e6);
        r.eval_duration_ms = nanos("eval_duration").map(|n| n / 1e6);
        r.prompt_eval_count = count("prompt_eval_count");
        r.eval_count = count("eval_count");
        r.tokens_per_second = match (r.eval_count, nanos("eval_duration")) {
            #[allow(clippy::cast_precision_loss)]
            (Some(n), Some(ns)) if ns > 0.0 => Some(n as f64 / ns * 1e9),
            _ => None,
        };
        r.done_reason = value
            .get("done_reason")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(true)
    }

    /// `fail` for use while `self` is borrowed mutably: leaves an empty record behind.
    fn fail_take(&mut self, kind: LlmErrorKind, message: String) -> LlmError {
        let call = Call {
            record: std::mem::take(&mut self.record),
            sent: self.sent,
            timeouts: self.timeouts,
        };
        call.fail(kind, message)
    }

    fn finish(mut self) -> CallRecord {
        self.record.wall_ms = ms(self.sent.elapsed());
        self.record.prompt_truncated =
            prompt_truncated(&self.record.options, self.record.prompt_eval_count);
        if self.record.prompt_truncated {
            tracing::warn!(
                model = %self.record.model,
                prompt_eval_count = self.record.prompt_eval_count,
                "the server evaluated `num_ctx` prompt tokens or more; it has probably truncated the prompt"
            );
        }
        self.record
    }

    /// The request got no HTTP answer.
    fn send_failed(self, e: &reqwest::Error) -> LlmError {
        let (host, model) = (self.record.host.clone(), self.record.model.clone());
        let refused = connection_refused(e);
        let check =
            "check the address (`OLLAMA_HOST`, or the model's `host:`) and that the server is up";
        let (kind, msg) = if refused {
            (
                LlmErrorKind::ConnectionRefused,
                format!(
                    "cannot reach Ollama at {host} for model `{model}`: connection refused; is Ollama running at {host}? start it with `ollama serve`"
                ),
            )
        } else if e.is_connect() && e.is_timeout() {
            (
                LlmErrorKind::ConnectTimeout,
                format!(
                    "cannot reach Ollama at {host} for model `{model}`: no connection within {}; {check}",
                    human(self.timeouts.connect)
                ),
            )
        } else if e.is_builder() {
            (
                LlmErrorKind::Connect,
                format!(
                    "`{host}` is not a usable Ollama address for model `{model}`: {}; set `OLLAMA_HOST` or the model's `host:` to `host:port` or a URL",
                    source_text(e)
                ),
            )
        } else if e.is_connect() {
            (
                LlmErrorKind::Connect,
                format!(
                    "cannot reach Ollama at {host} for model `{model}`: {}; {check}",
                    source_text(e)
                ),
            )
        } else {
            (
                LlmErrorKind::Connect,
                format!(
                    "the Ollama server at {host} dropped the request for model `{model}` before answering: {}; see the Ollama server log",
                    source_text(e)
                ),
            )
        };
        self.fail(kind, msg)
    }

    /// The server answered with a non-success status.
    fn status_failed(self, status: reqwest::StatusCode, body: &str) -> LlmError {
        let (host, model) = (self.record.host.clone(), self.record.model.clone());
        let server_error = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
        let said = match (&server_error, body.trim()) {
            (Some(e), _) => format!("the server said {}", quote(e)),
            (None, "") => "with an empty body".to_owned(),
            (None, raw) => format!("with {}", quote(raw)),
        };
        let (kind, msg) = match status.as_u16() {
            404 if server_error.is_some() => (
                LlmErrorKind::ModelNotFound,
                format!(
                    "model `{model}` not found on {host} ({said}); pull it with `ollama pull {model}`"
                ),
            ),
            400 => (
                LlmErrorKind::BadRequest,
                format!(
                    "the Ollama server at {host} rejected the request for model `{model}` ({status}, {said}); check the model's name and `options:` in the workflow"
                ),
            ),
            500 => (
                LlmErrorKind::ServerError,
                format!(
                    "the Ollama server at {host} failed on model `{model}` ({status}, {said}); the model may not fit in memory: try a smaller `num_ctx` or `num_gpu`, and see the Ollama server log"
                ),
            ),
            503 => (
                LlmErrorKind::Http(503),
                format!(
                    "the Ollama server at {host} is too busy for model `{model}` ({status}, {said}); try again later, or raise `OLLAMA_MAX_QUEUE` / `OLLAMA_NUM_PARALLEL` on the server"
                ),
            ),
            code @ 501..=599 => (
                LlmErrorKind::Http(code),
                format!(
                    "the Ollama server at {host} failed on model `{model}` ({status}, {said}); see the log of the Ollama server (or of the proxy in front of it)"
                ),
            ),
            code => (
                LlmErrorKind::Http(code),
                format!(
                    "the server at {host} answered {status} to `POST {ENDPOINT}` for model `{model}` ({said}); is {host} an Ollama server? check `OLLAMA_HOST` or the model's `host:`"
                ),
            ),
        };
        self.fail(kind, msg)
    }
}

/// The JSON body of a chat request: options exactly as declared (omitted when
/// none are), `keep_alive` only when set.
fn request_body(model: &ModelSpec, messages: &[Message]) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model.name));
    body.insert("messages".into(), json!(messages));
    body.insert("stream".into(), json!(true));
    if !model.options.is_empty() {
        let options: Map<String, Value> = model.options.clone().into_iter().collect();
        body.insert("options".into(), Value::Object(options));
    }
    if let Some(keep_alive) = &model.keep_alive {
        body.insert("keep_alive".into(), keep_alive.clone());
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests;
