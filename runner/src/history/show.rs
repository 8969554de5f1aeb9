//! `chimera runs show`: one screen about any record — what ran, how it
//! ended, on which models, and its timings and metrics as the record has
//! them (nothing recomputed that the record already states).

use super::entry::{Entry, Kind};
use crate::record::StageMetrics;
use crate::record::provenance::Provenance;
use crate::record::samples::{Samples, measured_runs, read_metrics};
use crate::record::summary::{Comparison, RepeatSummary, summaries, summary_table};
use crate::record::sweep::read_json;
use crate::record::sweep_summary::SweepSummary;
use std::fmt::Write as _;
use std::path::Path;

/// The screen for the record `entry` in `dir`.
///
/// # Errors
/// When the record's files cannot be read.
pub fn show(dir: &Path, entry: &Entry) -> Result<String, String> {
    let read_err = |e: std::io::Error| format!("cannot read the record `{}`: {e}", dir.display());
    let provenance = measured_runs(dir)
        .ok()
        .and_then(|runs| runs.into_iter().next())
        .or_else(|| first_cell_run(dir))
        .and_then(|run| provenance_of(&run));
    let mut out = header(entry, dir, provenance.as_ref());
    out.push('\n');
    match entry.kind {
        Kind::Run => {
            let metrics = read_metrics(dir).map_err(read_err)?;
            let stages: Vec<StageMetrics> =
                serde_json::from_value(metrics["stages"].clone()).unwrap_or_default();
            out.push_str(&crate::record::stage_table(
                &stages,
                metrics["total_ms"].as_f64().unwrap_or(0.0),
            ));
            let mut samples = Samples::default();
            // The table is about what the run did, whatever its status.
            let mut as_ok = metrics.clone();
            as_ok["status"] = "ok".into();
            samples.add_run(&as_ok, false);
            samples
                .metrics
                .retain(|name, _| !name.ends_with("wall_ms") && name != "run total_ms");
            if !samples.metrics.is_empty() {
                out.push_str("\nLLM calls (warm; ms unless named):\n");
                out.push_str(&call_table(&samples));
                if samples.cold_calls > 0 {
                    let _ = writeln!(
                        out,
                        "{} left out (the first after a model load).",
                        crate::words::plural(samples.cold_calls, "cold call")
                    );
                }
            }
            for stage in stages.iter().filter(|s| s.error.is_some()) {
                if let Some(error) = &stage.error {
                    let _ = writeln!(
                        out,
                        "error: stage `{}/{}` failed: {error}",
                        stage.agent, stage.stage
                    );
                }
            }
        }
        Kind::Repeat => {
            let summary: RepeatSummary = read_json(&dir.join("summary.json")).map_err(read_err)?;
            let _ = writeln!(
                out,
                "{} measured, {} warm-up:",
                crate::words::plural(summary.runs, "run"),
                summary.warmup
            );
            out.push_str(&summary_table(&summary.metrics));
        }
        Kind::Comparison => {
            let comparison: Comparison =
                read_json(&dir.join("comparison.json")).map_err(read_err)?;
            out.push_str(&comparison.screen());
            for d in &comparison.provenance_differences {
                let _ = writeln!(out, "note: the sides differ: {d}");
            }
        }
        Kind::Sweep => match read_json::<SweepSummary>(&dir.join("summary.json")) {
            Ok(summary) => {
                out.push_str(&summary.table());
                if !summary.missing.is_empty() {
                    let _ = writeln!(
                        out,
                        "{} with no finished record here.",
                        crate::words::plural(summary.missing.len(), "cell")
                    );
                }
            }
            Err(_) => out.push_str("no summary yet: the sweep has not finished a pass.\n"),
        },
        Kind::Other => {
            return Err(format!(
                "`{}` is not a run record (no metrics.json, summary.json, comparison.json or sweep.json)",
                dir.display()
            ));
        }
    }
    Ok(out)
}

/// The lines above the tables: id, kind and status, workflow, time, models,
/// tags, files.
fn header(entry: &Entry, dir: &Path, provenance: Option<&Provenance>) -> String {
    let mut out = format!("{} ({}, {})\n", entry.id, entry.kind.as_str(), entry.status);
    let line = |out: &mut String, label: &str, text: &str| {
        let _ = writeln!(out, "  {label:<9} {text}");
    };
    let mut workflow = entry.workflow.clone().unwrap_or_else(|| "n/a".into());
    if let Some(p) = provenance {
        let _ = write!(
            workflow,
            " · {} · sha256 {}",
            p.workflow.file.display(),
            p.workflow.sha256.get(..12).unwrap_or(&p.workflow.sha256)
        );
    }
    line(&mut out, "workflow", &workflow);
    let mut when = entry
        .started_at
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or_else(
            || "n/a".into(),
            |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        );
    if let Some(took) = entry.took_ms {
        let _ = write!(when, " · took {}", super::took(took));
    }
    line(&mut out, "started", &when);
    match provenance {
        Some(p) if !p.models.is_empty() => {
            // Stages on the same model and options share a line.
            let mut groups: indexmap::IndexMap<String, Vec<String>> = indexmap::IndexMap::new();
            for m in &p.models {
                let options: Vec<String> =
                    m.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let model = format!(
                    "{} ({}{}) {}",
                    m.name,
                    m.backend,
                    m.host
                        .as_deref()
                        .map_or_else(String::new, |h| format!(" at {h}")),
                    options.join(" ")
                );
                groups
                    .entry(model.trim_end().to_owned())
                    .or_default()
                    .push(format!("{}/{}", m.agent, m.stage));
            }
            let every = groups.len() == 1 && p.models.len() > 1;
            for (i, (model, stages)) in groups.iter().enumerate() {
                let on = if every {
                    "every stage".to_owned()
                } else {
                    stages.join(", ")
                };
                line(
                    &mut out,
                    if i == 0 { "models" } else { "" },
                    &format!("{on}: {model}"),
                );
            }
        }
        _ if !entry.models.is_empty() => line(&mut out, "models", &entry.models.join(", ")),
        _ => {}
    }
    if !entry.tags.is_empty() {
        line(&mut out, "tags", &entry.tags.join(", "));
    }
    let files: Vec<&str> = [
        "report.md",
        "report.html",
        "concurrency.md",
        "summary.md",
        "summary.html",
        "comparison.md",
        "comparison.html",
        "metrics.json",
    ]
    .into_iter()
    .filter(|f| dir.join(f).is_file())
    .collect();
    if !files.is_empty() {
        line(&mut out, "files", &files.join(" · "));
    }
    out
}

/// One run's call metrics: how many calls gave each, and their median and
/// range.
fn call_table(samples: &Samples) -> String {
    let mut out = String::from("| metric | calls | p50 | min | max |\n|---|---:|---:|---:|---:|\n");
    for (name, s) in summaries(samples) {
        let _ = writeln!(
            out,
            "| {name} | {} | {:.2} | {:.2} | {:.2} |",
            s.n, s.p50, s.min, s.max
        );
    }
    out
}

/// A run's provenance, when its record has one.
pub fn provenance_of(run: &Path) -> Option<Provenance> {
    let metrics = read_metrics(run).ok()?;
    serde_json::from_value(metrics["provenance"].clone()).ok()
}

/// The first run of a sweep's first cell (for what the sweep ran on).
fn first_cell_run(dir: &Path) -> Option<std::path::PathBuf> {
    let mut cells: Vec<_> = std::fs::read_dir(dir.join("cells"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    cells.sort();
    cells
        .iter()
        .find_map(|c| measured_runs(c).ok()?.into_iter().next())
}
