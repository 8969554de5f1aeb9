//! What a person sees while a run goes: on a terminal, a live line per stage
//! (spinner, tokens streamed, tokens/s); otherwise plain lines on stderr.

use crate::engine::Observer;
use crate::llm::CallRecord;
use crate::record::{StageMetrics, StageStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per-stage streaming state.
struct Live {
    bar: Option<ProgressBar>,
    first_token: Option<Instant>,
    pieces: u64,
}

/// Progress on stderr: bars on a terminal, lines elsewhere, nothing when quiet.
pub struct Progress {
    multi: Option<MultiProgress>,
    quiet: bool,
    live: Mutex<HashMap<String, Live>>,
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise; `quiet` prints nothing.
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && !quiet;
        let multi = tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            multi,
            quiet,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn key(agent: &str, stage: &str) -> String {
        format!("{agent}/{stage}")
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

impl Observer for Progress {
    fn stage_started(&self, agent: &str, stage: &str) {
        let key = Self::key(agent, stage);
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(key.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        if bar.is_none() {
            self.line(&format!("▶ {key}"));
        }
        let live = Live {
            bar,
            first_token: None,
            pieces: 0,
        };
        self.live
            .lock()
            .expect("progress poisoned")
            .insert(key, live);
    }

    fn token(&self, agent: &str, stage: &str, _piece: &str) {
        let mut live = self.live.lock().expect("progress poisoned");
        let Some(state) = live.get_mut(&Self::key(agent, stage)) else {
            return;
        };
        let now = Instant::now();
        let first = *state.first_token.get_or_insert(now);
        state.pieces += 1;
        if let Some(bar) = &state.bar {
            let secs = now.duration_since(first).as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            let rate = if secs > 0.0 {
                state.pieces as f64 / secs
            } else {
                0.0
            };
            bar.set_message(format!(
                "{} streamed, {rate:.1} tok/s",
                crate::words::plural(state.pieces, "token")
            ));
        }
    }

    fn call_finished(&self, agent: &str, stage: &str, record: &CallRecord) {
        let key = Self::key(agent, stage);
        let summary = match &record.error {
            Some(e) => format!(
                "  {key}: llm call failed after {:.0} ms: {e}",
                record.wall_ms
            ),
            None => format!(
                "  {key}: {} {}: {} tokens, {} tok/s, ttft {} ms",
                record.backend,
                record.model,
                record.eval_count.unwrap_or(0),
                record
                    .tokens_per_second
                    .map_or_else(|| "n/a".into(), |t| format!("{t:.1}")),
                record
                    .ttft_ms
                    .map_or_else(|| "n/a".into(), |t| format!("{t:.0}")),
            ),
        };
        self.line(&summary);
    }

    fn stage_finished(&self, metrics: &StageMetrics) {
        let key = Self::key(&metrics.agent, &metrics.stage);
        let state = self.live.lock().expect("progress poisoned").remove(&key);
        let status = match metrics.status {
            StageStatus::Ok => "✔",
            StageStatus::Failed => "✘",
            StageStatus::Skipped => "·",
        };
        let text = match &metrics.error {
            Some(e) => format!(
                "{status} {key} failed after {:.2}s: {e}",
                metrics.wall_ms / 1000.0
            ),
            None if metrics.status == StageStatus::Skipped => {
                format!("{status} {key} skipped (an earlier stage failed)")
            }
            None => format!("{status} {key} {:.2}s", metrics.wall_ms / 1000.0),
        };
        if let Some(Live { bar: Some(bar), .. }) = state {
            bar.finish_and_clear();
        }
        self.line(&text);
    }
}
