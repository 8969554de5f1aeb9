//! One record directory, read for the run index: what kind of record it is,
//! which workflow made it, how it ended, when, on which models, with which
//! tags. Everything here is read from the directory's own files; nothing is
//! known only to the index.

use super::tags;
use crate::record::samples::read_metrics;
use crate::record::summary::{Comparison, RepeatSummary};
use crate::record::sweep::SweepManifest;
use crate::record::sweep_summary::SweepSummary;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// What a record directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One run: `metrics.json`.
    Run,
    /// Repeated runs of one workflow: `summary.json` over `run-N/`.
    Repeat,
    /// Two sides compared: `comparison.json`.
    Comparison,
    /// A sweep (or a merged one): `sweep.json` over `cells/`.
    Sweep,
    /// Not a record; kept in the index so it is not read again.
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Repeat => "repeat",
            Self::Comparison => "comparison",
            Self::Sweep => "sweep",
            Self::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Run,
            Self::Repeat,
            Self::Comparison,
            Self::Sweep,
            Self::Other,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// A record as the index keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The directory's name under the runs directory.
    pub id: String,
    pub kind: Kind,
    /// The workflow's name; `None` when the record does not say.
    pub workflow: Option<String>,
    /// `ok`, `failed`, `interrupted`, `unfinished` (no end recorded: still
    /// running, or the process was killed), or `incomplete` (a sweep with
    /// cells no run finished).
    pub status: String,
    /// RFC 3339, as the record has it.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// From start to end: a run's `total_ms`; for repeats, the first run's
    /// start to the last run's end.
    pub took_ms: Option<f64>,
    /// Measured runs (a run: 1; a sweep: its cells with a record).
    pub runs: u32,
    /// Each distinct model, as `<name> (<backend>)`.
    pub models: Vec<String>,
    pub tags: Vec<String>,
}

impl Entry {
    /// Milliseconds since the epoch of `started_at`, for sorting and filters.
    pub fn started_ms(&self) -> Option<i64> {
        let at: jiff::Timestamp = self.started_at.as_deref()?.parse().ok()?;
        Some(at.as_millisecond())
    }
}

/// Reads the record in `dir` (named `id`); a directory that holds no
/// record is [`Kind::Other`].
pub fn read(dir: &Path, id: &str) -> Entry {
    let mut entry = Entry {
        id: id.to_owned(),
        kind: Kind::Other,
        workflow: None,
        status: "unfinished".into(),
        started_at: None,
        finished_at: None,
        took_ms: None,
        runs: 0,
        models: Vec::new(),
        tags: tags::read(dir).unwrap_or_default(),
    };
    if dir.join("sweep.json").is_file() {
        read_sweep(dir, &mut entry);
    } else if dir.join("comparison.json").is_file() {
        read_comparison(dir, &mut entry);
    } else if dir.join("summary.json").is_file() {
        read_repeat(dir, &mut entry);
    } else if dir.join("metrics.json").is_file() || dir.join("run.json").is_file() {
        read_run(dir, &mut entry);
    } else if let Some(first) = first_run(dir) {
        // A repeat (or a comparison's side) still running: runs, no summary.
        entry.kind = Kind::Repeat;
        let metrics = read_metrics(&first).ok();
        if let Some(m) = &metrics {
            entry.workflow = text(&m["workflow"]);
            entry.started_at = text(&m["started_at"]);
            entry.models = models(m);
        }
    }
    entry
}

fn read_run(dir: &Path, entry: &mut Entry) {
    entry.kind = Kind::Run;
    entry.runs = 1;
    let Ok(metrics) = read_metrics(dir) else {
        // `run.json` only: the run started and wrote nothing else yet.
        if let Ok(text) = std::fs::read_to_string(dir.join("run.json")) {
            let invocation: Value = serde_json::from_str(&text).unwrap_or_default();
            entry.workflow = workflow_from_file(&invocation["workflow"]);
        }
        return;
    };
    run_fields(&metrics, entry);
}

/// The fields a run's `metrics.json` gives.
fn run_fields(metrics: &Value, entry: &mut Entry) {
    entry.workflow = text(&metrics["workflow"]);
    entry.started_at = text(&metrics["started_at"]);
    entry.finished_at = text(&metrics["finished_at"]);
    entry.status = if entry.finished_at.is_some() {
        text(&metrics["status"]).unwrap_or_else(|| "unfinished".into())
    } else {
        "unfinished".into()
    };
    entry.took_ms = entry
        .finished_at
        .is_some()
        .then(|| metrics["total_ms"].as_f64())
        .flatten();
    entry.models = models(metrics);
}

fn read_repeat(dir: &Path, entry: &mut Entry) {
    entry.kind = Kind::Repeat;
    let Ok(summary) = crate::record::sweep::read_json::<RepeatSummary>(&dir.join("summary.json"))
    else {
        return;
    };
    entry.runs = summary.runs;
    span(dir, &summary.order, entry);
}

fn read_comparison(dir: &Path, entry: &mut Entry) {
    entry.kind = Kind::Comparison;
    let Ok(comparison) =
        crate::record::sweep::read_json::<Comparison>(&dir.join("comparison.json"))
    else {
        return;
    };
    entry.runs = u32::try_from(comparison.order.iter().filter(|r| r.kind == "run").count())
        .unwrap_or(u32::MAX);
    span(dir, &comparison.order, entry);
    if comparison.order.is_empty() {
        // `chimera compare --out`: an analysis of two other records.
        entry.status = "ok".into();
    }
}

