//! `chimera compare <run-a> <run-b>`: two existing records (single runs or
//! repeats) compared the way a `compare:` block compares its sides.

use super::fail;
use crate::record::RunDir;
use crate::record::provenance::{Declared, Provenance, differences};
use crate::record::samples::{Samples, measured_runs, read_metrics};
use crate::record::summary::Comparison;
use std::path::{Path, PathBuf};

/// The options of `chimera compare`.
pub(super) struct CompareArgs {
    pub baseline: PathBuf,
    pub candidate: PathBuf,
    pub force: bool,
    pub json: bool,
    pub include_cold: bool,
    pub seed: u64,
    pub out: Option<PathBuf>,
}

fn provenance_of(run: &Path) -> Result<Provenance, String> {
    let metrics = read_metrics(run).map_err(|e| e.to_string())?;
    serde_json::from_value(metrics["provenance"].clone()).map_err(|_| {
        format!(
            "{} has no provenance (recorded by an older chimera), so what produced it cannot be compared",
            run.display()
        )
    })
}

pub(super) fn compare(args: &CompareArgs) -> Result<(), u8> {
    let runs = |dir: &Path| {
        measured_runs(dir).map_err(|e| fail(2, &format!("error: cannot compare: {e}")))
    };
    let (a, b) = (runs(&args.baseline)?, runs(&args.candidate)?);
    let label = |p: &Path, fallback: &str| {
        p.file_name()
            .map_or_else(|| fallback.to_owned(), |n| n.to_string_lossy().into_owned())
    };
    let (mut la, mut lb) = (label(&args.baseline, "a"), label(&args.candidate, "b"));
    if la == lb {
        (la, lb) = ("a".into(), "b".into());
    }
    let provenance = |run: &Path| provenance_of(run).map_err(|e| fail(2, &format!("error: {e}")));
    let found = differences(
        &provenance(&a[0])?,
        &provenance(&b[0])?,
        Declared::default(),
    );
    if !found.is_empty() && !args.force {
        let list: Vec<String> = found.iter().map(|d| format!("  - {d}")).collect();
        return Err(fail(
            2,
            &format!(
                "error: the two records differ in more than model options:\n{}\n  = help: compare runs that differ only in what is being compared, or add `--force` to compare anyway (the differences are listed in the result)",
                list.join("\n")
            ),
        ));
    }
    for d in &found {
        eprintln!("warning: the records differ: {d}");
    }
    let samples = |dirs: &[PathBuf]| {
        Samples::of_runs(dirs, args.include_cold)
            .map_err(|e| fail(2, &format!("error: cannot read a record: {e}")))
    };
    let (base, cand) = (samples(&a)?, samples(&b)?);
    let mut comparison = Comparison::of((&la, &base), (&lb, &cand), args.seed, args.include_cold);
    comparison.provenance_differences = found;
    let skipped = base.skipped_runs + cand.skipped_runs;
    if skipped > 0 {
        eprintln!(
            "warning: {} that did not end `ok` left out",
            crate::words::plural(skipped, "run")
        );
    }
    if let Some(out) = &args.out {
        let dir = RunDir::at(out.clone())
            .map_err(|e| fail(1, &format!("error: cannot create {}: {e}", out.display())))?;
        comparison
            .write(&dir)
            .map_err(|e| fail(1, &format!("error: cannot write {}: {e}", out.display())))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&comparison).unwrap_or_default()
        );
    } else {
        println!(
            "{} ({} run{}) against {} ({} run{}):\n",
            lb,
            b.len(),
            if b.len() == 1 { "" } else { "s" },
            la,
            a.len(),
            if a.len() == 1 { "" } else { "s" }
        );
        print!("{}", comparison.table());
    }
    Ok(())
}
