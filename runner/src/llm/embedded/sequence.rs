//! One call while it is decoded: its own sequence in the shared context
//! (its KV cells, positions, sampler, stop strings and timings), fed into
//! the batch the worker decodes each step.

use super::engine::{Failure, Job, Stats};
use super::prompt;
use super::text::{StopScan, Utf8Stream};
use crate::llm::LlmErrorKind;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::time::Instant;

/// A call being decoded as sequence `id` of the worker's context.
pub(super) struct Sequence {
    pub(super) job: Job,
    /// The sequence id in the context (its KV cells), `0..slots`.
    pub(super) id: i32,
    model: &'static LlamaModel,
    /// The prompt, already cut to fit `num_ctx`.
    prompt: Vec<LlamaToken>,
    /// Prompt tokens already decoded.
    fed: usize,
    /// The next position in this sequence.
    pos: i32,
    /// The token sampled last, to be decoded in the next step.
    next: Option<LlamaToken>,
    /// The most tokens to generate.
    budget: usize,
    generated: u64,
    sampler: LlamaSampler,
    utf8: Utf8Stream,
    stops: StopScan,
    pub(super) stats: Stats,
    admitted: Instant,
    eval_started: Option<Instant>,
    /// The worker's step that last put a token of this call in the batch.
    pub(super) last_fed: u64,
}

/// What a step did to a sequence.
pub(super) enum Step {
    Going,
    /// Finished with this `done_reason`.
    Done(&'static str),
    /// Nobody listens any more: the call's future was dropped.
    Cancelled,
}

impl Sequence {
    /// Prepares `job` as sequence `id`: the prompt through the chat
    /// template, tokenized and cut to fit, and its sampler. `None` when the
    /// prompt cannot be used; the call has been answered with why.
    pub(super) fn start(
        model: &'static LlamaModel,
        job: Job,
        id: i32,
        stats: Stats,
    ) -> Option<Self> {
        let bad = |job: Job, message: String| {
            let failure = Failure {
                kind: LlmErrorKind::BadRequest,
                message,
                stats: stats.clone(),
            };
            let _ = job.reply.send(Err(Box::new(failure)));
            None
        };
        let text = match prompt::prompt_text(model, &job) {
            Ok(t) => t,
            Err(message) => return bad(job, message),
        };
        let vocab = model.vocab();
        let mut tokens = vocab.tokenize(text.as_bytes(), true, true);
        // The template may write the BOS text itself, and tokenize adds one too.
        if tokens.len() >= 2 && tokens[0] == vocab.bos() && tokens[1] == vocab.bos() {
            tokens.remove(0);
        }
        if tokens.is_empty() {
            let message = format!(
                "the prompt for model `{}` is empty; give the call at least one message",
                job.name
            );
            return bad(job, message);
        }
        let mut stats = stats;
        let opts = &job.opts;
        let n_ctx = opts.n_ctx as usize;
        // Room kept for the answer: `num_predict`, but at most half the
        // context (and at least one token).
        let reserve = opts
            .num_predict
            .map_or(1, |n| n as usize)
            .clamp(1, (n_ctx / 2).max(1));
        if tokens.len() + reserve > n_ctx {
            let keep = n_ctx.saturating_sub(reserve).max(1);
            let had = tokens.len();
            tokens = prompt::truncate_front(tokens, keep, vocab.bos());
            stats.prompt_truncated = true;
            let _entered = job.span.enter();
            tracing::warn!(
                model = %job.name,
                prompt_tokens = had,
                kept = tokens.len(),
                num_ctx = n_ctx,
                "the prompt does not fit `num_ctx` with room for the answer; its start was cut off: raise `num_ctx` or shorten the prompt"
            );
        }
        let budget = opts.budget(tokens.len());
        let sampler = prompt::sampler(model, opts);
        let stops = StopScan::new(opts.stop.clone());
        Some(Self {
            job,
            id,
            model,
            prompt: tokens,
            fed: 0,
            pos: 0,
            next: None,
            budget,
            generated: 0,
            sampler,
            utf8: Utf8Stream::default(),
            stops,
            stats,
            admitted: Instant::now(),
            eval_started: None,
            last_fed: 0,
        })
    }

