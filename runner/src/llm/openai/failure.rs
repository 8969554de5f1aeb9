//! What a person reads when a request fails: the host and the model named,
//! and what to do.

use super::super::LlmErrorKind;
use super::super::http::{connection_refused, human, quote, source_text};
use super::base::KeyProblem;
use serde_json::Value;
use std::time::Duration;

/// Where an address comes from, for messages that say how to change it.
const ADDRESS: &str = "`OPENAI_BASE_URL` or the model's `host:`";

/// What a request was for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ctx<'a> {
    /// The base URL, without `/v1`.
    pub(super) host: &'a str,
    /// `None` when listing models.
    pub(super) model: Option<&'a str>,
    pub(super) api_key_env: Option<&'a str>,
    /// `POST /v1/chat/completions`, `GET /v1/models`.
    pub(super) method: &'static str,
    pub(super) endpoint: &'static str,
}

impl Ctx<'_> {
    /// `for model `m``, or `for its model list`.
    fn purpose(&self) -> String {
        match self.model {
            Some(m) => format!("for model `{m}`"),
            None => "for its model list".to_owned(),
        }
    }
}

/// The API key's variable names a missing or unusable key.
pub(super) fn missing_key(ctx: &Ctx<'_>, var: &str, problem: KeyProblem) -> (LlmErrorKind, String) {
    let msg = format!(
        "the API key {} on the server at {} comes from `${var}`, which {}; set `{var}` to the key, or remove `api_key_env:` from the model if the server needs none",
        ctx.purpose(),
        ctx.host,
        problem.describe()
    );
    (LlmErrorKind::MissingApiKey, msg)
}

/// The request got no HTTP answer.
pub(super) fn send_failed(
    ctx: &Ctx<'_>,
    e: &reqwest::Error,
    connect: Duration,
) -> (LlmErrorKind, String) {
    let (host, purpose) = (ctx.host, ctx.purpose());
    let check = format!("check the address ({ADDRESS}) and that the server is up");
    if connection_refused(e) {
        (
            LlmErrorKind::ConnectionRefused,
            format!(
                "cannot reach the OpenAI-compatible server at {host} {purpose}: connection refused; is the server running at {host}? start it (for llama.cpp: `llama-server -m model.gguf --port 8080`), or point {ADDRESS} at it"
            ),
        )
    } else if e.is_connect() && e.is_timeout() {
        (
            LlmErrorKind::ConnectTimeout,
            format!(
                "cannot reach the OpenAI-compatible server at {host} {purpose}: no connection within {}; {check}",
                human(connect)
            ),
        )
    } else if e.is_builder() {
        (
            LlmErrorKind::Connect,
            format!(
                "`{host}` is not a usable server address {purpose}: {}; set {ADDRESS} to a URL such as `http://127.0.0.1:8080/v1`",
                source_text(e)
            ),
        )
    } else if e.is_connect() {
        (
            LlmErrorKind::Connect,
            format!(
                "cannot reach the OpenAI-compatible server at {host} {purpose}: {}; {check}",
                source_text(e)
            ),
        )
    } else {
        (
            LlmErrorKind::Connect,
            format!(
                "the server at {host} dropped the request {purpose} before answering: {}; see the server's log",
                source_text(e)
            ),
        )
    }
}

/// The server sent no response headers in time.
pub(super) fn no_answer(ctx: &Ctx<'_>, waited: Duration) -> (LlmErrorKind, String) {
    (
        LlmErrorKind::Stalled,
        format!(
            "the server at {} sent no answer within {} {}; the model may still be loading or the server is stuck: see the server's log, or raise the read timeout",
            ctx.host,
            human(waited),
            ctx.purpose()
        ),
    )
}

/// What the server said in an error body: OpenAI's `{"error": {"message"}}`,
/// or the shapes other servers use.
pub(super) fn server_error_text(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    error_text(&value)
}

/// The message of an error object (or string) found in `value`.
pub(super) fn error_text(value: &Value) -> Option<String> {
    let error = value.get("error").unwrap_or(value);
    let text = match error {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => ["message", "detail", "msg"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str).map(str::to_owned)),
        _ => None,
    };
    text.or_else(|| value.get("error").map(Value::to_string))
}

/// The server answered with a non-success status.
pub(super) fn status_failed(
    ctx: &Ctx<'_>,
    status: reqwest::StatusCode,
    body: &str,
    retry_after: Option<&str>,
) -> (LlmErrorKind, String) {
    let (host, purpose) = (ctx.host, ctx.purpose());
    let said = match (server_error_text(body), body.trim()) {
        (Some(e), _) => format!("the server said {}", quote(&e)),
        (None, "") => "with an empty body".to_owned(),
        (None, raw) => format!("with {}", quote(raw)),
    };
    let url = format!("{host}{}", ctx.endpoint);
    match (status.as_u16(), ctx.model) {
        (401 | 403, _) => {
            let msg = match ctx.api_key_env {
                Some(var) => format!(
                    "the server at {host} refused the API key from `${var}` {purpose} ({status}, {said}); check that `{var}` holds a key this server accepts"
                ),
                None => format!(
                    "the server at {host} wants an API key {purpose} ({status}, {said}); set `api_key_env:` in the model to the environment variable that holds it"
                ),
            };
            (LlmErrorKind::Unauthorized, msg)
        }
        (404, Some(model)) => (
            LlmErrorKind::ModelNotFound,
            format!(
                "model `{model}` not found at {host} ({status}, {said}), or {host} is not the base URL of an OpenAI-compatible API (the request went to `{url}`); check the model's name against the server's `GET {host}/v1/models`, and the base URL ({ADDRESS})"
            ),
        ),
        (404, None) => (
            LlmErrorKind::Http(404),
            format!(
                "there is no model list at `{url}` ({status}, {said}); is {host} the base URL of an OpenAI-compatible API? check {ADDRESS}"
            ),
        ),
        (429, _) => {
            let wait = retry_after.map_or_else(String::new, |s| {
                format!("; it asks to retry after {}", quote(s))
            });
            (
                LlmErrorKind::RateLimited,
                format!(
                    "the server at {host} rate-limited the request {purpose} ({status}, {said}{wait}); wait and run again, or run fewer stages at once"
                ),
            )
        }
        (400, _) => (
            LlmErrorKind::BadRequest,
            format!(
                "the server at {host} rejected the request {purpose} ({status}, {said}); check the model's name and `options:` in the workflow; the prompt may also exceed the server's context size"
            ),
        ),
        (500, _) => (
            LlmErrorKind::ServerError,
            format!(
                "the server at {host} failed {purpose} ({status}, {said}); the model may not fit in memory: see the server's log"
            ),
        ),
        (503, _) => (
            LlmErrorKind::Http(503),
            format!(
                "the server at {host} is not ready {purpose} ({status}, {said}); it may still be loading the model, or be too busy: try again later"
            ),
        ),
        (code @ 501..=599, _) => (
            LlmErrorKind::Http(code),
            format!(
                "the server at {host} failed {purpose} ({status}, {said}); see the log of the server (or of the proxy in front of it)"
            ),
        ),
        (code, _) => (
            LlmErrorKind::Http(code),
            format!(
                "the server at {host} answered {status} to `{} {}` {purpose} ({said}); is {host} an OpenAI-compatible server? check {ADDRESS}",
                ctx.method, ctx.endpoint
            ),
        ),
    }
}
