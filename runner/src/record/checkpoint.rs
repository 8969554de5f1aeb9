//! Keeping the record on disk up to date while a run goes on.

use super::calls::{CallEntry, jsonl};
use super::{RunDir, RunMetrics};
use std::time::Instant;

/// How the record on disk keeps up with a run without creating a file per
/// update: every new inode is a measurable cost on some filesystems (about
/// 0.2 ms each on ext4 without a journal, where Chimera's benchmarks run).
///
/// - `calls.jsonl` gets each stage's new calls appended, a line per call,
///   in one write.
/// - `metrics.json` is rewritten (atomically) after a stage when
///   [`CHECKPOINT_EVERY`] has passed since it was last written, and always
///   when the run ends, fails or is interrupted. A run of fast stages writes
///   it once; a run that is killed loses at most that long of its record
///   (the stages' outputs are written as each stage ends).
pub struct Checkpoint {
    metrics_at: Instant,
    calls_written: usize,
    calls_file: bool,
}

/// How stale `metrics.json` may get while a run goes on.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Checkpoint {
    /// Starts the record's running files. A resumed run rewrites calls.jsonl
    /// with the calls it keeps; a new run removes what an earlier run left
    /// in the same `--out` directory.
    pub fn start(
        dir: &RunDir,
        kept: &[CallEntry],
        resumed: bool,
        clock: Instant,
    ) -> std::io::Result<Self> {
        if resumed {
            dir.write("calls.jsonl", &jsonl(kept)?)?;
        } else {
            dir.remove("calls.jsonl")?;
            dir.remove("metrics.json")?;
        }
        Ok(Self {
            metrics_at: clock,
            calls_written: kept.len(),
            calls_file: resumed,
        })
    }

    /// Appends the calls made since the last append; whether there were any.
    pub fn append_calls(&mut self, dir: &RunDir, entries: &[CallEntry]) -> std::io::Result<bool> {
        let new = entries.get(self.calls_written..).unwrap_or_default();
        if new.is_empty() && self.calls_file {
            return Ok(false);
        }
        dir.append("calls.jsonl", &jsonl(new)?)?;
        self.calls_written = entries.len();
        self.calls_file = true;
        Ok(!new.is_empty())
    }

    /// Rewrites metrics.json if it is older than [`CHECKPOINT_EVERY`].
    pub fn metrics(&mut self, dir: &RunDir, metrics: &RunMetrics) -> std::io::Result<()> {
        if self.metrics_at.elapsed() >= CHECKPOINT_EVERY {
            dir.write_json("metrics.json", metrics)?;
            self.metrics_at = Instant::now();
        }
        Ok(())
    }
}
