//! What a repeated run and a comparison add to the record: `summary.json`
//! and `summary.md` (every metric over the measured runs) and
//! `comparison.json` and `comparison.md` (baseline against candidate, per
//! metric, with the verdict), plus the one-screen tables printed at the end.

use super::RunDir;
use super::samples::Samples;
use crate::stats::compare::{self, MetricComparison, Verdict};
use crate::stats::{Summary, summarize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One run of a plan, in the order it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRef {
    /// The comparison side's label; `None` without a comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    /// `warmup` (recorded, not counted) or `run`.
    pub kind: String,
    pub index: u32,
    /// Relative to the record's directory.
    pub dir: String,
    /// The run's status (`ok`, `failed`, `interrupted`).
    pub status: String,
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepeatSummary {
    /// Runs measured (that ended `ok`).
    pub runs: u32,
    pub warmup: u32,
    /// Whether cold calls (the first after a model load) were counted.
    pub include_cold: bool,
    pub cold_calls_left_out: usize,
    pub order: Vec<RunRef>,
    pub metrics: BTreeMap<String, Summary>,
}

/// Every metric of `samples`, summarised.
pub fn summaries(samples: &Samples) -> BTreeMap<String, Summary> {
    samples
        .metrics
        .iter()
        .filter_map(|(name, (_, values))| summarize(values).map(|s| (name.clone(), s)))
        .collect()
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), num)
}

/// The summary as a markdown table (one line per metric).
pub fn summary_table(metrics: &BTreeMap<String, Summary>) -> String {
    let mut out = String::from(
        "| metric | n | mean | sd | CV | min | p50 | p95 | max | 95 % CI of the mean |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (name, s) in metrics {
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.n,
            num(s.mean),
            opt(s.sd),
            s.cv.map_or_else(|| "n/a".to_owned(), |c| format!("{:.1} %", c * 100.0)),
            num(s.min),
            num(s.p50),
            num(s.p95),
            num(s.max),
            s.ci95.map_or_else(
                || "n/a".to_owned(),
                |[lo, hi]| format!("{} – {}", num(lo), num(hi))
            ),
        ));
    }
    out
}

/// Writes `summary.json` and `summary.md`; the markdown text.
///
/// # Errors
/// When the files cannot be written.
pub fn write_summary(dir: &RunDir, summary: &RepeatSummary) -> std::io::Result<String> {
    dir.write_json("summary.json", summary)?;
    let mut md = format!(
        "# Summary of {} measured run{} ({} warm-up{} left out)\n\n",
        summary.runs,
        if summary.runs == 1 { "" } else { "s" },
        summary.warmup,
        if summary.warmup == 1 { "" } else { "s" },
    );
    md.push_str(&summary_table(&summary.metrics));
    md.push_str(&cold_note(
        summary.include_cold,
        summary.cold_calls_left_out,
    ));
    dir.write("summary.md", md.as_bytes())?;
    Ok(md)
}

fn cold_note(include_cold: bool, left_out: usize) -> String {
    if include_cold {
        "\nCold calls (the first after a model load) are included.\n".to_owned()
    } else if left_out > 0 {
        format!(
            "\n{left_out} cold call{} (the first after a model load) left out of the call metrics; `--include-cold` counts them.\n",
            if left_out == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    }
}

/// `comparison.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline: String,
    pub candidate: String,
    /// Seeds the order (when shuffled) and the bootstrap.
    pub seed: u64,
    pub test: String,
    pub alpha: f64,
    pub bootstrap_resamples: usize,
    pub include_cold: bool,
    pub cold_calls_left_out: usize,
    /// The runs in the order they ran (empty for `chimera compare`).
    pub order: Vec<RunRef>,
    /// Differences between the two sides' provenance that the comparison
    /// did not declare (listed, never silently ignored).
    pub provenance_differences: Vec<String>,
    pub metrics: Vec<MetricComparison>,
}

