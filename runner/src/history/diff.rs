//! `chimera runs diff <a> <b>`: two records side by side — what changed
//! between them (model options first, then models, workflow, templates,
//! plugins, chimera, machine), then every timing and metric; with the
//! comparison statistics when both records are repeated runs.

use super::show::provenance_of;
use crate::record::provenance::{Declared, differences, option_changes};
use crate::record::samples::{Samples, measured_runs};
use crate::record::summary::Comparison;
use std::fmt::Write as _;
use std::path::Path;

/// The two records' differences as text; `a` is the baseline.
///
/// # Errors
/// When a directory holds no run or repeat (a sweep, a comparison).
pub fn diff(
    (la, a): (&str, &Path),
    (lb, b): (&str, &Path),
    include_cold: bool,
    seed: u64,
) -> Result<String, String> {
    let runs = |label: &str, dir: &Path| {
        if dir.join("sweep.json").is_file() || dir.join("comparison.json").is_file() {
            return Err(format!(
                "`{label}` is a sweep or a comparison, not a run: diff two of its runs (`{}/…/run-1`) or two cells (`{}/cells/<key>`)",
                dir.display(),
                dir.display()
            ));
        }
        measured_runs(dir).map_err(|e| e.to_string())
    };
    let (runs_a, runs_b) = (runs(la, a)?, runs(lb, b)?);
    let mut out = format!(
        "a: {la} ({})\nb: {lb} ({})\n\n## What changed\n\n",
        crate::words::plural(runs_a.len(), "run"),
        crate::words::plural(runs_b.len(), "run")
    );
    let (pa, pb) = (provenance_of(&runs_a[0]), provenance_of(&runs_b[0]));
    let changes = match (&pa, &pb) {
        (Some(pa), Some(pb)) => {
            let mut changes = option_changes(pa, pb);
            if pa.workflow.sha256 != pb.workflow.sha256 {
                changes.push(format!(
                    "workflow: `{}` (sha256 {}) against `{}` (sha256 {})",
                    pa.workflow.file.display(),
                    short(&pa.workflow.sha256),
                    pb.workflow.file.display(),
                    short(&pb.workflow.sha256)
                ));
            }
            changes.extend(differences(pa, pb, Declared::default()));
            changes
        }
        _ => vec!["n/a: a record has no provenance (written by an older chimera)".into()],
    };
    if changes.is_empty() {
        out.push_str(
            "nothing: the same workflow, options, models, templates, plugins, chimera and machine\n",
        );
    }
    for c in &changes {
        let _ = writeln!(out, "- {c}");
    }
    let samples = |dirs: &[std::path::PathBuf]| {
        Samples::of_runs(dirs, include_cold).map_err(|e| format!("cannot read a record: {e}"))
    };
    let (sa, sb) = (samples(&runs_a)?, samples(&runs_b)?);
    let repeated = sa
        .metrics
        .get("run total_ms")
        .is_some_and(|(_, v)| v.len() >= 2)
        && sb
            .metrics
            .get("run total_ms")
            .is_some_and(|(_, v)| v.len() >= 2);
    if repeated {
        out.push_str("\n## Timings and metrics (medians of the measured runs, with the comparison's statistics)\n\n");
        let comparison = Comparison::of(("a", &sa), ("b", &sb), seed, include_cold);
        out.push_str(&comparison.screen());
    } else {
        out.push_str("\n## Timings and metrics (ms unless named; medians over calls)\n\n");
        out.push_str(&side_by_side(&sa, &sb));
        out.push_str(
            "\nOne run on a side: medians only, no verdict. Repeat both (`runs: 5`) for intervals and a verdict.\n",
        );
    }
    for (label, s) in [("a", &sa), ("b", &sb)] {
        if s.skipped_runs > 0 {
            let _ = writeln!(
                out,
                "note: {label}: {} that did not end `ok` left out",
                crate::words::plural(s.skipped_runs, "run")
            );
        }
    }
    Ok(out)
}

/// Every metric either side has: a's median, b's, and the change.
fn side_by_side(a: &Samples, b: &Samples) -> String {
    let names: std::collections::BTreeSet<&String> =
        a.metrics.keys().chain(b.metrics.keys()).collect();
    let median = |s: &Samples, name: &str| {
        s.metrics
            .get(name)
            .and_then(|(_, v)| crate::stats::summarize(v))
            .map(|s| s.p50)
    };
    let mut out = String::from("| metric | a | b | change |\n|---|---:|---:|---:|\n");
    for name in names {
        let (x, y) = (median(a, name), median(b, name));
        let change = match (x, y) {
            (Some(x), Some(y)) if x != 0.0 => format!("{:+.1} %", (y - x) / x * 100.0),
            _ => "n/a".into(),
        };
        let show = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
        let _ = writeln!(out, "| {name} | {} | {} | {change} |", show(x), show(y));
    }
    out
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