/// A plan's workflow, models, status and span, from its first and last runs.
fn span(dir: &Path, order: &[crate::record::summary::RunRef], entry: &mut Entry) {
    let (Some(first), Some(last)) = (order.first(), order.last()) else {
        return;
    };
    entry.status = plan_status(order.iter().map(|r| r.status.as_str()));
    if let Ok(m) = read_metrics(&dir.join(&first.dir)) {
        entry.workflow = text(&m["workflow"]);
        entry.started_at = text(&m["started_at"]);
        entry.models = models(&m);
    }
    if let Ok(m) = read_metrics(&dir.join(&last.dir)) {
        entry.finished_at = text(&m["finished_at"]);
    }
    entry.took_ms = between(entry.started_at.as_deref(), entry.finished_at.as_deref());
}

fn read_sweep(dir: &Path, entry: &mut Entry) {
    entry.kind = Kind::Sweep;
    let Ok(manifest) = crate::record::sweep::read_json::<SweepManifest>(&dir.join("sweep.json"))
    else {
        return;
    };
    entry.workflow = Some(manifest.workflow.clone());
    // A sweep's files carry no clock: it started when its directory was
    // named (`chimera run` names it by its start), else when `sweep.json`
    // was first written, as the file system remembers it.
    entry.started_at = stamp_of(&entry.id).or_else(|| modified(&dir.join("sweep.json")));
    match crate::record::sweep::read_json::<SweepSummary>(&dir.join("summary.json")) {
        Ok(summary) => {
            entry.finished_at = modified(&dir.join("summary.json"));
            entry.runs = u32::try_from(summary.cells.len()).unwrap_or(u32::MAX);
            let statuses: Vec<&str> = summary.cells.iter().map(|c| c.status.as_str()).collect();
            entry.status = plan_status(statuses.into_iter());
            if entry.status == "ok" && !summary.missing.is_empty() && manifest.shard.is_none() {
                entry.status = "incomplete".into();
            }
            if let Some(cell) = summary.cells.first()
                && let Ok(m) = read_metrics(&dir.join(&cell.dir).join("run-1"))
            {
                entry.models = models(&m);
            }
        }
        Err(_) => entry.status = "unfinished".into(),
    }
}

/// `ok` when every run did; else the worst that happened.
fn plan_status<'a>(statuses: impl Iterator<Item = &'a str>) -> String {
    let mut worst = "ok";
    for s in statuses {
        worst = match (worst, s) {
            (_, "interrupted") | ("interrupted", _) => "interrupted",
            (_, "failed") | ("failed", _) => "failed",
            _ => worst,
        };
    }
    worst.to_owned()
}

/// The first run of a plan still in progress: `run-N/`, `warmup-N/`, or
/// one level down (a comparison's sides).
fn first_run(dir: &Path) -> Option<std::path::PathBuf> {
    let is_run = |name: &str| name.starts_with("run-") || name.starts_with("warmup-");
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    children.sort();
    let direct = children.iter().find(|p| {
        p.file_name().is_some_and(|n| is_run(&n.to_string_lossy()))
            && p.join("metrics.json").is_file()
    });
    if let Some(found) = direct {
        return Some(found.clone());
    }
    children.iter().find_map(|side| {
        let mut runs: Vec<_> = std::fs::read_dir(side)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().is_some_and(|n| is_run(&n.to_string_lossy()))
                    && p.join("metrics.json").is_file()
            })
            .collect();
        runs.sort();
        runs.into_iter().next()
    })
}

/// Each distinct model of a run's provenance, as `<name> (<backend>)`.
fn models(metrics: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in metrics["provenance"]["models"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let (Some(name), Some(backend)) = (m["name"].as_str(), m["backend"].as_str()) else {
            continue;
        };
        let model = format!("{name} ({backend})");
        if !out.contains(&model) {
            out.push(model);
        }
    }
    out
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// The workflow's name from its file name (what `run.json` has before the
/// run's metrics exist).
fn workflow_from_file(v: &Value) -> Option<String> {
    let file = Path::new(v.as_str()?);
    Some(file.file_stem()?.to_string_lossy().into_owned())
}

/// The start `chimera run` put in a directory's name: `20261203T090000Z-…`.
fn stamp_of(id: &str) -> Option<String> {
    let stamp = id.get(..16)?;
    let at = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", stamp).ok()?;
    Some(
        at.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp()
            .to_string(),
    )
}

fn modified(path: &Path) -> Option<String> {
    let at = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(jiff::Timestamp::try_from(at).ok()?.to_string())
}

fn between(start: Option<&str>, end: Option<&str>) -> Option<f64> {
    let start: jiff::Timestamp = start?.parse().ok()?;
    let end: jiff::Timestamp = end?.parse().ok()?;
    let ms = end.duration_since(start).as_secs_f64() * 1000.0;
    (ms >= 0.0).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_as_bad_as_its_worst_run() {
        assert_eq!(plan_status(["ok", "ok"].into_iter()), "ok");
        assert_eq!(plan_status(["ok", "failed", "ok"].into_iter()), "failed");
        assert_eq!(
            plan_status(["failed", "interrupted"].into_iter()),
            "interrupted"
        );
    }

    #[test]
    fn the_start_in_a_directory_name_is_read_as_utc() {
        assert_eq!(
            stamp_of("20261203T090102Z-agent-a").as_deref(),
            Some("2026-12-03T09:01:02Z")
        );
        assert_eq!(stamp_of("my-sweep"), None);
    }
}
