//! A fake OpenAI-compatible server for tests, in llama.cpp server's dialect:
//! real HTTP/1.1 on a local port, `POST /v1/chat/completions` streamed as
//! server-sent events (`Content-Type: text/event-stream`, `Transfer-Encoding:
//! chunked`), `GET /v1/models`. Timing, chunking, the optional parts of the
//! stream and faults are scripted by [`FakeConfig`].
//!
//! Like [`FakeOllama`](crate::fake_ollama::FakeOllama), it runs on its own
//! thread and runtime, records every request and stops when dropped.
//!
//! ```no_run
//! use chimera_tests::fake_openai::{FakeConfig, FakeOpenAi};
//! let fake = FakeOpenAi::start(FakeConfig::tokens(["Hel", "lo"]));
//! let base = fake.base_url(); // http://127.0.0.1:PORT/v1, for a model's `host:`
//! ```

use crate::http::{Chunker, Cut, Respond, Server, chunked_head, whole, whole_with};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::net::tcp::OwnedWriteHalf;

pub use crate::http::{RecordedRequest, refused_url};

const CREATED: u64 = 1_760_742_847;
const COMPLETION_ID: &str = "chatcmpl-Fk3Qx0aZ9cTqLw2R";
const FINGERPRINT: &str = "b6780-2b6b55a5";
/// What a 429 asks the client to wait, in seconds.
pub const RETRY_AFTER_SECS: u64 = 7;

/// How the SSE events are cut into HTTP chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chunking {
    /// One event per chunk, as llama.cpp server sends them.
    #[default]
    EventPerChunk,
    /// `n` events per chunk (the last chunk may hold fewer).
    EventsPerChunk(usize),
    /// Every event in two chunks, cut inside its first multi-byte UTF-8
    /// character when it has one, else in the middle.
    SplitMidEvent,
    /// The body re-cut into chunks of `n` bytes, across event boundaries.
    Bytes(usize),
}

impl Chunking {
    fn cut(self) -> Cut {
        match self {
            Self::EventPerChunk => Cut::Each,
            Self::EventsPerChunk(n) => Cut::Group(n),
            Self::SplitMidEvent => Cut::Split,
            Self::Bytes(n) => Cut::Bytes(n),
        }
    }
}

/// What goes wrong, for every chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an OpenAI-style `{"error": {…}}` body (a
    /// 429 also carries `Retry-After`).
    Status(u16),
    /// After `n` tokens, send a `data: {"error": {…}}` event and end the stream.
    ErrorEventAfter(usize),
    /// After `n` tokens, end the stream cleanly but without a `finish_reason`
    /// or `[DONE]`.
    CutAfter(usize),
    /// After `n` tokens, send nothing for [`FakeConfig::stall_for`], then close.
    StallAfter(usize),
    /// After `n` tokens, close the connection in the middle of the chunked body.
    ResetAfter(usize),
}

/// llama.cpp server's `timings` object, sent with the `finish_reason` chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timings {
    pub prompt_n: u64,
    pub prompt_ms: f64,
    pub predicted_n: u64,
    pub predicted_ms: f64,
    pub predicted_per_second: f64,
}

/// The script the fake follows for every chat request.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// What `GET /v1/models` lists.
    pub models: Vec<String>,
    /// Response pieces, one event each.
    pub tokens: Vec<String>,
    /// Before the first event (the server's prompt evaluation).
    pub first_token_delay: Duration,
    /// Before each later token.
    pub token_delay: Duration,
    pub chunking: Chunking,
    /// Send the usage chunk when the request asks for it
    /// (`stream_options.include_usage`); default on.
    pub usage: bool,
    /// The usage's `prompt_tokens`; by default a quarter of the prompt's bytes.
    pub prompt_tokens: Option<u64>,
    /// llama.cpp's `timings`; default off.
    pub timings: Option<Timings>,
    /// End with `data: [DONE]`; default on.
    pub done: bool,
    /// The last chunk's `finish_reason`; `None` sends none.
    pub finish_reason: Option<String>,
    /// End lines with `\r\n` instead of `\n`.
    pub crlf: bool,
    /// Send a comment line (`: ping`) before each event.
    pub comments: bool,
    /// The key `Authorization: Bearer …` must carry; others get a 401.
    pub api_key: Option<String>,
    pub fault: Option<Fault>,
    /// How long [`Fault::StallAfter`] stays silent.
    pub stall_for: Duration,
    /// The message of error answers and events; a realistic one by default.
    pub error_text: Option<String>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self::tokens(["Hello", ",", " world", "!"])
    }
}

