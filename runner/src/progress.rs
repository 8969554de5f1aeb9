//! What a person sees while a run goes: on a terminal, a live line per stage
//! (spinner, tokens streamed, tokens/s), at most [`MAX_BARS`] of them with one
//! more line counting the rest; otherwise plain lines on stderr. Every line
//! names its `agent/stage`, so lines of agents running at once stay apart.

use crate::engine::Observer;
use crate::llm::CallRecord;
use crate::record::{StageMetrics, StageStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Live lines at most: with many agents at once, the stages beyond these
/// are counted on one live line (their start and end still print as lines).
pub const MAX_BARS: usize = 8;

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
    /// The line counting running stages that have no line of their own.
    overflow: Mutex<Option<ProgressBar>>,
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise; `quiet` prints nothing.
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && !quiet;
        Self::drawing_to(tty.then(ProgressDrawTarget::stderr), quiet)
    }

    /// Live lines drawn to `target` (`None`: plain lines).
    fn drawing_to(target: Option<ProgressDrawTarget>, quiet: bool) -> Self {
        Self {
            multi: target.map(MultiProgress::with_draw_target),
            quiet,
            live: Mutex::new(HashMap::new()),
            overflow: Mutex::new(None),
        }
    }

    /// Shows how many running stages have no line of their own.
    fn count_hidden(&self, live: &HashMap<String, Live>) {
        let Some(multi) = &self.multi else { return };
        let hidden = live.values().filter(|l| l.bar.is_none()).count();
        let mut overflow = self.overflow.lock().expect("progress poisoned");
        match (hidden, overflow.as_ref()) {
            (0, Some(bar)) => {
                bar.finish_and_clear();
                *overflow = None;
            }
            (0, None) => {}
            (n, bar) => {
                let bar = bar.cloned().unwrap_or_else(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    *overflow = Some(bar.clone());
                    bar
                });
                bar.set_message(format!(
                    "… and {} running",
                    crate::words::plural(n, "more stage")
                ));
            }
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
        let mut live = self.live.lock().expect("progress poisoned");
        let shown = live.values().filter(|l| l.bar.is_some()).count();
        let bar = self.multi.as_ref().filter(|_| shown < MAX_BARS).map(|m| {
            // Above the counting line, when there is one.
            let bar = match self.overflow.lock().expect("progress poisoned").as_ref() {
                Some(counting) => m.insert_before(counting, ProgressBar::new_spinner()),
                None => m.add(ProgressBar::new_spinner()),
            };
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
        live.insert(
            key,
            Live {
                bar,
                first_token: None,
                pieces: 0,
            },
        );
        self.count_hidden(&live);
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
            let streamed = crate::words::plural(state.pieces, "token");
            // The rate counts the tokens after the first over the time since
            // it; with one token there is no rate yet (0 tok/s would be false).
            #[allow(clippy::cast_precision_loss)]
            bar.set_message(if state.pieces > 1 && secs > 0.0 {
                format!(
                    "{streamed} streamed, {:.1} tok/s",
                    (state.pieces - 1) as f64 / secs
                )
            } else {
                format!("{streamed} streamed")
            });
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
                "  {key}: {} {}: {}, {} tok/s, ttft {} ms",
                record.backend,
                record.model,
                record
                    .eval_count
                    .map_or_else(|| "n/a tokens".into(), |n| crate::words::plural(n, "token")),
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
        let state = {
            let mut live = self.live.lock().expect("progress poisoned");
            let state = live.remove(&key);
            self.count_hidden(&live);
            state
        };
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
            None if metrics.status == StageStatus::Skipped => format!(
                "{status} {key} skipped: {}",
                metrics
                    .skipped_because
                    .as_deref()
                    .unwrap_or("a stage it waits for did not finish")
            ),
            None => format!("{status} {key} {:.2}s", metrics.wall_ms / 1000.0),
        };
        if let Some(Live { bar: Some(bar), .. }) = state {
            bar.finish_and_clear();
        }
        self.line(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(agent: &str) -> StageMetrics {
        serde_json::from_value(serde_json::json!({
            "agent": agent, "stage": "s", "plugin": "p", "plugin_origin": "built-in",
            "status": "ok", "wall_ms": 1.0, "load_ms": 0.0, "instantiate_ms": 0.0,
            "guest_ms": 0.0, "llm_ms": 0.0, "output_bytes": 0, "resumed": false, "files": []
        }))
        .unwrap()
    }

    fn shown(p: &Progress) -> usize {
        let live = p.live.lock().unwrap();
        live.values().filter(|l| l.bar.is_some()).count()
    }

    fn overflow(p: &Progress) -> Option<String> {
        p.overflow
            .lock()
            .unwrap()
            .as_ref()
            .map(ProgressBar::message)
    }

    #[test]
    fn many_stages_at_once_get_at_most_max_bars_lines_and_one_counting_the_rest() {
        let p = Progress::drawing_to(Some(ProgressDrawTarget::hidden()), false);
        for a in 0..MAX_BARS + 3 {
            p.stage_started(&format!("agent{a}"), "s");
        }
        assert_eq!(shown(&p), MAX_BARS);
        assert_eq!(overflow(&p).as_deref(), Some("… and 3 more stages running"));
        // A stage without a line of its own ends: one fewer counted.
        p.stage_finished(&finished(&format!("agent{}", MAX_BARS + 2)));
        assert_eq!(overflow(&p).as_deref(), Some("… and 2 more stages running"));
        p.stage_finished(&finished(&format!("agent{}", MAX_BARS + 1)));
        p.stage_finished(&finished(&format!("agent{MAX_BARS}")));
        assert_eq!(overflow(&p), None, "nothing hidden, no counting line");
        assert_eq!(shown(&p), MAX_BARS);
    }
}
