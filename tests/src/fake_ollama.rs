//! A fake Ollama server for tests: real HTTP/1.1 on a local port, NDJSON
//! streaming with `Transfer-Encoding: chunked`, as Ollama's API reference
//! (<https://github.com/ollama/ollama/blob/main/docs/api.md>) describes. Timing, chunking and faults are scripted by [`FakeConfig`].
//!
//! The server runs on its own thread and runtime, so sync tests and tokio tests
//! use it alike; it records every request and stops when the handle drops.
//!
//! ```no_run
//! use chimera_tests::fake_ollama::{FakeConfig, FakeOllama, Fault};
//! let fake = FakeOllama::start(FakeConfig::tokens(["Hel", "lo"]));
//! let url = fake.url(); // http://127.0.0.1:PORT, for a model's `host:`
//!
//! // Per request: busy for the first chat, then answers (the last script repeats).
//! let fake = FakeOllama::start(
//!     FakeConfig::default().fault(Fault::Status(503)).then(FakeConfig::default()),
//! );
//! ```

use crate::http::{Chunker, Cut, Respond, Server, chunked_head, whole};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::net::tcp::OwnedWriteHalf;

pub use crate::http::{RecordedRequest, refused_url};

const CREATED_AT: &str = "2025-10-17T23:14:07.4Z";

/// How the NDJSON lines are cut into HTTP chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chunking {
    /// One line per chunk, as Ollama sends them.
    #[default]
    LinePerChunk,
    /// `n` lines per chunk (the last chunk may hold fewer).
    LinesPerChunk(usize),
    /// Every line in two chunks, cut inside its first multi-byte UTF-8
    /// character when it has one, else in the middle.
    SplitMidLine,
    /// The body re-cut into chunks of `n` bytes, across line boundaries.
    Bytes(usize),
}

impl Chunking {
    fn cut(self) -> Cut {
        match self {
            Self::LinePerChunk => Cut::Each,
            Self::LinesPerChunk(n) => Cut::Group(n),
            Self::SplitMidLine => Cut::Split,
            Self::Bytes(n) => Cut::Bytes(n),
        }
    }
}

/// What goes wrong, for every chat or generate request the script answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an `{"error": …}` body (404 names the model).
    Status(u16),
    /// After `n` tokens, send an `{"error": …}` line and end the stream.
    ErrorLineAfter(usize),
    /// After `n` tokens, end the stream cleanly but without the `done` chunk.
    CutAfter(usize),
    /// After `n` tokens, send nothing for [`FakeConfig::stall_for`], then close.
    StallAfter(usize),
    /// After `n` tokens, close the connection in the middle of the chunked body.
    ResetAfter(usize),
}

/// What the final `done` chunk reports; `None` fields are derived from the
/// tokens and delays (see [`FakeConfig`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    pub total_duration: Option<u64>,
    pub load_duration: Option<u64>,
    pub prompt_eval_count: Option<u64>,
    pub prompt_eval_duration: Option<u64>,
    pub eval_count: Option<u64>,
    pub eval_duration: Option<u64>,
    /// Default `stop`.
    pub done_reason: Option<String>,
}

/// The script the fake follows for every chat (or generate) request, or for
/// the first one when [`then`](Self::then) scripts the later ones.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The model `/api/tags` lists.
    pub model: String,
    /// Response pieces, one stream line each.
    pub tokens: Vec<String>,
    /// Before the first line (the server's prompt evaluation).
    pub first_token_delay: Duration,
    /// Before each later line.
    pub token_delay: Duration,
    pub chunking: Chunking,
    pub fault: Option<Fault>,
    /// How long [`Fault::StallAfter`] stays silent.
    pub stall_for: Duration,
    /// The text of `{"error": …}` answers; a realistic one by default.
    pub error_text: Option<String>,
    pub metrics: Metrics,
    /// The scripts of the chat (or generate) requests after the first, in
    /// order; the last one answers every request after them. Empty: this
    /// script answers every request.
    pub next: Vec<FakeConfig>,
    /// Delays computed from each request's options instead of the fixed
    /// ones above (for comparisons).
    pub latency: Option<Latency>,
    pub refusal: Refusal,
}

