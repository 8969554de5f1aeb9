//! The `embedded` backend: llama.cpp in-process, through `llama-cpp-2`.
//!
//! The model name is resolved by [`super::models`] (a catalogue name, a
//! `.gguf` path, or a model Ollama has pulled). A model file is loaded once
//! per process, on the first call that needs it, and shared by every stage.
//! Concurrent calls to one model are decoded together, each as its own
//! sequence of one llama.cpp context ([`engine`]); the model's worker thread
//! streams pieces back, so `on_token` sees text as it is made.
//!
//! Options follow Ollama's names and defaults (`num_ctx` 2048, `num_predict`
//! 256, `temperature` 0.8, …); server-only options (`num_gpu`, `use_mmap`, …)
//! are ignored. `num_thread` defaults to every available core: fastest on an
//! idle machine, but llama.cpp's threads spin at each barrier, so when other
//! processes hold the cores it slows down sharply (on 2 cores, measured
//! ~120 tok/s idle with 2 threads, 1-15 tok/s under load, while 1 thread held
//! ~70 tok/s): on a busy machine set `num_thread` below the core count.
//! A prompt that does not fit `num_ctx` with room for the answer
//! (`num_predict`, at most half the context) loses its start — the most
//! recent text is kept — and the record says `prompt_truncated`.
//!
//! The record: `host` is `in-process`, `endpoint` the model file;
//! `load_duration_ms` is non-zero only on the calls that waited for the
//! model to load (`cold`);
//! `total_duration_ms` runs from the call to the last token, including any
//! wait for a free sequence; `eval_duration_ms` is the call's own wall time
//! while generating (shared with the calls decoded with it), and `batch`
//! says how it shared the model.

mod engine;
mod options;
mod prompt;
mod sequence;
mod text;

use super::models::{self, ModelSource};
use super::{Backend, CallRecord, LlmError, LlmErrorKind, Message, ModelSpec};
use engine::{Failure, Job, Stats};
use futures_util::future::BoxFuture;
use options::GenOptions;
use std::time::Instant;
use tracing::Instrument as _;

pub use options::{DEFAULT_N_CTX, DEFAULT_NUM_PREDICT};

/// What the record's `host` says for this backend.
const HOST: &str = "in-process";

/// The environment variable that sets how many calls to one model are
/// decoded together (like `OLLAMA_NUM_PARALLEL`, or llama-server's `--parallel`).
pub const PARALLEL_ENV: &str = "CHIMERA_EMBEDDED_PARALLEL";

/// Runs GGUF models in this process with llama.cpp.
#[derive(Debug, Default)]
pub struct EmbeddedBackend {}

impl EmbeddedBackend {
    /// The backend; models load on first use and stay loaded for the process.
    pub fn new() -> Self {
        Self {}
    }

