//! Run records on disk: `runs/<timestamp>-<workflow>/` with `metrics.json`
//! (versioned) and each stage's output, written atomically so an interrupted
//! or failed run still leaves a readable record of what completed.

pub mod calls;
pub mod checkpoint;
pub mod concurrency;
pub mod html;
pub mod provenance;
pub mod report;
pub mod resume;
pub mod samples;
pub mod summary;
pub mod sweep;
pub mod sweep_summary;

use crate::plugin::{LoadKind, StageFailure};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The version of `metrics.json`; bumped when a field changes meaning or goes away.
pub const METRICS_SCHEMA_VERSION: u32 = 1;

/// Milliseconds as a float, for people and JSON.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    Ok,
    Failed,
    /// Not run because a stage it waits for (an earlier stage of its agent,
    /// or one it `needs:`) failed or was skipped, or the run was interrupted;
    /// [`StageMetrics::skipped_because`] says which.
    Skipped,
}

/// One stage's record in `metrics.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StageMetrics {
    pub agent: String,
    pub stage: String,
    pub plugin: String,
    /// `built-in` or the component's path.
    pub plugin_origin: String,
    pub status: StageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StageFailure>,
    /// Why a skipped stage did not run: "`collector/analyze` failed",
    /// "the run was interrupted".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_because: Option<String>,
    /// When the stage started, in ms from the start of the run.
    #[serde(default)]
    pub started_ms: f64,
    /// From the start of the stage to its record: load + instantiate + guest.
    pub wall_ms: f64,
    /// How long the stage waited for its plugin. The next stage's plugin is
    /// prepared (compiled or loaded from the cache) in the background while a
    /// stage runs, so a stage whose plugin was ready waited about nothing;
    /// `load_kind` says how it was prepared.
    pub load_ms: f64,
    pub load_kind: Option<LoadKind>,
    pub instantiate_ms: f64,
    /// Inside the guest's `run`, host calls included.
    pub guest_ms: f64,
    /// Inside `llm.generate` host calls.
    pub llm_ms: f64,
    pub output_bytes: usize,
    /// Carried over from an earlier run by `--resume`, not run again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
    /// What the stage left in its `write:` directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<WrittenFile>,
}

/// A regular file a stage wrote, as found after the stage ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct WrittenFile {
    /// Relative to the run directory: `files/<agent>/<stage>/…`.
    pub path: String,
    pub bytes: u64,
}

/// Run status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Ok,
    Failed,
    /// Stopped by Ctrl-C; `chimera run --resume <dir>` continues it.
    Interrupted,
}

/// The whole `metrics.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunMetrics {
    pub schema_version: u32,
    pub chimera_version: &'static str,
    pub workflow: String,
    pub workflow_file: String,
    pub input_dir: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: RunStatus,
    pub total_ms: f64,
    pub stages: Vec<StageMetrics>,
    /// Every LLM call: backend, host, model, options, TTFT, tokens/s, counts and
    /// durations (ms); prompts and responses are in `calls.jsonl`.
    pub calls: Vec<serde_json::Value>,
    /// Report files written (relative to the run directory).
    pub reports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub report_errors: Vec<String>,
    /// What produced the run.
    pub provenance: provenance::Provenance,
    /// Each pooled host's calls, failures, busy time, queueing and
    /// utilisation in this run (models with `hosts:` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<crate::llm::pool::HostUsage>,
    /// With several agents: how much they overlapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<concurrency::Concurrency>,
}

/// A run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `<base>/<timestamp>-<workflow>` (with a numeric suffix if taken).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn create(base: &Path, workflow: &str, started: jiff::Timestamp) -> std::io::Result<Self> {
        std::fs::create_dir_all(base)?;
        let stamp = started.strftime("%Y%m%dT%H%M%SZ").to_string();
        for n in 0..1000 {
            let name = if n == 0 {
                format!("{stamp}-{workflow}")
            } else {
                format!("{stamp}-{workflow}-{n}")
            };
            let path = base.join(name);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(
            "too many runs with the same timestamp",
        ))
    }

    /// Uses an existing or new directory as given (`--out`).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn at(path: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` to `relative` atomically (temp file + rename).
    ///
    /// # Errors
    /// On I/O failure.
    pub fn write(&self, relative: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.path.join(relative);
        crate::files::write_atomically(&path, bytes)?;
        Ok(path)
    }

    /// Appends `bytes` to `relative` (created if missing) in one write, so a
    /// reader sees whole lines unless the process dies inside that write.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn append(&self, relative: &str, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.join(relative))?
            .write_all(bytes)
    }

    /// Removes `relative` if it is there (a file left by an earlier run in an
    /// `--out` directory).
    ///
    /// # Errors
    /// On I/O failure other than the file not being there.
    pub fn remove(&self, relative: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path.join(relative)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Writes `value` as pretty JSON.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn write_json(&self, relative: &str, value: &impl Serialize) -> std::io::Result<PathBuf> {
        let mut text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
        text.push(b'\n');
        self.write(relative, &text)
    }
}

/// The per-stage timing table printed at the end of a run.
pub fn timing_table(metrics: &RunMetrics) -> String {
    stage_table(&metrics.stages, metrics.total_ms)
}

/// The per-stage timing table of `stages`, ending with the run's total.
pub fn stage_table(stages: &[StageMetrics], total_ms: f64) -> String {
    let rows: Vec<[String; 7]> = stages
        .iter()
        .map(|s| {
            let status = match s.status {
                StageStatus::Ok => "ok",
                StageStatus::Failed => "FAILED",
                StageStatus::Skipped => "skipped",
            };
            let load = match s.load_kind {
                Some(k) => format!(
                    "{:.2} ms ({})",
                    s.load_ms,
                    serde_json::to_value(k)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
                None => "-".into(),
            };
            [
                format!("{}/{}", s.agent, s.stage),
                status.into(),
                format!("{:.2} ms", s.wall_ms),
                load,
                format!("{:.2} ms", s.instantiate_ms),
                format!("{:.2} ms", s.guest_ms),
                format!("{:.2} ms", s.llm_ms),
            ]
        })
        .collect();
    let header = [
        "stage",
        "status",
        "wall",
        "load",
        "instantiate",
        "guest",
        "llm",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 7]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 0 || i == 1 {
                out.push_str(&format!("{cell:<w$}  "));
            } else {
                out.push_str(&format!("{cell:>w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&header);
    for row in &rows {
        out.push_str(&line(row));
    }
    out.push_str(&format!("total {total_ms:.2} ms\n"));
    out
}
