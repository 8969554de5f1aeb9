//! The blocking side: llama.cpp's process-wide state, the loaded models, and
//! one generation.

use super::options::GenOptions;
use super::text::{StopScan, Utf8Stream};
use crate::llm::{LlmErrorKind, Message};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// llama.cpp's global state: `LlamaBackend::init` fails when called twice.
static LLAMA: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// One slot per model file, for the life of the process. The async mutex
/// serializes the calls to a model: waiting for it costs no thread, and a
/// context must not be created from a model while another is (llama-cpp-2's
/// `new_context` notes it mutates the model).
static MODELS: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<Slot>>>>> =
    LazyLock::new(Mutex::default);

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

/// The slot of the model at `path` (canonical), created empty on first use.
pub(super) fn slot(path: &Path) -> Arc<tokio::sync::Mutex<Slot>> {
    let mut models = MODELS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    models.entry(path.to_path_buf()).or_default().clone()
}

/// A model file's loaded weights and its last context; empty until the first
/// call that uses it (and again after a failed load, so the next call retries).
#[derive(Default)]
pub(super) struct Slot {
    /// Leaked on load: a model stays loaded for the life of the process, and
    /// a `'static` model lets its context be kept next to it.
    model: Option<&'static LlamaModel>,
    /// Reused by the next call with the same settings: creating a context
    /// costs ~30 ms (a 2048-token KV cache) and clearing one ~1 ms.
    ctx: Option<(CtxKey, LlamaContext<'static>)>,
}

/// The settings a context is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CtxKey {
    n_ctx: u32,
    n_batch: u32,
    n_threads: i32,
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
}

/// What a generation cost; filled in as it goes, so a failure keeps it.
#[derive(Debug, Default, Clone)]
pub(super) struct Stats {
    /// Loading the model; `None` when it was already loaded.
    pub load_ms: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub prompt_ms: Option<f64>,
    pub eval_count: Option<u64>,
    pub eval_ms: Option<f64>,
    pub done_reason: Option<&'static str>,
    pub prompt_truncated: bool,
}

/// A generation that failed: what to report, and the stats so far.
#[derive(Debug)]
pub(super) struct Failure {
    pub kind: LlmErrorKind,
    pub message: String,
    pub stats: Stats,
}

/// Runs `job` on the model in `slot` (loading it first if needed), sending
/// each piece of text through `tx` as it is generated.
pub(super) fn run(
    slot: &mut Slot,
    job: &Job,
    tx: &UnboundedSender<String>,
) -> Result<Stats, Box<Failure>> {
    let mut stats = Stats::default();
    macro_rules! fail {
        ($kind:expr, $($msg:tt)+) => {
            return Err(Box::new(Failure { kind: $kind, message: format!($($msg)+), stats }))
        };
    }
    let backend = match llama() {
        Ok(b) => b,
        Err(e) => fail!(
            LlmErrorKind::ServerError,
            "cannot start llama.cpp for model `{}`: {e}; the embedded backend is unusable in this process",
            job.name
        ),
    };
    let model = if let Some(model) = slot.model {
        model
    } else {
        let started = Instant::now();
        let model = match LlamaModel::load_from_file(
            backend,
            &job.path,
            &LlamaModelParams::default(),
        ) {
            Ok(m) => &*Box::leak(Box::new(m)),
            Err(e) => fail!(
                LlmErrorKind::ServerError,
                "cannot load model `{}` from `{}`: llama.cpp could not read it ({e}); the file may be damaged, not a GGUF, or a model architecture this llama.cpp does not know; {}",
                job.name,
                job.path.display(),
                job.fix_hint
            ),
        };
        stats.load_ms = Some(ms(started));
        tracing::debug!(load_ms = stats.load_ms, path = %job.path.display(), "model loaded");
        slot.model = Some(model);
        model
    };
    let result = generate(backend, model, &mut slot.ctx, job, tx, stats);
    if result.is_err() {
        // Whatever state a failure left in the context, the next call starts afresh.
        slot.ctx = None;
    }
    result
}