/// A switch the test holds: while set to (option, value), chats with that
/// option value are refused with 400, as a server refuses bad options.
#[derive(Debug, Clone, Default)]
pub struct Refusal(std::sync::Arc<std::sync::Mutex<Option<(String, Value)>>>);

impl Refusal {
    pub fn set(&self, option: &str, value: Value) {
        *self.0.lock().expect("refusal lock") = Some((option.to_owned(), value));
    }

    pub fn clear(&self) {
        *self.0.lock().expect("refusal lock") = None;
    }

    fn refuses(&self, body: &Value) -> bool {
        self.0
            .lock()
            .expect("refusal lock")
            .as_ref()
            .is_some_and(|(k, v)| body["options"][k] == *v)
    }
}

/// How the fake's speed answers to a request's options, as a real server's
/// does, with seeded jitter: the time to first token grows with `num_ctx` and
/// `temperature`,
/// the time per token with `num_predict`, and the first chat loads the
/// model (the delay before its first token, reported as `load_duration`).
#[derive(Debug, Clone)]
pub struct Latency {
    /// Time to first token at `num_ctx` 0 …
    pub ttft: Duration,
    /// … plus this much per 1024 tokens of `num_ctx` (default 2048) …
    pub ttft_per_kctx: Duration,
    /// … plus this much per unit of `temperature` (default 0.8).
    pub ttft_per_temperature: Duration,
    /// Time per token at `num_predict` 0 …
    pub per_token: Duration,
    /// … plus this much per 100 tokens of `num_predict` (default 128).
    pub per_token_per_100_predict: Duration,
    /// Each delay is scaled by a factor drawn uniformly from
    /// `1 ± jitter`, from a generator seeded with `seed`.
    pub jitter: f64,
    pub seed: u64,
    /// The first chat request's model load.
    pub cold_load: Duration,
}

impl Latency {
    /// This request's (first-token, per-token) delays; `draw` gives the
    /// next jitter factors.
    fn delays(&self, options: &Value, mut draw: impl FnMut() -> f64) -> (Duration, Duration) {
        let num = |key: &str, default: f64| options[key].as_f64().unwrap_or(default);
        let ttft = self.ttft
            + self.ttft_per_kctx.mul_f64(num("num_ctx", 2048.0) / 1024.0)
            + self.ttft_per_temperature.mul_f64(num("temperature", 0.8));
        let token = self.per_token
            + self
                .per_token_per_100_predict
                .mul_f64(num("num_predict", 128.0) / 100.0);
        (ttft.mul_f64(draw()), token.mul_f64(draw()))
    }
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self::tokens(["Hello", ",", " world", "!"])
    }
}

impl FakeConfig {
    /// Streams these tokens, with no delays.
    pub fn tokens<S: Into<String>>(tokens: impl IntoIterator<Item = S>) -> Self {
        Self {
            model: "gemma3:latest".into(),
            tokens: tokens.into_iter().map(Into::into).collect(),
            first_token_delay: Duration::ZERO,
            token_delay: Duration::ZERO,
            chunking: Chunking::default(),
            fault: None,
            stall_for: Duration::from_secs(10),
            error_text: None,
            metrics: Metrics::default(),
            next: Vec::new(),
            latency: None,
            refusal: Refusal::default(),
        }
    }

    /// Refuses (400) chats whose option matches what `refusal` is set to,
    /// while it is set.
    #[must_use]
    pub fn refusing(mut self, refusal: Refusal) -> Self {
        self.refusal = refusal;
        self
    }

    /// Computes the delays from each request's options (see [`Latency`]).
    #[must_use]
    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency = Some(latency);
        self
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

    /// Sets how lines are cut into HTTP chunks.
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

