//! The OpenAI-compatible backend: `POST /v1/chat/completions` streamed as
//! server-sent events, for llama.cpp server, vLLM, LM Studio (and Ollama's
//! own `/v1`).
//!
//! Workflows declare Ollama-style options; they are mapped onto the request
//! (`num_predict` becomes `max_tokens`) and the ones that are server settings
//! there (`num_ctx`, `num_gpu`, …) are left out. These servers count tokens
//! (the `usage` chunk) but report no durations, except llama.cpp server's
//! `timings`; without them, the generation time is measured here.

mod base;
mod failure;
mod request;

use super::http::{Clients, human, ms, quote, source_text};
use super::sse::{SseDecoder, SseError, SseEvent};
use super::{
    Backend, CallRecord, LlmError, LlmErrorKind, Message, ModelSpec, Timeouts, prompt_truncated,
};
use failure::Ctx;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use serde_json::Value;
use std::time::Instant;
use tokio::time::timeout;
use tracing::Instrument as _;

pub use base::resolve_openai_base;

const CHAT: &str = "/v1/chat/completions";
const MODELS: &str = "/v1/models";
/// The environment variable naming the server when a model has no `host:`.
const BASE_URL_VAR: &str = "OPENAI_BASE_URL";

/// Talks to an OpenAI-compatible server; the server is chosen per call (see
/// [`resolve_openai_base`]).
pub struct OpenAiBackend {
    timeouts: Timeouts,
    clients: Clients,
}

impl std::fmt::Debug for OpenAiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiBackend")
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl OpenAiBackend {
    /// A backend whose calls wait at most `timeouts`.
    pub fn new(timeouts: Timeouts) -> Self {
        Self {
            timeouts,
            clients: Clients::new(timeouts.connect),
        }
    }

    /// The ids of the models the server offers (`GET /v1/models`).
    ///
    /// `host` and `api_key_env` are read as a model's `host:` and
    /// `api_key_env:` are.
    ///
    /// # Errors
    /// When the API key's variable is unset, the server cannot be reached,
    /// refuses the request or answers something that is not a model list.
    pub async fn list_models(
        &self,
        host: Option<&str>,
        api_key_env: Option<&str>,
    ) -> Result<Vec<String>, LlmError> {
        let host = resolve_openai_base(host, std::env::var(BASE_URL_VAR).ok().as_deref());
        let ctx = Ctx {
            host: &host,
            model: None,
            api_key_env,
            method: "GET",
            endpoint: MODELS,
        };
        let started = Instant::now();
        let mut record = CallRecord {
            backend: "openai".into(),
            host: host.clone(),
            endpoint: MODELS.into(),
            started_at: jiff::Timestamp::now().to_string(),
            attempts: 1,
            ..CallRecord::default()
        };
        let fail = |record: CallRecord, (kind, msg): (LlmErrorKind, String)| {
            let mut record = record;
            record.wall_ms = ms(started.elapsed());
            LlmError::new(kind, msg, record)
        };
        let auth = match authorization(&ctx) {
            Ok(auth) => auth,
            Err(failed) => return Err(fail(record, failed)),
        };
        let client = match self.clients.pick(&host) {
            Ok(c) => c,
            Err(e) => return Err(fail(record, client_failed(&ctx, e))),
        };
        let mut request = client.get(format!("{host}{MODELS}"));
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth);
        }
        let wait = self.timeouts.connect + self.timeouts.read;
        let read = async {
            let response = request.send().await?;
            let status = response.status();
            let retry_after = retry_after(&response);
            let body = response.text().await?;
            Ok::<_, reqwest::Error>((status, retry_after, body))
        };
        let (status, retry_after, body) = match timeout(wait, read).await {
            Err(_) => return Err(fail(record, failure::no_answer(&ctx, wait))),
            Ok(Err(e)) => {
                return Err(fail(
                    record,
                    failure::send_failed(&ctx, &e, self.timeouts.connect),
                ));
            }
            Ok(Ok(answer)) => answer,
        };
        if !status.is_success() {
            let failed = failure::status_failed(&ctx, status, &body, retry_after.as_deref());
            return Err(fail(record, failed));
        }
        let ids = serde_json::from_str::<Value>(&body).ok().and_then(|v| {
            v.get("data")?
                .as_array()?
                .iter()
                .map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        });
        record.wall_ms = ms(started.elapsed());
        ids.ok_or_else(|| {
            let msg = format!(
                "the server at {host} answered `GET {MODELS}` with something that is not a model list: {}; is {host} an OpenAI-compatible server? check `{BASE_URL_VAR}` or the model's `host:`",
                quote(&body)
            );
            fail(record, (LlmErrorKind::Protocol, msg))
        })
    }

    async fn chat_stream(
        &self,
        host: String,
        model: &ModelSpec,
        messages: &[Message],
        on_token: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<CallRecord, LlmError> {
        let mapped = request::map_options(&model.options);
        for (name, why) in &mapped.dropped {
            tracing::debug!(option = %name, reason = why, "option not sent");
        }
        if model.keep_alive.is_some() {
            tracing::debug!("`keep_alive` not sent: OpenAI-compatible servers do not take it");
        }
        let body = request::request_body(model, messages, &mapped.sent);
        let mut call = Call {
            record: CallRecord {
                backend: "openai".into(),
                host: host.clone(),
                model: model.name.clone(),
                options: mapped.sent,
                endpoint: CHAT.into(),
                started_at: jiff::Timestamp::now().to_string(),
                attempts: 1,
                ..CallRecord::default()
            },
            api_key_env: model.api_key_env.clone(),
            sent: Instant::now(),
            timeouts: self.timeouts,
            first_token: None,
            finished: false,
            chunks: 0,
            timings: Timings::default(),
        };
        let ctx = call.ctx();
        let auth = authorization(&ctx);
        let client = self.clients.pick(&host).map_err(|e| client_failed(&ctx, e));
        let (auth, client) = match (auth, client) {
            (Ok(auth), Ok(client)) => (auth, client),
            (Err(failed), _) | (_, Err(failed)) => return Err(call.fail(failed)),
        };
        let mut request = client.post(format!("{host}{CHAT}")).json(&body);
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth);
        }
        tracing::debug!(messages = messages.len(), "sending chat request");

        call.sent = Instant::now();
        // Servers send their headers with the first event, after the prompt.
        let wait = self.timeouts.connect + self.timeouts.read;
        let response = match timeout(wait, request.send()).await {
            Err(_) => {
                let failed = failure::no_answer(&call.ctx(), wait);
                return Err(call.fail(failed));
            }
            Ok(Err(e)) => {
                let failed = failure::send_failed(&call.ctx(), &e, self.timeouts.connect);
                return Err(call.fail(failed));
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(&response);
            let body = match timeout(self.timeouts.read, response.bytes()).await {
                Ok(Ok(b)) => String::from_utf8_lossy(&b).into_owned(),
                _ => String::new(),
            };
            let failed = failure::status_failed(&call.ctx(), status, &body, retry_after.as_deref());
            return Err(call.fail(failed));
        }
        call.read_stream(response, model, on_token).await
    }
}

