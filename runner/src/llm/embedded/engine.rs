//! The blocking side: llama.cpp's process-wide state and one worker thread
//! per model file, which decodes every call to that model together.
//!
//! Like llama.cpp's own server with `--parallel N`, the worker holds one
//! context of `N × num_ctx` cells split into `N` sequences (`num_ctx` the
//! largest among the calls waiting when it is made; a call with a smaller
//! one keeps to its own within its sequence); each call in flight is one
//! sequence, and every step decodes one batch holding the
//! next token of each generating call plus prompt tokens of calls still
//! reading theirs. On a CPU a batch of a few tokens costs little more than
//! one (the weights are read once per step), so concurrent calls share the
//! machine instead of queueing for it.

use super::options::GenOptions;
use super::sequence::{Sequence, Step};
use crate::llm::{LlmErrorKind, Message};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::{mpsc::UnboundedSender, oneshot};

/// llama.cpp's global state: `LlamaBackend::init` fails when called twice.
static LLAMA: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// The worker of each model file (canonical path), for the life of the process.
static WORKERS: LazyLock<Mutex<HashMap<PathBuf, Sender<Job>>>> = LazyLock::new(Mutex::default);

fn llama() -> Result<&'static LlamaBackend, String> {
    LLAMA
        .get_or_init(|| {
            // llama.cpp logs to stderr by default; route it through tracing
            // (target `llama-cpp-2`), where the user's filter applies.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// One generation to run.
pub(super) struct Job {
    /// The name as the workflow gives it, for messages.
    pub name: String,
    pub path: PathBuf,
    /// Says how to get the model again when it fails to load.
    pub fix_hint: String,
    pub chat_template: Option<String>,
    pub messages: Vec<Message>,
    pub opts: GenOptions,
    /// Each piece of text as it is generated; closed by the caller to cancel.
    pub tx: UnboundedSender<String>,
    /// The outcome, sent once the call ends.
    pub reply: oneshot::Sender<Result<Stats, Box<Failure>>>,
    /// The caller's span, for what the worker logs about this call.
    pub span: tracing::Span,
    /// Set by the worker when the call waited for the model to load.
    pub load_ms: Option<f64>,
}

/// What a generation cost; filled in as it goes, so a failure keeps it.
#[derive(Debug, Default, Clone)]
pub(super) struct Stats {
    /// Loading the model; `None` when it was already loaded.
    pub load_ms: Option<f64>,
    pub prompt_tokens: Option<u64>,
    /// Admission → the prompt's last token decoded.
    pub prompt_ms: Option<f64>,
    pub eval_count: Option<u64>,
    /// First token sampled → the last.
    pub eval_ms: Option<f64>,
    pub done_reason: Option<&'static str>,
    pub prompt_truncated: bool,
    /// This call's share of the decode time: each step's time split among
    /// the calls in it by the tokens each put in the batch.
    pub compute_ms: f64,
    /// The most calls decoded in one step together with this one (itself
    /// included).
    pub peak_sequences: u32,
    /// The sequences the context had room for.
    pub slots: u32,
}

/// A generation that failed: what to report, and the stats so far.
#[derive(Debug)]
pub(super) struct Failure {
    pub kind: LlmErrorKind,
    pub message: String,
    pub stats: Stats,
}

/// Hands `job` to the worker of its model file, starting the worker on
/// first use (or again, if the last one died).
pub(super) fn submit(job: Job) {
    let mut workers = WORKERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let job = match workers.get(&job.path) {
        Some(worker) => match worker.send(job) {
            Ok(()) => return,
            Err(std::sync::mpsc::SendError(job)) => job,
        },
        None => job,
    };
    let path = job.path.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let name = path
        .file_name()
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    let spawned = std::thread::Builder::new()
        .name(format!("llama {name}"))
        .spawn(move || Worker::new(rx).run());
    if let Err(e) = spawned {
        let _ = job.reply.send(Err(Box::new(Failure {
            kind: LlmErrorKind::ServerError,
            message: format!(
                "cannot start a thread for model `{}`: {e}; the machine may be short of memory or threads",
                job.name
            ),
            stats: Stats::default(),
        })));
        return;
    }
    // A worker that died at once drops the job, and its caller reports that.
    let _ = tx.send(job);
    workers.insert(path, tx);
}

/// The settings a context is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CtxKey {
    /// Per sequence.
    n_ctx: u32,
    n_batch: u32,
    n_threads: i32,
    slots: u32,
}

impl CtxKey {
    fn of(opts: &GenOptions) -> Self {
        Self {
            n_ctx: opts.n_ctx,
            // llama.cpp caps a batch at the context size.
            n_batch: opts.n_batch.min(opts.n_ctx.saturating_mul(opts.slots)),
            n_threads: opts.n_threads,
            slots: opts.slots,
        }
    }

    /// Whether a call wanting `want` can run in a context made with `self`:
    /// the same threads, batch and sequences, and cells enough. A call with
    /// a smaller `num_ctx` runs in a larger sequence unchanged, since its
    /// sequence cuts its prompt and budget to its own `num_ctx`.
    fn holds(&self, want: &Self) -> bool {
        self.same_but_cells(want) && self.n_ctx >= want.n_ctx
    }

    fn same_but_cells(&self, other: &Self) -> bool {
        self.n_threads == other.n_threads
            && self.slots == other.slots
            && self.n_batch == other.n_batch
    }
}

/// A model's loaded weights, its context, and the calls in flight.
struct Worker {
    jobs: Receiver<Job>,
    /// Leaked on load: a model stays loaded for the life of the process,
    /// and a `'static` model lets its context live next to it.
    model: Option<&'static LlamaModel>,
    /// Kept between calls with the same settings: creating one costs tens
    /// of milliseconds, clearing a sequence almost nothing.
    ctx: Option<(CtxKey, LlamaContext<'static>)>,
    batch: Option<LlamaBatch<'static>>,
    /// Calls waiting for a sequence, oldest first.
    pending: VecDeque<Job>,
    active: Vec<Sequence>,
    /// Sequence ids not in use.
    free: Vec<i32>,
    /// Decode steps so far, to take turns when a batch cannot hold everyone.
    steps: u64,
}

impl Worker {
    fn new(jobs: Receiver<Job>) -> Self {
        Self {
            jobs,
            model: None,
            ctx: None,
            batch: None,
            pending: VecDeque::new(),
            active: Vec::new(),
            free: Vec::new(),
            steps: 0,
        }
    }

    fn run(mut self) {
        loop {
            if self.active.is_empty() && self.pending.is_empty() {
                match self.jobs.recv() {
                    Ok(job) => self.pending.push_back(job),
                    Err(_) => return,
                }
            }
            while let Ok(job) = self.jobs.try_recv() {
                self.pending.push_back(job);
            }
            self.admit();
            if !self.active.is_empty() {
                self.step();
            }
        }
    }

    /// Starts waiting calls while there are free sequences, oldest first; a
    /// call needing other context settings waits until the context is idle.
    fn admit(&mut self) {
        // A call nobody waits for any more is not worth a sequence (or a
        // new context).
        self.pending.retain(|job| !job.tx.is_closed());
        let Some(model) = self.load() else { return };
        // Calls that came in while the model loaded are sized in with the
        // rest when the context is made.
        while let Ok(job) = self.jobs.try_recv() {
            self.pending.push_back(job);
        }
        while let Some(job) = self.pending.front() {
            let want = CtxKey::of(&job.opts);
            let current = self.ctx.as_ref().map(|(k, _)| *k);
            if !current.is_some_and(|k| k.holds(&want)) {
                if !self.active.is_empty() {
                    return;
                }
                // Sized for the largest `num_ctx` among the calls waiting
                // with the same other settings, so that calls with
                // different context sizes are decoded together.
                let key = CtxKey {
                    n_ctx: self
                        .pending
                        .iter()
                        .map(|j| CtxKey::of(&j.opts))
                        .filter(|k| k.same_but_cells(&want))
                        .map(|k| k.n_ctx)
                        .fold(want.n_ctx, u32::max),
                    ..want
                };
                let Some(job) = self.pending.pop_front() else {
                    return;
                };
                // Free the old KV cache before the next is allocated.
                self.ctx = None;
                self.batch = None;
                // When the larger context does not fit in memory, the call
                // in front still gets one of its own size.
                let made = new_context(model, key, &job)
                    .map(|ctx| (key, ctx))
                    .or_else(|e| {
                        if key.n_ctx > want.n_ctx {
                            new_context(model, want, &job).map(|ctx| (want, ctx))
                        } else {
                            Err(e)
                        }
                    });
                match made {
                    Ok((key, ctx)) => {
                        self.ctx = Some((key, ctx));
                        self.batch = Some(LlamaBatch::new(key.n_batch as usize, 1));
                        self.free = (0..key.slots as i32).rev().collect();
                        self.pending.push_front(job);
                    }
                    Err(message) => {
                        self.ctx = None;
                        reject(job, LlmErrorKind::ServerError, message);
                    }
                }
                continue;
            }
            let Some(id) = self.free.pop() else { return };
            let Some(job) = self.pending.pop_front() else {
                return;
            };
            let stats = Stats {
                load_ms: job.load_ms,
                slots: want.slots,
                ..Stats::default()
            };
            match Sequence::start(model, job, id, stats) {
                Some(seq) => self.active.push(seq),
                None => self.free.push(id),
            }
        }
    }

    /// The model, loaded on first use; a failed load fails every waiting
    /// call (the next call tries again).
    fn load(&mut self) -> Option<&'static LlamaModel> {
        if let Some(model) = self.model {
            return Some(model);
        }
        let first = self.pending.front()?;
        let (name, path, fix_hint) = (
            first.name.clone(),
            first.path.clone(),
            first.fix_hint.clone(),
        );
        let backend = match llama() {
            Ok(b) => b,
            Err(e) => {
                let message = format!(
                    "cannot start llama.cpp for model `{name}`: {e}; the embedded backend is unusable in this process"
                );
                self.reject_pending(&message);
                return None;
            }
        };
        let started = Instant::now();
        match LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default()) {
            Ok(m) => {
                let model: &'static LlamaModel = Box::leak(Box::new(m));
                let load_ms = ms(started);
                // Calls that arrived during the load waited for it too.
                while let Ok(job) = self.jobs.try_recv() {
                    self.pending.push_back(job);
                }
                tracing::debug!(load_ms, path = %path.display(), "model loaded");
                // Every call that waited for the load began cold.
                for job in &mut self.pending {
                    job.load_ms = Some(load_ms);
                }
                self.model = Some(model);
                Some(model)
            }
            Err(e) => {
                let message = format!(
                    "cannot load model `{name}` from `{}`: llama.cpp could not read it ({e}); the file may be damaged, not a GGUF, or a model architecture this llama.cpp does not know; {fix_hint}",
                    path.display()
                );
                self.reject_pending(&message);
                None
            }
        }
    }

    fn reject_pending(&mut self, message: &str) {
        for job in self.pending.drain(..) {
            reject(job, LlmErrorKind::ServerError, message.to_owned());
        }
    }

    /// One decode: the next token of every generating call, then prompt
    /// tokens of the others as far as the batch has room.
    fn step(&mut self) {
        let Some((key, ctx)) = self.ctx.as_mut() else {
            return;
        };
        let Some(batch) = self.batch.as_mut() else {
            return;
        };
        // Calls nobody waits for any more leave before the step.
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].cancelled() {
                let seq = self.active.swap_remove(i);
                release(ctx, &mut self.free, seq.id);
                seq.fail(
                    LlmErrorKind::IncompleteStream,
                    "the call was cancelled".into(),
                );
            } else {
                i += 1;
            }
        }
        if self.active.is_empty() {
            return;
        }
        // Generating calls first, so a long prompt never stalls their
        // tokens; among equals, the one fed longest ago first, so a batch
        // smaller than the calls in flight takes turns.
        self.steps += 1;
        self.active.sort_by_key(|s| (!s.generating(), s.last_fed));
        batch.clear();
        let capacity = key.n_batch as usize;
        // Per call: tokens it put in the batch, and its logits' index.
        let mut fed: Vec<(usize, Option<i32>)> = Vec::with_capacity(self.active.len());
        let mut failed = None;
        for seq in &mut self.active {
            let before = batch.n_tokens();
            let room = capacity.saturating_sub(before as usize);
            match seq.feed(batch, room) {
                Ok((n, logits)) => {
                    if n > 0 {
                        seq.last_fed = self.steps;
                    }
                    fed.push((n, logits.then(|| batch.n_tokens() - 1)));
                }
                Err(e) => {
                    failed = Some(format!("cannot batch a token: {e}"));
                    break;
                }
            }
        }
        let started = Instant::now();
        if failed.is_none()
            && let Err(e) = ctx.decode(batch)
        {
            failed = Some(e.to_string());
        }
        if let Some(e) = failed {
            // Whatever state a failed decode left, the next call starts afresh.
            let calls = self.active.len();
            self.ctx = None;
            for seq in self.active.drain(..) {
                let after = match seq.generated() {
                    0 => String::new(),
                    n => format!(
                        " after {}; the partial response is kept",
                        crate::words::plural(n, "token")
                    ),
                };
                let message = format!(
                    "llama.cpp failed on a batch of {} to model `{}` ({e}){after}; try a smaller `num_ctx` or `num_batch`",
                    crate::words::plural(calls, "call"),
                    seq.job.name
                );
                seq.fail(LlmErrorKind::ServerError, message);
            }
            return;
        }
        let step_ms = ms(started);
        let tokens: usize = fed.iter().map(|(n, _)| n).sum();
        let together = fed.iter().filter(|(n, _)| *n > 0).count() as u32;
        let mut done = Vec::new();
        for (i, (seq, (n, logits))) in self.active.iter_mut().zip(&fed).enumerate() {
            if *n > 0 {
                #[allow(clippy::cast_precision_loss)]
                let share = step_ms * (*n as f64) / (tokens as f64);
                seq.stats.compute_ms += share;
                seq.stats.peak_sequences = seq.stats.peak_sequences.max(together);
            }
            if let Some(idx) = logits {
                match seq.sample(ctx, *idx) {
                    Step::Going => {}
                    Step::Done(reason) => done.push((i, Some(reason))),
                    Step::Cancelled => done.push((i, None)),
                }
            }
        }
        // Highest index first, so the indices left stay valid.
        for (i, reason) in done.into_iter().rev() {
            let seq = self.active.swap_remove(i);
            release(ctx, &mut self.free, seq.id);
            match reason {
                Some(reason) => seq.finish(reason),
                None => seq.fail(
                    LlmErrorKind::IncompleteStream,
                    "the call was cancelled".into(),
                ),
            }
        }
    }
}