impl Comparison {
    /// Compares every metric both sides have.
    pub fn of(
        (baseline, base): (&str, &Samples),
        (candidate, cand): (&str, &Samples),
        seed: u64,
        include_cold: bool,
    ) -> Self {
        let metrics = base
            .metrics
            .iter()
            .filter_map(|(name, (better, a))| {
                let (_, b) = cand.metrics.get(name)?;
                compare::compare(name, *better, a, b, seed)
            })
            .collect();
        Self {
            baseline: baseline.to_owned(),
            candidate: candidate.to_owned(),
            seed,
            test: "Mann-Whitney U, two-sided".into(),
            alpha: compare::ALPHA,
            bootstrap_resamples: compare::RESAMPLES,
            include_cold,
            cold_calls_left_out: base.cold_calls + cand.cold_calls,
            order: Vec::new(),
            provenance_differences: Vec::new(),
            metrics,
        }
    }

    /// The one-screen table: per metric both medians, the change, the
    /// interval of the ratio, p and the verdict.
    pub fn table(&self) -> String {
        let mut out = format!(
            "| metric | {} p50 | {} p50 | change | ratio 95 % CI | p | verdict |\n|---|---:|---:|---:|---|---:|---|\n",
            self.baseline, self.candidate
        );
        for m in &self.metrics {
            let verdict = match (m.verdict, m.runs_to_detect_5_percent) {
                (Verdict::NoDetectableDifference, Some(n)) => {
                    format!("no detectable difference (~{n} runs each to detect 5 %)")
                }
                (Verdict::NoDetectableDifference, None) => m.verdict.to_string(),
                (v, _) => format!("**{v}**"),
            };
            let p = if m.p_value < 0.001 {
                "< 0.001".to_owned()
            } else {
                format!("{:.3}", m.p_value)
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {p} | {verdict} |\n",
                m.metric,
                num(m.baseline.p50),
                num(m.candidate.p50),
                m.relative_percent
                    .map_or_else(|| "n/a".to_owned(), |p| format!("{p:+.1} %")),
                m.ratio_ci95
                    .map_or_else(|| "n/a".to_owned(), |[lo, hi]| format!("{lo:.3} – {hi:.3}")),
            ));
        }
        out
    }

    /// The table and the note on cold calls: what a terminal shows.
    pub fn screen(&self) -> String {
        self.table() + &cold_note(self.include_cold, self.cold_calls_left_out)
    }

    /// Writes `comparison.json` and `comparison.md`; the markdown text.
    ///
    /// # Errors
    /// When the files cannot be written.
    pub fn write(&self, dir: &RunDir) -> std::io::Result<String> {
        dir.write_json("comparison.json", self)?;
        let mut md = format!(
            "# {} against {}\n\nMedians of the measured runs; change = ({} − {}) / {}; \
             the ratio's interval is a percentile bootstrap ({} resamples, seed {}); \
             p from the {} test; a verdict needs p < {} and an interval that excludes 1.\n\n",
            self.candidate,
            self.baseline,
            self.candidate,
            self.baseline,
            self.baseline,
            self.bootstrap_resamples,
            self.seed,
            self.test,
            self.alpha
        );
        md.push_str(&self.screen());
        if !self.provenance_differences.is_empty() {
            md.push_str("\n## Provenance differences not declared by the comparison\n\n");
            for d in &self.provenance_differences {
                md.push_str(&format!("- {d}\n"));
            }
        }
        if !self.order.is_empty() {
            md.push_str("\n## Order of the runs\n\n");
            for r in &self.order {
                md.push_str(&format!(
                    "- {} {} {}: {} ({})\n",
                    r.side.as_deref().unwrap_or(""),
                    r.kind,
                    r.index,
                    r.dir,
                    r.status
                ));
            }
        }
        dir.write("comparison.md", md.as_bytes())?;
        Ok(md)
    }
}