impl FakeConfig {
    /// Streams these tokens, with no delays, usage and `[DONE]`.
    pub fn tokens<S: Into<String>>(tokens: impl IntoIterator<Item = S>) -> Self {
        Self {
            models: vec!["qwen2.5-7b-instruct".into()],
            tokens: tokens.into_iter().map(Into::into).collect(),
            first_token_delay: Duration::ZERO,
            token_delay: Duration::ZERO,
            chunking: Chunking::default(),
            usage: true,
            prompt_tokens: None,
            timings: None,
            done: true,
            finish_reason: Some("stop".into()),
            crlf: false,
            comments: false,
            api_key: None,
            fault: None,
            stall_for: Duration::from_secs(10),
            error_text: None,
        }
    }

    /// Streams `n` tokens `tok0 `, `tok1 `, ….
    pub fn token_count(n: usize) -> Self {
        Self::tokens((0..n).map(|i| format!("tok{i} ")))
    }

    /// Sets the delays before the first token and between tokens.
    #[must_use]
    pub fn delays(mut self, first_token: Duration, per_token: Duration) -> Self {
        self.first_token_delay = first_token;
        self.token_delay = per_token;
        self
    }

    /// Sets how events are cut into HTTP chunks.
    #[must_use]
    pub fn chunking(mut self, chunking: Chunking) -> Self {
        self.chunking = chunking;
        self
    }

    /// Sets the fault.
    #[must_use]
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// Requires this API key.
    #[must_use]
    pub fn api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.to_owned());
        self
    }

    /// Sends llama.cpp's `timings`.
    #[must_use]
    pub fn timings(mut self, timings: Timings) -> Self {
        self.timings = Some(timings);
        self
    }
}

/// A running fake server; stops when dropped.
pub struct FakeOpenAi {
    server: Server,
}

impl FakeOpenAi {
    /// Starts a server on 127.0.0.1 (a free port) following `config`.
    ///
    /// # Panics
    /// When no local port or thread can be had.
    pub fn start(config: FakeConfig) -> Self {
        Self {
            server: Server::start("fake-openai", OpenAi(config)),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `http://127.0.0.1:PORT/v1`, as `OPENAI_BASE_URL` is usually written.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.url())
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }
}

struct OpenAi(FakeConfig);

impl Respond for OpenAi {
    async fn respond(
        &self,
        writer: &mut OwnedWriteHalf,
        request: &RecordedRequest,
    ) -> std::io::Result<bool> {
        respond(writer, request, &self.0).await
    }
}

/// An OpenAI-style error body.
fn error_body(code: u16, message: &str) -> String {
    let kind = match code {
        400 => "invalid_request_error",
        401 | 403 => "authentication_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        503 => "unavailable_error",
        _ => "server_error",
    };
    json!({"error": {"code": code, "message": message, "type": kind}}).to_string()
}