impl Backend for OpenAiBackend {
    fn name(&self) -> &'static str {
        "openai"
    }

    /// The id `GET /v1/models` gives the model: the requested name when the
    /// server lists it, or the one model a single-model server (llama.cpp's,
    /// llama-cpp-python's) serves whatever the request names.
    fn identify<'a>(&'a self, model: &'a ModelSpec) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let ids = self
                .list_models(model.host.as_deref(), model.api_key_env.as_deref())
                .await
                .ok()?;
            match ids.as_slice() {
                [only] => Some(format!("id:{only}")),
                many => many
                    .iter()
                    .find(|id| **id == model.name)
                    .map(|id| format!("id:{id}")),
            }
        })
    }

    fn chat<'a>(
        &'a self,
        model: &'a ModelSpec,
        messages: &'a [Message],
        on_token: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<CallRecord, LlmError>> {
        let host = resolve_openai_base(
            model.host.as_deref(),
            std::env::var(BASE_URL_VAR).ok().as_deref(),
        );
        // The span wraps the whole future; prompts and keys are never recorded in it.
        let span = tracing::info_span!(
            "llm_call",
            backend = "openai",
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

/// The `Authorization` header when the model names a key's variable; read at
/// call time, so a key set after the backend was made is seen.
fn authorization(ctx: &Ctx<'_>) -> Result<Option<HeaderValue>, (LlmErrorKind, String)> {
    let Some(var) = ctx.api_key_env else {
        return Ok(None);
    };
    base::bearer(std::env::var_os(var))
        .map(Some)
        .map_err(|problem| failure::missing_key(ctx, var, problem))
}

fn client_failed(ctx: &Ctx<'_>, e: &str) -> (LlmErrorKind, String) {
    (
        LlmErrorKind::Connect,
        format!(
            "cannot start the HTTP client for the server at {}: {e}",
            ctx.host
        ),
    )
}

fn retry_after(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// llama.cpp server's `timings` object.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Timings {
    prompt_n: Option<u64>,
    prompt_ms: Option<f64>,
    predicted_n: Option<u64>,
    predicted_ms: Option<f64>,
    predicted_per_second: Option<f64>,
}

impl Timings {
    fn read(value: &Value) -> Self {
        let number = |key: &str| value.get(key).and_then(Value::as_f64);
        let count = |key: &str| value.get(key).and_then(Value::as_u64);
        Self {
            prompt_n: count("prompt_n"),
            prompt_ms: number("prompt_ms"),
            predicted_n: count("predicted_n"),
            predicted_ms: number("predicted_ms"),
            predicted_per_second: number("predicted_per_second"),
        }
    }
}

/// One call in progress: its record and clock.
struct Call {
    record: CallRecord,
    api_key_env: Option<String>,
    sent: Instant,
    timeouts: Timeouts,
    /// When the first non-empty piece of text arrived.
    first_token: Option<Instant>,
    /// A choice carried a `finish_reason`.
    finished: bool,
    /// Non-empty content chunks received (the estimate of `eval_count` when
    /// the server counts nothing).
    chunks: u64,
    /// The last `timings` seen (llama.cpp server).
    timings: Timings,
}

/// What one event means for the stream.
enum Step {
    More,
    /// `data: [DONE]`.
    Done,
}

impl Call {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            host: &self.record.host,
            model: Some(&self.record.model),
            api_key_env: self.api_key_env.as_deref(),
            method: "POST",
            endpoint: CHAT,
        }
    }

    fn chars(&self) -> usize {
        self.record.text.chars().count()
    }

    /// Reads the event stream up to `data: [DONE]`, or to its end after a
    /// `finish_reason`.
    async fn read_stream(
        mut self,
        response: reqwest::Response,
        model: &ModelSpec,
        on_token: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<CallRecord, LlmError> {
        let mut stream = response.bytes_stream();
        let mut decoder = SseDecoder::new();
        loop {
            let Ok(next) = timeout(self.timeouts.read, stream.next()).await else {
                let msg = format!(
                    "the server at {} sent nothing for {} while streaming model `{}` ({} characters received); it may be overloaded or stuck: see the server's log, or raise the read timeout",
                    self.record.host,
                    human(self.timeouts.read),
                    self.record.model,
                    self.chars()
                );
                return Err(self.fail((LlmErrorKind::Stalled, msg)));
            };
            let ended = next.is_none();
            let events = match next {
                Some(Ok(bytes)) => decoder.push(&bytes),
                Some(Err(e)) if !self.finished => {
                    let msg = format!(
                        "the stream from {} for model `{}` broke before its end: {}; the partial response ({} characters) is kept; see the server's log",
                        self.record.host,
                        self.record.model,
                        source_text(&e),
                        self.chars()
                    );
                    return Err(self.fail((LlmErrorKind::IncompleteStream, msg)));
                }
                // After a `finish_reason`, only the usage and `[DONE]` were to come.
                Some(Err(_)) => return Ok(self.finish(model)),
                None => decoder.finish(),
            };
            for event in events {
                if let Step::Done = self.take(event, ended, on_token)? {
                    return Ok(self.finish(model));
                }
            }
            if ended {
                if self.finished {
                    return Ok(self.finish(model));
                }
                let msg = format!(
                    "the stream from {} for model `{}` ended without a `finish_reason` or `data: [DONE]`; the partial response ({} characters) is kept; the server may have crashed or been stopped: see its log",
                    self.record.host,
                    self.record.model,
                    self.chars()
                );
                return Err(self.fail((LlmErrorKind::IncompleteStream, msg)));
            }
        }
    }

    fn fail(mut self, (kind, message): (LlmErrorKind, String)) -> LlmError {
        self.record.wall_ms = ms(self.sent.elapsed());
        LlmError::new(kind, message, self.record)
    }

    /// `fail` for use while `self` is borrowed mutably: leaves an empty record behind.
    fn fail_take(&mut self, failed: (LlmErrorKind, String)) -> LlmError {
        let call = Call {
            record: std::mem::take(&mut self.record),
            api_key_env: self.api_key_env.take(),
            ..*self
        };
        call.fail(failed)
    }

    /// Takes one event; `at_end` when the stream ended inside it (so it may
    /// be cut short).
    fn take(
        &mut self,
        event: Result<SseEvent, SseError>,
        at_end: bool,
        on_token: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Step, LlmError> {
        let (host, model) = (&self.record.host, &self.record.model);
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                let msg = format!(
                    "the server at {host} sent an unreadable stream for model `{model}`: {e}; is {host} an OpenAI-compatible server?"
                );
                return Err(self.fail_take((LlmErrorKind::Protocol, msg)));
            }
        };
        if event.data.trim() == "[DONE]" {
            return Ok(Step::Done);
        }
        let value = match serde_json::from_str::<Value>(&event.data) {
            Ok(Value::Object(v)) => Value::Object(v),
            // The stream's end cut the event: reported as an incomplete stream.
            Err(_) if at_end => return Ok(Step::More),
            Ok(_) | Err(_) if event.event.as_deref() == Some("error") => {
                Value::String(event.data.clone())
            }
            Ok(_) | Err(_) => {
                let msg = format!(
                    "the server at {host} sent an event that is not a JSON object for model `{model}`: {}; is {host} an OpenAI-compatible server?",
                    quote(&event.data)
                );
                return Err(self.fail_take((LlmErrorKind::Protocol, msg)));
            }
        };
        if value.get("error").is_some() || event.event.as_deref() == Some("error") {
            let error = failure::error_text(&value).unwrap_or_else(|| value.to_string());
            let msg = format!(
                "the server at {host} reported an error while streaming model `{model}`: {}; the partial response ({} characters) is kept; see the server's log",
                quote(&error),
                self.chars()
            );
            return Err(self.fail_take((LlmErrorKind::ErrorInStream, msg)));
        }
        if let Some(id) = value
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
        {
            self.record.model_id = Some(id.to_owned());
        }
        let choices = value.get("choices").and_then(Value::as_array);
        let choice = choices.and_then(|c| {
            c.iter()
                .find(|c| c.get("index").and_then(Value::as_u64) == Some(0))
                .or_else(|| c.first())
        });
        if let Some(choice) = choice {
            let content = choice
                .get("delta")
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !content.is_empty() {
                if self.first_token.is_none() {
                    let now = Instant::now();
                    self.first_token = Some(now);
                    self.record.ttft_ms = Some(ms(now - self.sent));
                }
                self.record.text.push_str(content);
                self.chunks += 1;
                on_token(content);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.record.done_reason = Some(reason.to_owned());
                self.finished = true;
            }
        }
        if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
            let count = |key: &str| usage.get(key).and_then(Value::as_u64);
            self.record.prompt_eval_count =
                count("prompt_tokens").or(self.record.prompt_eval_count);
            self.record.eval_count = count("completion_tokens").or(self.record.eval_count);
        }
        if let Some(timings) = value.get("timings").filter(|t| t.is_object()) {
            self.timings = Timings::read(timings);
        }
        Ok(Step::More)
    }

    fn finish(mut self, model: &ModelSpec) -> CallRecord {
        let end = Instant::now();
        let t = self.timings;
        let r = &mut self.record;
        r.wall_ms = ms(end - self.sent);
        // OpenAI-compatible servers report no durations: the whole request
        // is the wall time, and, unless llama.cpp's `timings` say otherwise,
        // generating is measured from the first token to the end of the
        // stream (so it includes the network, and says little when a proxy
        // buffered the whole answer).
        r.total_duration_ms = Some(r.wall_ms);
        r.prompt_eval_count = r.prompt_eval_count.or(t.prompt_n);
        r.eval_count = r.eval_count.or(t.predicted_n);
        if r.eval_count.is_none() && self.chunks > 0 {
            // No usage chunk and no timings (llama-cpp-python's server, for
            // one): each content chunk usually carries one token, so their
            // number is an estimate, and says so. The prompt's count stays
            // unknown.
            r.eval_count = Some(self.chunks);
            r.estimated.push("eval_count".into());
        }
        r.prompt_eval_duration_ms = t.prompt_ms;
        r.eval_duration_ms = t
            .predicted_ms
            .or_else(|| self.first_token.map(|first| ms(end - first)));
        r.tokens_per_second = match (t.predicted_ms, t.predicted_per_second) {
            (Some(_), Some(per_second)) => Some(per_second),
            _ => match (r.eval_count, r.eval_duration_ms) {
                #[allow(clippy::cast_precision_loss)]
                (Some(n), Some(d)) if d > 0.0 => Some(n as f64 / d * 1000.0),
                _ => None,
            },
        };
        if r.tokens_per_second.is_some() && r.estimated.iter().any(|f| f == "eval_count") {
            r.estimated.push("tokens_per_second".into());
        }
        // `num_ctx` is not sent, so the declared options are checked.
        r.prompt_truncated = prompt_truncated(&model.options, r.prompt_eval_count);
        if r.prompt_truncated {
            tracing::warn!(
                model = %r.model,
                prompt_eval_count = r.prompt_eval_count,
                "the server evaluated `num_ctx` prompt tokens or more; it has probably truncated the prompt"
            );
        }
        self.record
    }
}

#[cfg(test)]
mod tests;
