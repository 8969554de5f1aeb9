//! The numbers a repeated run or a comparison is judged on, read from run
//! records (`metrics.json`), one sample per measured run (or per call):
//!
//! - `run total_ms`: the whole run;
//! - `<agent>/<stage> wall_ms`: each stage;
//! - `<agent>/<stage> ttft_ms`, `tokens_per_second`, `prompt_eval_duration_ms`,
//!   `eval_duration_ms`, `load_duration_ms`, `total_duration_ms`: each warm
//!   LLM call of the stage (a cold call, the first after a model load, only
//!   when asked for). A figure a call did not report is not a sample.

use crate::stats::compare::Better;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The call metrics sampled, and which way is better.
const CALL_METRICS: &[(&str, Better)] = &[
    ("ttft_ms", Better::Lower),
    ("tokens_per_second", Better::Higher),
    ("prompt_eval_duration_ms", Better::Lower),
    ("eval_duration_ms", Better::Lower),
    ("load_duration_ms", Better::Lower),
    ("total_duration_ms", Better::Lower),
];

/// Samples by metric name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    pub metrics: BTreeMap<String, (Better, Vec<f64>)>,
    /// Cold calls left out.
    pub cold_calls: usize,
    /// Runs left out because they did not end `ok`.
    pub skipped_runs: usize,
}

impl Samples {
    fn push(&mut self, name: String, better: Better, value: f64) {
        self.metrics
            .entry(name)
            .or_insert_with(|| (better, Vec::new()))
            .1
            .push(value);
    }

    /// Adds one run's `metrics.json`; a run that did not end `ok` is left
    /// out (and counted in `skipped_runs`).
    pub fn add_run(&mut self, metrics: &Value, include_cold: bool) {
        if metrics["status"] != "ok" {
            self.skipped_runs += 1;
            return;
        }
        if let Some(total) = metrics["total_ms"].as_f64() {
            self.push("run total_ms".into(), Better::Lower, total);
        }
        for stage in metrics["stages"].as_array().into_iter().flatten() {
            if stage["status"] != "ok" {
                continue;
            }
            if let Some(wall) = stage["wall_ms"].as_f64() {
                let name = format!(
                    "{}/{} wall_ms",
                    text(&stage["agent"]),
                    text(&stage["stage"])
                );
                self.push(name, Better::Lower, wall);
            }
        }
        for call in metrics["calls"].as_array().into_iter().flatten() {
            if !call["error"].is_null() {
                continue;
            }
            if call["cold"] == true && !include_cold {
                self.cold_calls += 1;
                continue;
            }
            let stage = format!("{}/{}", text(&call["agent"]), text(&call["stage"]));
            let estimated = |field: &str| {
                call["estimated"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|f| f == field))
            };
            for (field, better) in CALL_METRICS {
                if let Some(v) = call[*field].as_f64() {
                    // An estimate is its own metric, named so in every table.
                    let suffix = if estimated(field) { " (estimated)" } else { "" };
                    self.push(format!("{stage} {field}{suffix}"), *better, v);
                }
            }
        }
    }

    /// The samples of the measured runs in `dirs`.
    ///
    /// # Errors
    /// When a run's `metrics.json` cannot be read.
    pub fn of_runs(dirs: &[PathBuf], include_cold: bool) -> std::io::Result<Self> {
        let mut samples = Self::default();
        for dir in dirs {
            samples.add_run(&read_metrics(dir)?, include_cold);
        }
        Ok(samples)
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// A run's `metrics.json`.
///
/// # Errors
/// When it is missing or not JSON.
pub fn read_metrics(dir: &Path) -> std::io::Result<Value> {
    let path = dir.join("metrics.json");
    let text = std::fs::read_to_string(&path)?;
    serde_json::from_str(&text).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// The measured runs of a record: the directory itself for a single run,
/// else its `run-N/` directories in order (warm-up runs are not measured).
///
/// # Errors
/// When the directory holds neither.
pub fn measured_runs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if dir.join("metrics.json").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut runs: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("run-")?.parse().ok()?;
            e.path()
                .join("metrics.json")
                .is_file()
                .then(|| (n, e.path()))
        })
        .collect();
    runs.sort();
    if runs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "{} holds no run record (no metrics.json, no run-N/ directories)",
                dir.display()
            ),
        ));
    }
    Ok(runs.into_iter().map(|(_, p)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cold_calls_and_unreported_figures_are_not_samples() {
        let metrics = json!({
            "status": "ok",
            "total_ms": 100.0,
            "stages": [{"agent": "a", "stage": "s", "status": "ok", "wall_ms": 90.0},
                       {"agent": "a", "stage": "t", "status": "failed", "wall_ms": 5.0}],
            "calls": [
                {"agent": "a", "stage": "s", "cold": true, "ttft_ms": 900.0, "error": null},
                {"agent": "a", "stage": "s", "cold": false, "ttft_ms": 40.0, "tokens_per_second": null, "error": null},
                {"agent": "a", "stage": "s", "cold": false, "ttft_ms": 41.0, "tokens_per_second": 9.0,
                 "estimated": ["eval_count", "tokens_per_second"], "error": null},
                {"agent": "a", "stage": "s", "ttft_ms": 45.0, "error": "boom"}
            ]
        });
        let mut warm = Samples::default();
        warm.add_run(&metrics, false);
        assert_eq!(warm.metrics["a/s ttft_ms"].1, [40.0, 41.0]);
        assert!(!warm.metrics.contains_key("a/s tokens_per_second"));
        assert_eq!(warm.metrics["a/s tokens_per_second (estimated)"].1, [9.0]);
        assert!(
            !warm.metrics.contains_key("a/t wall_ms"),
            "failed stages are not timed"
        );
        assert_eq!(warm.cold_calls, 1);
        let mut all = Samples::default();
        all.add_run(&metrics, true);
        assert_eq!(all.metrics["a/s ttft_ms"].1, [900.0, 40.0, 41.0]);
        assert_eq!(all.metrics["run total_ms"], (Better::Lower, vec![100.0]));
        let mut failed = Samples::default();
        failed.add_run(&json!({"status": "failed", "total_ms": 5.0}), false);
        assert!(failed.metrics.is_empty());
        assert_eq!(failed.skipped_runs, 1);
    }
}
