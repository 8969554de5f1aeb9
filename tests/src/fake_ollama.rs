//! A fake Ollama server for tests: real HTTP/1.1 on a local port, NDJSON
//! streaming with `Transfer-Encoding: chunked`, as shared/reference/ollama-api.md
//! describes. Timing, chunking and faults are scripted by [`FakeConfig`].
//!
//! The server runs on its own thread and runtime, so sync tests and tokio tests
//! use it alike; it records every request and stops when the handle drops.
//!
//! ```no_run
//! use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
//! let fake = FakeOllama::start(FakeConfig::tokens(["Hel", "lo"]));
//! let url = fake.url(); // http://127.0.0.1:PORT, for a model's `host:`
//! ```

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Headers larger than this end the connection.
const MAX_HEAD: usize = 64 * 1024;
/// Bodies larger than this end the connection.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Requests served on one keep-alive connection before it is closed.
const MAX_REQUESTS_PER_CONNECTION: usize = 1000;
/// An idle keep-alive connection is closed after this.
const IDLE: Duration = Duration::from_secs(30);
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

/// What goes wrong, for every chat or generate request.
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

/// The script the fake follows for every chat (or generate) request.
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

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Null` when empty or not JSON.
    pub body: Value,
}

/// A running fake server; stops when dropped.
pub struct FakeOllama {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeOllama {
    /// Starts a server on 127.0.0.1 (a free port) following `config`.
    ///
    /// # Panics
    /// When no local port or thread can be had.
    pub fn start(config: FakeConfig) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (shutdown, stop) = oneshot::channel();
        let recorded = Arc::clone(&requests);
        let thread = std::thread::Builder::new()
            .name(format!("fake-ollama-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the fake server");
                // Dropping the runtime afterwards cancels connections still open.
                runtime.block_on(serve(listener, Arc::new(config), recorded, stop));
            })
            .expect("a thread for the fake server");
        Self {
            addr,
            requests,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A local URL where nothing listens (the port was just freed), for
/// connection-refused tests.
///
/// # Panics
/// When no local port can be had.
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let addr = listener.local_addr().expect("the listener's address");
    drop(listener);
    format!("http://{addr}")
}

async fn serve(
    listener: std::net::TcpListener,
    config: Arc<FakeConfig>,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(connection(stream, Arc::clone(&config), Arc::clone(&requests)));
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    config: Arc<FakeConfig>,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
) {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let Ok(Ok(Some(request))) = tokio::time::timeout(IDLE, read_request(&mut reader)).await
        else {
            return;
        };
        requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.clone());
        let close = request
            .headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let open = matches!(respond(&mut writer, &request, &config).await, Ok(true));
        if close || !open {
            return;
        }
    }
}

/// Reads one request; `None` at a clean end of the connection.
async fn read_request(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<RecordedRequest>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut head = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err(bad("cut request head"))
            };
        }
        head.extend_from_slice(line.as_bytes());
        if head.len() > MAX_HEAD {
            return Err(bad("request head too large"));
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let mut first = lines
        .first()
        .map(|l| l.split_whitespace())
        .ok_or_else(|| bad("no request line"))?;
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return Err(bad("request body too large"));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Some(RecordedRequest {
        method,
        path,
        headers,
        body,
    }))
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

/// A whole (not streamed) response.
async fn whole<W: AsyncWrite + Unpin>(
    writer: &mut W,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<bool> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        reason(status),
        body.len()
    );
    writer.write_all(head.as_bytes()).await?;
    writer.write_all(body.as_bytes()).await?;
    writer.flush().await?;
    Ok(true)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
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
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut out = Chunker {
        writer,
        mode: config.chunking,
        head: Some(head.as_bytes().to_vec()),
        pending: Vec::new(),
        pending_lines: 0,
    };
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
                out.line(&json!({ "error": error })).await?;
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
            Some(token) => out.line(&line(token, false)).await?,
            None => {
                let mut done = line("", true);
                if let (Some(done), Value::Object(metrics)) =
                    (done.as_object_mut(), config.final_metrics(prompt_bytes))
                {
                    done.extend(metrics);
                }
                out.line(&done).await?;
            }
        }
    }
    out.end().await?;
    Ok(true)
}

/// Cuts lines into HTTP chunks following a [`Chunking`].
struct Chunker<'w, W> {
    writer: &'w mut W,
    mode: Chunking,
    /// The response head, sent with the first chunk.
    head: Option<Vec<u8>>,
    pending: Vec<u8>,
    pending_lines: usize,
}

impl<W: AsyncWrite + Unpin> Chunker<'_, W> {
    async fn line(&mut self, value: &Value) -> std::io::Result<()> {
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        match self.mode {
            Chunking::LinePerChunk => self.chunk(&line).await,
            Chunking::LinesPerChunk(n) => {
                self.pending.extend_from_slice(&line);
                self.pending_lines += 1;
                if self.pending_lines >= n.max(1) {
                    self.flush_pending().await?;
                }
                Ok(())
            }
            Chunking::SplitMidLine => {
                let cut = line
                    .iter()
                    .position(|b| !b.is_ascii())
                    .map_or(line.len() / 2, |p| p + 1);
                self.chunk(&line[..cut]).await?;
                self.chunk(&line[cut..]).await
            }
            Chunking::Bytes(n) => {
                self.pending.extend_from_slice(&line);
                let n = n.max(1);
                while self.pending.len() >= n {
                    let rest = self.pending.split_off(n);
                    let piece = std::mem::replace(&mut self.pending, rest);
                    self.chunk(&piece).await?;
                }
                Ok(())
            }
        }
    }

    async fn flush_pending(&mut self) -> std::io::Result<()> {
        self.pending_lines = 0;
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.chunk(&pending).await
    }

    async fn chunk(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut bytes = self.head.take().unwrap_or_default();
        if !data.is_empty() {
            bytes.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            bytes.extend_from_slice(data);
            bytes.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&bytes).await?;
        self.writer.flush().await
    }

    /// Ends the chunked body.
    async fn end(&mut self) -> std::io::Result<()> {
        self.flush_pending().await?;
        let mut bytes = self.head.take().unwrap_or_default();
        bytes.extend_from_slice(b"0\r\n\r\n");
        self.writer.write_all(&bytes).await?;
        self.writer.flush().await
    }
}