fn generate(
    backend: &LlamaBackend,
    model: &'static LlamaModel,
    cached: &mut Option<(CtxKey, LlamaContext<'static>)>,
    job: &Job,
    tx: &UnboundedSender<String>,
    mut stats: Stats,
) -> Result<Stats, Box<Failure>> {
    let opts = &job.opts;
    macro_rules! fail {
        ($kind:expr, $($msg:tt)+) => {
            return Err(Box::new(Failure { kind: $kind, message: format!($($msg)+), stats }))
        };
    }
    let prompt = prompt_text(model, job)?;
    let vocab = model.vocab();
    let mut tokens = vocab.tokenize(prompt.as_bytes(), true, true);
    // The template may write the BOS text itself, and tokenize adds one too.
    if tokens.len() >= 2 && tokens[0] == vocab.bos() && tokens[1] == vocab.bos() {
        tokens.remove(0);
    }
    if tokens.is_empty() {
        fail!(
            LlmErrorKind::BadRequest,
            "the prompt for model `{}` is empty; give the call at least one message",
            job.name
        );
    }
    let n_ctx = opts.n_ctx as usize;
    // Room kept for the answer: `num_predict`, but at most half the context
    // (and at least one token).
    let reserve = opts
        .num_predict
        .map_or(1, |n| n as usize)
        .clamp(1, (n_ctx / 2).max(1));
    if tokens.len() + reserve > n_ctx {
        let keep = n_ctx.saturating_sub(reserve).max(1);
        let had = tokens.len();
        tokens = truncate_front(tokens, keep, vocab.bos());
        stats.prompt_truncated = true;
        tracing::warn!(
            model = %job.name,
            prompt_tokens = had,
            kept = tokens.len(),
            num_ctx = n_ctx,
            "the prompt does not fit `num_ctx` with room for the answer; its start was cut off: raise `num_ctx` or shorten the prompt"
        );
    }
    let budget = opts.budget(tokens.len());

    // llama.cpp caps a batch at the context size.
    let n_batch = opts.n_batch.min(opts.n_ctx);
    let key = CtxKey {
        n_ctx: opts.n_ctx,
        n_batch,
        n_threads: opts.n_threads,
    };
    if cached.as_ref().is_some_and(|(k, _)| *k != key) {
        // Free the old KV cache before allocating the new one.
        *cached = None;
    }
    if cached.is_none() {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(opts.n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(opts.n_threads)
            .with_n_threads_batch(opts.n_threads);
        match model.new_context(backend, params) {
            Ok(c) => *cached = Some((key, c)),
            Err(e) => fail!(
                LlmErrorKind::ServerError,
                "cannot create a llama.cpp context of {} tokens for model `{}` ({e}); the machine may be short of memory: try a smaller `num_ctx`",
                opts.n_ctx,
                job.name
            ),
        }
    }
    let Some((_, ctx)) = cached.as_mut() else {
        unreachable!("a context was created above")
    };
    ctx.clear_kv_cache();

    // The prompt, in chunks of `num_batch`; logits only for its last token.
    let started = Instant::now();
    let mut batch = LlamaBatch::new(n_batch as usize, 1);
    let last = tokens.len() - 1;
    for (chunk_no, chunk) in tokens.chunks(n_batch as usize).enumerate() {
        if tx.is_closed() {
            fail!(LlmErrorKind::IncompleteStream, "the call was cancelled");
        }
        batch.clear();
        for (i, &token) in chunk.iter().enumerate() {
            let pos = chunk_no * n_batch as usize + i;
            if let Err(e) = batch.add(token, pos as i32, &[0], pos == last) {
                fail!(
                    LlmErrorKind::ServerError,
                    "cannot batch the prompt for model `{}`: {e}",
                    job.name
                );
            }
        }
        if let Err(e) = ctx.decode(&mut batch) {
            fail!(
                LlmErrorKind::ServerError,
                "llama.cpp failed on the prompt of model `{}` ({e}); try a smaller `num_batch` or `num_ctx`",
                job.name
            );
        }
    }
    stats.prompt_tokens = Some(tokens.len() as u64);
    stats.prompt_ms = Some(ms(started));

    let started = Instant::now();
    let mut sampler = sampler(model, opts);
    let mut utf8 = Utf8Stream::default();
    let mut stops = StopScan::new(opts.stop.clone());
    let mut pos = tokens.len();
    let mut generated: u64 = 0;
    let send = |text: String| text.is_empty() || tx.send(text).is_ok();
    let mut at_stop_string = false;
    let reason = loop {
        if generated as usize >= budget {
            break "length";
        }
        let token = sampler.sample(ctx, batch.n_tokens() - 1);
        if vocab.is_eog(token) {
            break "stop";
        }
        generated += 1;
        let text = utf8.push(&vocab.token_to_piece(token, false, None));
        let (shown, stopped) = stops.push(&text);
        if !send(shown) {
            // Nobody listens: the call's future was dropped.
            stats.eval_count = Some(generated);
            fail!(LlmErrorKind::IncompleteStream, "the call was cancelled");
        }
        if stopped {
            at_stop_string = true;
            break "stop";
        }
        batch.clear();
        if let Err(e) = batch.add(token, pos as i32, &[0], true) {
            fail!(
                LlmErrorKind::ServerError,
                "cannot batch a token for model `{}`: {e}",
                job.name
            );
        }
        pos += 1;
        if let Err(e) = ctx.decode(&mut batch) {
            stats.eval_count = Some(generated);
            stats.eval_ms = Some(ms(started));
            send(flush(&mut utf8, &mut stops));
            fail!(
                LlmErrorKind::ServerError,
                "llama.cpp failed while generating with model `{}` after {generated} tokens ({e}); the partial response is kept; try a smaller `num_ctx`",
                job.name
            );
        }
    };
    if !at_stop_string {
        send(flush(&mut utf8, &mut stops));
    }
    stats.eval_count = Some(generated);
    stats.eval_ms = Some(ms(started));
    stats.done_reason = Some(reason);
    Ok(stats)
}

/// The text still held back at the end: an unfinished character, the start
/// of a stop string that never came.
fn flush(utf8: &mut Utf8Stream, stops: &mut StopScan) -> String {
    let (mut text, stopped) = stops.push(&utf8.finish());
    if !stopped {
        text.push_str(&stops.finish());
    }
    text
}

/// The prompt: the messages through the model's chat template (or the
/// catalogue's override), falling back to ChatML.
fn prompt_text(model: &LlamaModel, job: &Job) -> Result<String, Box<Failure>> {
    let chat: Result<Vec<LlamaChatMessage>, _> = job
        .messages
        .iter()
        .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
        .collect();
    let chat = chat.map_err(|_| {
        Box::new(Failure {
        kind: LlmErrorKind::BadRequest,
        message: format!(
            "a message for model `{}` contains a NUL character, which llama.cpp cannot take; remove it from the prompt",
            job.name
        ),
        stats: Stats::default(),
        })
    })?;
    let template = match &job.chat_template {
        Some(t) => LlamaChatTemplate::new(t).map_err(|e| e.to_string()),
        None => model.chat_template(None).map_err(|e| e.to_string()),
    };
    let applied = template.and_then(|t| {
        model
            .apply_chat_template(&t, &chat, true)
            .map_err(|e| e.to_string())
    });
    match applied {
        Ok(prompt) => Ok(prompt),
        Err(e) => {
            tracing::debug!(model = %job.name, error = %e, "no usable chat template in the model; using ChatML");
            Ok(chatml(&job.messages))
        }
    }
}

fn chatml(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            m.role, m.content
        ));
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

/// The last `keep` tokens, after the BOS token when the prompt starts with it.
fn truncate_front(tokens: Vec<LlamaToken>, keep: usize, bos: LlamaToken) -> Vec<LlamaToken> {
    if tokens.len() <= keep {
        return tokens;
    }
    let lead = usize::from(keep > 1 && tokens[0] == bos);
    let mut out = tokens[..lead].to_vec();
    out.extend_from_slice(&tokens[tokens.len() - (keep - lead)..]);
    out
}

/// Ollama's sampling chain: penalties, top-k, typical, top-p, min-p,
/// temperature, then a seeded draw (or the most likely token at temperature 0).
fn sampler(model: &LlamaModel, o: &GenOptions) -> LlamaSampler {
    let last_n = if o.repeat_last_n < 0 {
        i32::try_from(o.n_ctx).unwrap_or(i32::MAX)
    } else {
        o.repeat_last_n
    };
    let penalties = LlamaSampler::penalties(
        model.n_vocab(),
        last_n,
        o.repeat_penalty,
        o.frequency_penalty,
        o.presence_penalty,
    );
    if o.temperature <= 0.0 {
        return LlamaSampler::chain_simple([penalties, LlamaSampler::greedy()]);
    }
    let mut chain = vec![penalties];
    if o.top_k > 0 {
        chain.push(LlamaSampler::top_k(o.top_k));
    }
    if o.typical_p < 1.0 {
        chain.push(LlamaSampler::typical(o.typical_p, 1));
    }
    if o.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(o.top_p, 1));
    }
    if o.min_p > 0.0 {
        chain.push(LlamaSampler::min_p(o.min_p, 1));
    }
    chain.push(LlamaSampler::temp(o.temperature));
    // llama.cpp draws a random seed for `LLAMA_DEFAULT_SEED` (u32::MAX).
    chain.push(LlamaSampler::dist(o.seed.unwrap_or(u32::MAX)));
    LlamaSampler::chain_simple(chain)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