    /// Sets what the final chunk reports.
    #[must_use]
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Answers the next chat (or generate) request with `later` (and the
    /// ones after it with `later`'s own [`then`](Self::then) scripts).
    #[must_use]
    pub fn then(mut self, mut later: FakeConfig) -> Self {
        let after = std::mem::take(&mut later.next);
        self.next.push(later);
        self.next.extend(after);
        self
    }

    /// The script for chat (or generate) request number `n` (from 0).
    fn script(&self, n: usize) -> &FakeConfig {
        match n.checked_sub(1) {
            None => self,
            Some(i) => self.next.get(i).or(self.next.last()).unwrap_or(self),
        }
    }

    /// The final chunk's metric fields for a request whose prompt has
    /// `prompt_bytes` bytes.
    fn final_metrics(&self, prompt_bytes: usize) -> Value {
        let m = &self.metrics;
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let n = self.tokens.len() as u64;
        let eval_count = m.eval_count.unwrap_or(n);
        let per_token = if self.token_delay.is_zero() {
            10_000_000
        } else {
            nanos(self.token_delay)
        };
        let eval_duration = m.eval_duration.unwrap_or(per_token * eval_count);
        let prompt_eval_duration =
            m.prompt_eval_duration
                .unwrap_or(if self.first_token_delay.is_zero() {
                    5_000_000
                } else {
                    nanos(self.first_token_delay)
                });
        let load_duration = m.load_duration.unwrap_or(1_000_000);
        json!({
            "done_reason": m.done_reason.as_deref().unwrap_or("stop"),
            "total_duration": m.total_duration.unwrap_or(load_duration + prompt_eval_duration + eval_duration),
            "load_duration": load_duration,
            "prompt_eval_count": m.prompt_eval_count.unwrap_or((prompt_bytes as u64 / 4).max(1)),
            "prompt_eval_duration": prompt_eval_duration,
            "eval_count": eval_count,
            "eval_duration": eval_duration,
        })
    }
}

/// A running fake server; stops when dropped.
pub struct FakeOllama {
    server: Server,
}

impl FakeOllama {
    /// Starts a server on 127.0.0.1 (a free port) following `config`.
    ///
    /// # Panics
    /// When no local port or thread can be had.
    pub fn start(config: FakeConfig) -> Self {
        Self {
            server: Server::start(
                "fake-ollama",
                Ollama {
                    config,
                    chats: AtomicUsize::new(0),
                    jitter_state: std::sync::atomic::AtomicU64::new(0),
                },
            ),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
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

struct Ollama {
    config: FakeConfig,
    /// Chat (and generate) requests answered so far, to pick their script.
    chats: AtomicUsize,
    /// The jitter generator's state (0: not seeded yet).
    jitter_state: std::sync::atomic::AtomicU64,
}

impl Respond for Ollama {
    async fn respond(
        &self,
        writer: &mut OwnedWriteHalf,
        request: &RecordedRequest,
    ) -> std::io::Result<bool> {
        let (config, chat) = match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/api/chat" | "/api/generate") => {
                let n = self.chats.fetch_add(1, Ordering::SeqCst);
                (self.config.script(n), Some(n))
            }
            _ => (&self.config, None),
        };
        if chat.is_some() && config.refusal.refuses(&request.body) {
            let refused = config.clone().fault(Fault::Status(400));
            return respond(writer, request, &refused).await;
        }
        match (&config.latency, chat) {
            (Some(latency), Some(n)) => {
                let (ttft, per_token) = latency.delays(&request.body["options"], || {
                    // xorshift64*, seeded: the same requests get the same delays.
                    let mut x = self.jitter_state.load(Ordering::SeqCst);
                    if x == 0 {
                        x = latency.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    }
                    x ^= x >> 12;
                    x ^= x << 25;
                    x ^= x >> 27;
                    self.jitter_state.store(x, Ordering::SeqCst);
                    let unit =
                        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
                    1.0 + latency.jitter * (2.0 * unit - 1.0)
                });
                let load = if n == 0 {
                    latency.cold_load
                } else {
                    Duration::from_millis(1)
                };
                let mut timed = config.clone();
                timed.first_token_delay = load + ttft;
                timed.token_delay = per_token;
                timed.metrics.load_duration =
                    Some(u64::try_from(load.as_nanos()).unwrap_or(u64::MAX));
                timed.metrics.prompt_eval_duration =
                    Some(u64::try_from(ttft.as_nanos()).unwrap_or(u64::MAX));
                respond(writer, request, &timed).await
            }
            _ => respond(writer, request, config).await,
        }
    }
}

/// Answers one request; `Ok(false)` when the connection must close.
async fn respond<W: AsyncWrite + Unpin>(
    writer: &mut W,
    request: &RecordedRequest,
    config: &FakeConfig,
) -> std::io::Result<bool> {
    let model = request.body["model"]
        .as_str()
        .unwrap_or(&config.model)
        .to_owned();
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/") => {
            whole(
                writer,
                200,
                "text/plain; charset=utf-8",
                "Ollama is running",
            )
            .await
        }
        ("GET", "/api/version") => {
            whole(writer, 200, "application/json", r#"{"version":"0.12.6"}"#).await
        }
        ("GET", "/api/tags") => {
            let tags = json!({"models": [{
                "name": config.model, "model": config.model, "modified_at": CREATED_AT,
                "size": 3_338_801_804_u64, "digest": "a2af6cc3eb7fa8be8504abaf9b04e88f17a119ec3f04a3addf55f92841195f5a",
                "details": {"format": "gguf", "family": "gemma3", "parameter_size": "4.3B", "quantization_level": "Q4_K_M"}
            }]});
            whole(writer, 200, "application/json", &tags.to_string()).await
        }
        ("POST", "/api/chat" | "/api/generate") => {
            let chat = request.path == "/api/chat";
            if let Some(Fault::Status(code)) = config.fault {
                let error = config.error_text.clone().unwrap_or_else(|| match code {
                    404 => format!("model \"{model}\" not found, try pulling it first"),
                    400 => "invalid options: num_ctx must be a number".to_owned(),
                    500 => "llama runner process has terminated: exit status 2".to_owned(),
                    _ => "something went wrong".to_owned(),
                });
                return whole(
                    writer,
                    code,
                    "application/json",
                    &json!({ "error": error }).to_string(),
                )
                .await;
            }
            stream(writer, request, config, &model, chat).await
        }
        (_, "/" | "/api/version" | "/api/tags" | "/api/chat" | "/api/generate") => {
            whole(writer, 405, "text/plain", "405 method not allowed").await
        }
        _ => whole(writer, 404, "text/plain", "404 page not found").await,
    }
}

/// Streams the scripted tokens as NDJSON.
async fn stream<W: AsyncWrite + Unpin>(
    writer: &mut W,
    request: &RecordedRequest,
    config: &FakeConfig,
    model: &str,
    chat: bool,
) -> std::io::Result<bool> {
    let line = |content: &str, done: bool| {
        let mut v = json!({"model": model, "created_at": CREATED_AT});
        if chat {
            v["message"] = json!({"role": "assistant", "content": content});
        } else {
            v["response"] = json!(content);
        }
        v["done"] = json!(done);
        v
    };
    let prompt_bytes: usize = match request.body.get("messages").and_then(Value::as_array) {
        Some(messages) => messages
            .iter()
            .filter_map(|m| m["content"].as_str())
            .map(str::len)
            .sum(),
        None => request.body["prompt"].as_str().map_or(0, str::len),
    };
    // Like Ollama, the headers go out with the first line.
    let head = chunked_head("application/x-ndjson");
    let mut out = Chunker::new(writer, config.chunking.cut(), head);
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
            Some(Fault::ErrorLineAfter(n)) if n == i => {
                let error = config
                    .error_text
                    .as_deref()
                    .unwrap_or("an error was encountered while running the model: unexpected EOF");
                out.unit(&ndjson_line(&json!({ "error": error }))).await?;
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
        match config.tokens.get(i) {
            Some(token) => out.unit(&ndjson_line(&line(token, false))).await?,
            None => {
                let mut done = line("", true);
                if let (Some(done), Value::Object(metrics)) =
                    (done.as_object_mut(), config.final_metrics(prompt_bytes))
                {
                    done.extend(metrics);
                }
                out.unit(&ndjson_line(&done)).await?;
            }
        }
    }
    out.end().await?;
    Ok(true)
}

fn ndjson_line(value: &Value) -> Vec<u8> {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    line
}