    /// Whether the call is still waited for.
    pub(super) fn cancelled(&self) -> bool {
        self.job.tx.is_closed()
    }

    /// Whether the sequence has a generated token to decode (rather than
    /// prompt tokens).
    pub(super) fn generating(&self) -> bool {
        self.next.is_some()
    }

    /// Adds this sequence's share of the next step to `batch`: its last
    /// token when generating, else up to `room` prompt tokens (logits only
    /// for the prompt's last). Returns the tokens added and whether a
    /// token with logits was among them.
    pub(super) fn feed(
        &mut self,
        batch: &mut LlamaBatch<'_>,
        room: usize,
    ) -> Result<(usize, bool), String> {
        if room == 0 {
            return Ok((0, false));
        }
        if let Some(token) = self.next.take() {
            batch
                .add(token, self.pos, &[self.id], true)
                .map_err(|e| e.to_string())?;
            self.pos += 1;
            return Ok((1, true));
        }
        let take = room.min(self.prompt.len() - self.fed);
        let last = self.prompt.len() - 1;
        for i in self.fed..self.fed + take {
            batch
                .add(self.prompt[i], self.pos, &[self.id], i == last)
                .map_err(|e| e.to_string())?;
            self.pos += 1;
        }
        self.fed += take;
        Ok((take, self.fed == self.prompt.len()))
    }

    /// After a decode that computed logits for this sequence at batch index
    /// `idx`: samples the next token and streams its text.
    pub(super) fn sample(&mut self, ctx: &LlamaContext<'static>, idx: i32) -> Step {
        if self.eval_started.is_none() {
            self.stats.prompt_tokens = Some(self.prompt.len() as u64);
            self.stats.prompt_ms = Some(ms(self.admitted));
            self.eval_started = Some(Instant::now());
        }
        if self.generated as usize >= self.budget {
            return Step::Done("length");
        }
        let token = self.sampler.sample(ctx, idx);
        let vocab = self.model.vocab();
        if vocab.is_eog(token) {
            return Step::Done("stop");
        }
        self.generated += 1;
        let text = self.utf8.push(&vocab.token_to_piece(token, false, None));
        let (shown, stopped) = self.stops.push(&text);
        if !shown.is_empty() && self.job.tx.send(shown).is_err() {
            return Step::Cancelled;
        }
        if stopped {
            // The text after a stop string is never shown.
            self.utf8 = Utf8Stream::default();
            self.stops = StopScan::new(Vec::new());
            return Step::Done("stop");
        }
        if self.generated as usize >= self.budget {
            return Step::Done("length");
        }
        self.next = Some(token);
        Step::Going
    }

    /// Ends the call: the text still held back, the stats, the answer.
    pub(super) fn finish(mut self, reason: &'static str) {
        self.flush();
        self.stats.done_reason = Some(reason);
        let stats = self.close();
        let _ = self.job.reply.send(Ok(stats));
    }

    /// Ends the call with a failure; what was generated is kept.
    pub(super) fn fail(mut self, kind: LlmErrorKind, message: String) {
        self.flush();
        let stats = self.close();
        let _ = self.job.reply.send(Err(Box::new(Failure {
            kind,
            message,
            stats,
        })));
    }

    /// The tokens generated so far.
    pub(super) fn generated(&self) -> u64 {
        self.generated
    }

    fn flush(&mut self) {
        let (mut text, stopped) = self.stops.push(&self.utf8.finish());
        if !stopped {
            text.push_str(&self.stops.finish());
        }
        if !text.is_empty() {
            let _ = self.job.tx.send(text);
        }
    }

    fn close(&mut self) -> Stats {
        if self.stats.prompt_tokens.is_some() {
            self.stats.eval_count = Some(self.generated);
            self.stats.eval_ms = self.eval_started.map(ms);
        }
        self.stats.clone()
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