    async fn chat_inner(
        &self,
        model: &ModelSpec,
        messages: &[Message],
        on_token: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<CallRecord, LlmError> {
        let sent = Instant::now();
        let mut record = CallRecord {
            backend: "embedded".into(),
            host: HOST.into(),
            model: model.name.clone(),
            options: model.options.clone(),
            started_at: jiff::Timestamp::now().to_string(),
            attempts: 1,
            ..CallRecord::default()
        };
        let fail = |mut record: CallRecord, kind, message: String| {
            record.wall_ms = ms(sent);
            LlmError::new(kind, message, record)
        };
        let mut opts = match GenOptions::from_options(&model.options) {
            Ok(o) => o,
            Err(e) => {
                let msg = format!(
                    "model option `{}` must be {} for the embedded backend, not `{}`; fix `options:` in the workflow",
                    e.name, e.expected, e.value
                );
                return Err(fail(record, LlmErrorKind::BadRequest, msg));
            }
        };
        opts.slots = match parallel_slots() {
            Ok(n) => n,
            Err(msg) => return Err(fail(record, LlmErrorKind::BadRequest, msg)),
        };
        let name = model.name.clone();
        let resolved = match tokio::task::spawn_blocking(move || models::resolve(&name)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(fail(record, LlmErrorKind::ModelNotFound, e.to_string())),
            Err(e) => {
                let msg = format!("resolving model `{}` failed: {e}", model.name);
                return Err(fail(record, LlmErrorKind::ServerError, msg));
            }
        };
        // One slot per file, however it was named.
        let path = std::fs::canonicalize(&resolved.path).unwrap_or_else(|_| resolved.path.clone());
        record.endpoint = path.display().to_string();
        let fix_hint = match &resolved.source {
            ModelSource::Catalogue(_) => {
                format!(
                    "download it again with `scripts/fetch-model {}`",
                    model.name
                )
            }
            ModelSource::Ollama { .. } => {
                format!("pull it again with `ollama pull {}`", model.name)
            }
            ModelSource::File => "check that the path names a GGUF model file".to_owned(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (reply, outcome) = tokio::sync::oneshot::channel();
        engine::submit(Job {
            name: model.name.clone(),
            chat_template: resolved.chat_template().map(str::to_owned),
            path,
            fix_hint,
            messages: messages.to_vec(),
            opts,
            tx,
            reply,
            span: tracing::Span::current(),
            load_ms: None,
        });
        while let Some(piece) = rx.recv().await {
            if record.ttft_ms.is_none() {
                record.ttft_ms = Some(ms(sent));
            }
            record.text.push_str(&piece);
            on_token(&piece);
        }
        let outcome = outcome.await.unwrap_or_else(|_| {
            Err(Box::new(Failure {
                kind: LlmErrorKind::ServerError,
                message: format!(
                    "llama.cpp crashed while running model `{}`; the partial response is kept",
                    model.name
                ),
                stats: Stats::default(),
            }))
        });
        record.total_duration_ms = Some(ms(sent));
        match outcome {
            Ok(stats) => {
                fill(&mut record, &stats);
                record.wall_ms = ms(sent);
                Ok(record)
            }
            Err(f) => {
                fill(&mut record, &f.stats);
                Err(fail(record, f.kind, f.message))
            }
        }
    }
}

impl Backend for EmbeddedBackend {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn identify<'a>(&'a self, model: &'a ModelSpec) -> BoxFuture<'a, Option<String>> {
        let name = model.name.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let resolved = models::resolve(&name).ok()?;
                gguf_sha256(&resolved.path).map(|sha| format!("sha256:{sha}"))
            })
            .await
            .ok()
            .flatten()
        })
    }

    fn chat<'a>(
        &'a self,
        model: &'a ModelSpec,
        messages: &'a [Message],
        on_token: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<CallRecord, LlmError>> {
        // The span wraps the whole future; prompts are never recorded in it.
        let span = tracing::info_span!("llm_call", backend = "embedded", model = %model.name);
        Box::pin(
            async move {
                let result = self.chat_inner(model, messages, on_token).await;
                super::log_outcome(&result);
                result
            }
            .instrument(span),
        )
    }
}

/// The SHA-256 of a model file. Hashing a multi-gigabyte GGUF takes
/// seconds, so the result is kept in the user's cache directory under a key
/// of the file's path, size and modification time, and computed again only
/// when one of them changes.
fn gguf_sha256(path: &std::path::Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    let key =
        crate::digest::sha256(format!("{}\0{}\0{modified}", path.display(), meta.len()).as_bytes());
    let cache = dirs::cache_dir().map(|d| d.join("chimera").join("model-sha256").join(&key));
    if let Some(sha) = cache
        .as_ref()
        .and_then(|c| std::fs::read_to_string(c).ok())
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Some(sha);
    }
    let sha = crate::digest::sha256_file(&path).ok()?;
    if let Some(cache) = cache {
        // A cache that cannot be written only costs the next run a rehash.
        let _ = cache
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .and_then(|_| std::fs::write(&cache, &sha));
    }
    Some(sha)
}

/// `CHIMERA_EMBEDDED_PARALLEL`: how many calls to one model are decoded
/// together (read per call, so a process can change it between calls).
fn parallel_slots() -> Result<u32, String> {
    let Ok(value) = std::env::var(PARALLEL_ENV) else {
        return Ok(options::DEFAULT_SLOTS);
    };
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=options::MAX_SLOTS).contains(n))
        .ok_or_else(|| {
            format!(
                "`{PARALLEL_ENV}` must be a whole number from 1 to {}, not `{value}`; fix it or unset it (default {})",
                options::MAX_SLOTS,
                options::DEFAULT_SLOTS
            )
        })
}

/// Copies a generation's stats into the record.
fn fill(record: &mut CallRecord, s: &Stats) {
    record.load_duration_ms = Some(s.load_ms.unwrap_or(0.0));
    record.cold = Some(s.load_ms.is_some());
    record.prompt_eval_count = s.prompt_tokens;
    record.prompt_eval_duration_ms = s.prompt_ms;
    record.eval_count = s.eval_count;
    record.eval_duration_ms = s.eval_ms;
    record.tokens_per_second = match (s.eval_count, s.eval_ms) {
        #[allow(clippy::cast_precision_loss)]
        (Some(n), Some(ms)) if n > 0 && ms > 0.0 => Some(n as f64 / ms * 1000.0),
        _ => None,
    };
    record.done_reason = s.done_reason.map(str::to_owned);
    record.prompt_truncated = s.prompt_truncated;
    if s.slots > 0 {
        record.batch = Some(super::BatchShare {
            slots: s.slots,
            peak_sequences: s.peak_sequences,
            compute_ms: s.compute_ms,
        });
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
