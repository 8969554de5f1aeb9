//! The HTTP/1.1 plumbing the fake servers share: a server on its own thread
//! and runtime that records every request, whole and chunked responses, and
//! cutting a stream's units (NDJSON lines, SSE events) into chunks.

use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
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

/// One request a fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Null` when empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a fake answers.
pub(crate) trait Respond: Send + Sync + 'static {
    /// Answers one request; `Ok(false)` when the connection must close.
    fn respond(
        &self,
        writer: &mut OwnedWriteHalf,
        request: &RecordedRequest,
    ) -> impl Future<Output = std::io::Result<bool>> + Send;
}

/// A running server; stops when dropped.
pub(crate) struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server on 127.0.0.1 (a free port) answering with `responder`;
    /// `name` names its thread.
    ///
    /// # Panics
    /// When no local port or thread can be had.
    pub(crate) fn start<R: Respond>(name: &str, responder: R) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (shutdown, stop) = oneshot::channel();
        let recorded = Arc::clone(&requests);
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the fake server");
                // Dropping the runtime afterwards cancels connections still open.
                runtime.block_on(serve(listener, Arc::new(responder), recorded, stop));
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
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Server {
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

async fn serve<R: Respond>(
    listener: std::net::TcpListener,
    responder: Arc<R>,
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
                tokio::spawn(connection(stream, Arc::clone(&responder), Arc::clone(&requests)));
            }
        }
    }
}

async fn connection<R: Respond>(
    stream: TcpStream,
    responder: Arc<R>,
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
        let open = matches!(responder.respond(&mut writer, &request).await, Ok(true));
        if close || !open {
            return;
        }
    }
}

/// Reads one request; `None` at a clean end of the connection.
async fn read_request(
    reader: &mut BufReader<OwnedReadHalf>,
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

/// A whole (not streamed) response.
pub(crate) async fn whole<W: AsyncWrite + Unpin>(
    writer: &mut W,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<bool> {
    whole_with(writer, status, content_type, &[], body).await
}

/// A whole response with extra headers.
pub(crate) async fn whole_with<W: AsyncWrite + Unpin>(
    writer: &mut W,
    status: u16,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<bool> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes()).await?;
    writer.write_all(body.as_bytes()).await?;
    writer.flush().await?;
    Ok(true)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The head of a chunked 200 response of `content_type`.
pub(crate) fn chunked_head(content_type: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n")
        .into_bytes()
}

/// How a stream's units (lines, events) are cut into HTTP chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// One unit per chunk.
    Each,
    /// `n` units per chunk (the last chunk may hold fewer).
    Group(usize),
    /// Every unit in two chunks, cut inside its first multi-byte UTF-8
    /// character when it has one, else in the middle.
    Split,
    /// The body re-cut into chunks of `n` bytes, across unit boundaries.
    Bytes(usize),
}

/// Writes a chunked body, cutting units following a [`Cut`].
pub(crate) struct Chunker<'w, W> {
    writer: &'w mut W,
    cut: Cut,
    /// The response head, sent with the first chunk.
    head: Option<Vec<u8>>,
    pending: Vec<u8>,
    pending_units: usize,
}

impl<'w, W: AsyncWrite + Unpin> Chunker<'w, W> {
    /// A body after `head`, which goes out with the first chunk.
    pub(crate) fn new(writer: &'w mut W, cut: Cut, head: Vec<u8>) -> Self {
        Self {
            writer,
            cut,
            head: Some(head),
            pending: Vec::new(),
            pending_units: 0,
        }
    }

    /// Sends (or holds back, depending on the cut) one unit.
    pub(crate) async fn unit(&mut self, unit: &[u8]) -> std::io::Result<()> {
        match self.cut {
            Cut::Each => self.chunk(unit).await,
            Cut::Group(n) => {
                self.pending.extend_from_slice(unit);
                self.pending_units += 1;
                if self.pending_units >= n.max(1) {
                    self.flush_pending().await?;
                }
                Ok(())
            }
            Cut::Split => {
                let cut = unit
                    .iter()
                    .position(|b| !b.is_ascii())
                    .map_or(unit.len() / 2, |p| p + 1);
                self.chunk(&unit[..cut]).await?;
                self.chunk(&unit[cut..]).await
            }
            Cut::Bytes(n) => {
                self.pending.extend_from_slice(unit);
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

    /// Sends what is held back (and the head, when nothing went out yet but
    /// something is held back).
    pub(crate) async fn flush_pending(&mut self) -> std::io::Result<()> {
        self.pending_units = 0;
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
    pub(crate) async fn end(&mut self) -> std::io::Result<()> {
        self.flush_pending().await?;
        let mut bytes = self.head.take().unwrap_or_default();
        bytes.extend_from_slice(b"0\r\n\r\n");
        self.writer.write_all(&bytes).await?;
        self.writer.flush().await
    }
}