/// A new context for `key`: `slots` sequences of `n_ctx` cells each.
fn new_context(
    model: &'static LlamaModel,
    key: CtxKey,
    job: &Job,
) -> Result<LlamaContext<'static>, String> {
    let backend = llama()?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(key.n_ctx.saturating_mul(key.slots)))
        .with_n_seq_max(key.slots)
        .with_kv_unified(false)
        .with_n_batch(key.n_batch)
        .with_n_ubatch(key.n_batch)
        .with_n_threads(key.n_threads)
        .with_n_threads_batch(key.n_threads);
    model.new_context(backend, params).map_err(|e| {
        format!(
            "cannot create a llama.cpp context of {} × {} tokens for model `{}` ({e}); the machine may be short of memory: try a smaller `num_ctx` or fewer parallel sequences (`CHIMERA_EMBEDDED_PARALLEL`)",
            key.slots, key.n_ctx, job.name
        )
    })
}

/// Frees sequence `id`'s KV cells for the next call.
fn release(ctx: &mut LlamaContext<'static>, free: &mut Vec<i32>, id: i32) {
    // Removing a whole sequence cannot fail for an id in range.
    let _ = ctx.clear_kv_cache_seq(u32::try_from(id).ok(), None, None);
    free.push(id);
}

fn reject(job: Job, kind: LlmErrorKind, message: String) {
    let _ = job.reply.send(Err(Box::new(Failure {
        kind,
        message,
        stats: Stats::default(),
    })));
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