async fn respond<W: AsyncWrite + Unpin>(
    writer: &mut W,
    request: &RecordedRequest,
    config: &FakeConfig,
) -> std::io::Result<bool> {
    const JSON: &str = "application/json; charset=utf-8";
    let route = (request.method.as_str(), request.path.as_str());
    if route == ("GET", "/health") {
        return whole(writer, 200, JSON, r#"{"status":"ok"}"#).await;
    }
    let known = matches!(route.1, "/v1/models" | "/v1/chat/completions");
    if !known {
        return whole(writer, 404, JSON, &error_body(404, "File Not Found")).await;
    }
    if let Some(key) = &config.api_key
        && request.header("authorization") != Some(&format!("Bearer {key}"))
    {
        return whole(writer, 401, JSON, &error_body(401, "Invalid API Key")).await;
    }
    match route {
        ("GET", "/v1/models") => {
            let data: Vec<Value> = config
                .models
                .iter()
                .map(|id| json!({"id": id, "object": "model", "created": CREATED, "owned_by": "llamacpp"}))
                .collect();
            let list = json!({"object": "list", "data": data});
            whole(writer, 200, JSON, &list.to_string()).await
        }
        ("POST", "/v1/chat/completions") => {
            let model = request.body["model"].as_str().unwrap_or_default();
            if let Some(Fault::Status(code)) = config.fault {
                let message = config.error_text.clone().unwrap_or_else(|| match code {
                    400 => "the request exceeds the available context size, try increasing it"
                        .to_owned(),
                    401 | 403 => "Invalid API Key".to_owned(),
                    404 => format!("The model `{model}` does not exist."),
                    429 => "Rate limit reached for requests".to_owned(),
                    500 => "failed to allocate memory for the KV cache".to_owned(),
                    503 => "Loading model".to_owned(),
                    _ => "something went wrong".to_owned(),
                });
                let retry = RETRY_AFTER_SECS.to_string();
                let headers: &[(&str, &str)] = if code == 429 {
                    &[("Retry-After", &retry)]
                } else {
                    &[]
                };
                return whole_with(writer, code, JSON, headers, &error_body(code, &message)).await;
            }
            stream(writer, request, config, model).await
        }
        _ => whole(writer, 405, "text/plain", "405 method not allowed").await,
    }
}

/// Streams the scripted tokens as server-sent events.
async fn stream<W: AsyncWrite + Unpin>(
    writer: &mut W,
    request: &RecordedRequest,
    config: &FakeConfig,
    model: &str,
) -> std::io::Result<bool> {
    let chunk = |choices: Value| {
        json!({
            "choices": choices, "created": CREATED, "id": COMPLETION_ID, "model": model,
            "system_fingerprint": FINGERPRINT, "object": "chat.completion.chunk"
        })
    };
    let delta = |delta: Value, finish: Option<&str>| {
        chunk(json!([{"finish_reason": finish, "index": 0, "delta": delta}]))
    };
    let event = |value: &Value| {
        let mut text = String::new();
        if config.comments {
            text.push_str(": ping\n");
        }
        text.push_str(&format!("data: {value}\n\n"));
        if config.crlf {
            text = text.replace('\n', "\r\n");
        }
        text.into_bytes()
    };
    let prompt_bytes: usize = request.body["messages"].as_array().map_or(0, |m| {
        m.iter()
            .filter_map(|m| m["content"].as_str())
            .map(str::len)
            .sum()
    });
    let wants_usage = request.body["stream_options"]["include_usage"] == json!(true);

    // Like llama.cpp server, the headers go out with the first event.
    let mut out = Chunker::new(
        writer,
        config.chunking.cut(),
        chunked_head("text/event-stream"),
    );
    for i in 0..=config.tokens.len() {
        let delay = if i == 0 {
            config.first_token_delay
        } else {
            config.token_delay
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match config.fault {
            Some(Fault::ErrorEventAfter(n)) if n == i => {
                let message = config
                    .error_text
                    .as_deref()
                    .unwrap_or("llama_decode failed: the KV cache is full");
                out.unit(&event(&serde_json::from_str(&error_body(500, message))?))
                    .await?;
                out.end().await?;
                return Ok(true);
            }
            Some(Fault::CutAfter(n)) if n == i => {
                out.end().await?;
                return Ok(true);
            }
            Some(Fault::StallAfter(n)) if n == i => {
                out.flush_pending().await?;
                tokio::time::sleep(config.stall_for).await;
                return Ok(false);
            }
            Some(Fault::ResetAfter(n)) if n == i => {
                out.flush_pending().await?;
                return Ok(false);
            }
            _ => {}
        }
        if i == 0 {
            out.unit(&event(&delta(
                json!({"role": "assistant", "content": null}),
                None,
            )))
            .await?;
        }
        if let Some(token) = config.tokens.get(i) {
            out.unit(&event(&delta(json!({"content": token}), None)))
                .await?;
            continue;
        }
        let mut last = delta(json!({}), config.finish_reason.as_deref());
        if let Some(t) = config.timings {
            last["timings"] = json!({
                "prompt_n": t.prompt_n, "prompt_ms": t.prompt_ms,
                "prompt_per_token_ms": t.prompt_ms / t.prompt_n.max(1) as f64,
                "prompt_per_second": t.prompt_n as f64 / t.prompt_ms * 1000.0,
                "predicted_n": t.predicted_n, "predicted_ms": t.predicted_ms,
                "predicted_per_token_ms": t.predicted_ms / t.predicted_n.max(1) as f64,
                "predicted_per_second": t.predicted_per_second,
            });
        }
        out.unit(&event(&last)).await?;
        if config.usage && wants_usage {
            let prompt = config
                .prompt_tokens
                .unwrap_or((prompt_bytes as u64 / 4).max(1));
            let completion = config.tokens.len() as u64;
            let mut usage = chunk(json!([]));
            usage["usage"] = json!({
                "completion_tokens": completion, "prompt_tokens": prompt,
                "total_tokens": completion + prompt
            });
            out.unit(&event(&usage)).await?;
        }
        if config.done {
            let done = if config.crlf {
                "data: [DONE]\r\n\r\n"
            } else {
                "data: [DONE]\n\n"
            };
            out.unit(done.as_bytes()).await?;
        }
    }
    out.end().await?;
    Ok(true)
}
