//! Running a workflow's plan: warm-up runs, measured repeats, and a
//! baseline against a candidate, interleaved. Every run is a complete run
//! record of its own under the plan's directory (`warmup-N/`, `run-N/`, one
//! directory per side when comparing); the plan's directory adds
//! `summary.*` or `comparison.*`.

use super::fail;
use super::prepare::Checked;
use crate::engine::{self, Backends, RunOptions};
use crate::plugin::PluginHost;
use crate::progress::Progress;
use crate::record::provenance::Provenance;
use crate::record::samples::Samples;
use crate::record::summary::{Comparison, RepeatSummary, RunRef, summaries};
use crate::record::{RunDir, RunStatus};
use crate::workflow::plan::Order;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One side to run: its label (none without a comparison), checked
/// workflow and provenance.
pub(super) struct Side {
    pub label: Option<String>,
    pub checked: Checked,
    pub provenance: Provenance,
}

/// What every run of the plan shares.
pub(super) struct Shared<'a> {
    pub host: &'a PluginHost,
    pub backends: Backends,
    pub input: PathBuf,
    pub quiet: bool,
    pub interrupt: tokio::sync::watch::Receiver<bool>,
    pub invocation: serde_json::Value,
    /// Put before each run's progress heading (a sweep names its cell).
    pub heading: String,
}

/// What running a plan's schedule left.
pub(super) struct Executed {
    /// Every run, in the order it ran.
    pub done: Vec<RunRef>,
    /// Per side, the measured runs that ended `ok`.
    pub measured: Vec<Vec<PathBuf>>,
    pub failed: bool,
    pub interrupted: bool,
}

/// The order the runs go in: each side's warm-up runs first (alternating
/// between sides), then the measured runs, alternating or in a seeded
/// shuffle.
fn schedule(
    sides: usize,
    runs: u32,
    warmup: u32,
    order: Order,
    seed: u64,
) -> Vec<(usize, bool, u32)> {
    let mut plan = Vec::new();
    for i in 1..=warmup {
        plan.extend((0..sides).map(|s| (s, true, i)));
    }
    let mut measured: Vec<(usize, bool, u32)> = (1..=runs)
        .flat_map(|i| (0..sides).map(move |s| (s, false, i)))
        .collect();
    if order == Order::Shuffle {
        measured.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    }
    plan.extend(measured);
    plan
}

/// Runs every run of the plan into `root`, in schedule order; stops at an
/// interrupt. `Err` only when a run could not start or its record could
/// not be written.
pub(super) async fn execute(
    sides: &[Side],
    shared: &Shared<'_>,
    root: &RunDir,
) -> Result<Executed, u8> {
    let workflow_plan = sides[0].checked.workflow.plan.clone();
    let (runs, warmup) = (workflow_plan.runs, workflow_plan.warmup);
    let (order, seed) = workflow_plan
        .compare
        .as_ref()
        .map_or((Order::Alternate, 1), |c| (c.order, c.seed));
    let schedule = schedule(sides.len(), runs, warmup, order, seed);
    let mut done: Vec<RunRef> = Vec::new();
    let mut measured: Vec<Vec<PathBuf>> = vec![Vec::new(); sides.len()];
    let mut failed = false;
    let mut interrupted = false;
    for (n, (s, warm, i)) in schedule.iter().enumerate() {
        let side = &sides[*s];
        let kind = if *warm { "warmup" } else { "run" };
        let relative: PathBuf = side
            .label
            .as_deref()
            .map_or_else(PathBuf::new, PathBuf::from)
            .join(format!("{kind}-{i}"));
        if !shared.quiet {
            eprintln!(
                "== {}{}/{}: {}{kind} {i}",
                shared.heading,
                n + 1,
                schedule.len(),
                side.label
                    .as_deref()
                    .map_or_else(String::new, |l| format!("{l} "))
            );
        }
        let options = RunOptions {
            input: shared.input.clone(),
            out: Some(root.path().join(&relative)),
            backends: shared.backends.clone(),
            observer: Arc::new(Progress::new(shared.quiet)),
            stop_after: None,
            interrupt: Some(shared.interrupt.clone()),
            resume: None,
            invocation: shared.invocation.clone(),
            templates: side.checked.templates.clone(),
            provenance: side.provenance.clone(),
        };
        let outcome = engine::run(&side.checked.workflow, shared.host, &options)
            .await
            .map_err(|e| {
                fail(
                    if matches!(e, engine::EngineError::MissingInput(_)) {
                        2
                    } else {
                        1
                    },
                    &format!("error: {e}"),
                )
            })?;
        let status = match outcome.metrics.status {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        };
        for stage in outcome.metrics.stages.iter().filter(|s| s.error.is_some()) {
            if let Some(error) = &stage.error {
                eprintln!(
                    "error: {}: stage `{}/{}` failed: {error}",
                    relative.display(),
                    stage.agent,
                    stage.stage
                );
            }
        }
        done.push(RunRef {
            side: side.label.clone(),
            kind: kind.into(),
            index: *i,
            dir: relative.display().to_string(),
            status: status.into(),
        });
        match outcome.metrics.status {
            RunStatus::Ok if !*warm => measured[*s].push(outcome.dir),
            RunStatus::Ok => {}
            RunStatus::Failed => failed = true,
            RunStatus::Interrupted => {
                interrupted = true;
                break;
            }
        }
    }
    Ok(Executed {
        done,
        measured,
        failed,
        interrupted,
    })
}

/// Runs the plan into `root` and writes its summary or comparison; the
/// exit code as `run` reports it.
pub(super) async fn run_plan(
    sides: Vec<Side>,
    shared: Shared<'_>,
    root: &RunDir,
    json: bool,
    include_cold: bool,
) -> Result<(), u8> {
    let Executed {
        done,
        measured,
        failed,
        interrupted,
    } = execute(&sides, &shared, root).await?;
    let warmup = sides[0].checked.workflow.plan.warmup;
    let title = sides[0].checked.workflow.name.clone();
    let seed = sides[0]
        .checked
        .workflow
        .plan
        .compare
        .as_ref()
        .map_or(1, |c| c.seed);
    let record_error = |e: std::io::Error| {
        fail(
            1,
            &format!(
                "error: cannot write the record in {}: {e}",
                root.path().display()
            ),
        )
    };
    let samples: Vec<Samples> = measured
        .iter()
        .map(|dirs| Samples::of_runs(dirs, include_cold))
        .collect::<Result<_, _>>()
        .map_err(record_error)?;
    let text = if sides.len() == 2 {
        let label = |i: usize| sides[i].label.clone().unwrap_or_default();
        let mut comparison = Comparison::of(
            (&label(0), &samples[0]),
            (&label(1), &samples[1]),
            seed,
            include_cold,
        );
        comparison.order = done;
        comparison.provenance_differences = crate::record::provenance::differences(
            &sides[0].provenance,
            &sides[1].provenance,
            side_overrides(&sides),
        );
        comparison.write(root).map_err(record_error)?;
        let page = serde_json::to_value(&comparison)
            .map_err(|e| e.to_string())
            .and_then(|v| {
                crate::record::html::comparison_page(&title, &v, &raw(&samples[1]))
                    .map_err(|e| e.to_string())
            });
        write_page(root, "comparison.html", page);
        if json {
            serde_json::to_string_pretty(&comparison).unwrap_or_default()
        } else {
            format!(
                "{} ({} measured run{}) against {} ({}):\n\n{}",
                comparison.candidate,
                measured[1].len(),
                if measured[1].len() == 1 { "" } else { "s" },
                comparison.baseline,
                measured[0].len(),
                comparison.screen()
            )
        }
    } else {
        let summary = RepeatSummary {
            // What was measured, which a failed or interrupted run makes
            // fewer than asked for.
            runs: u32::try_from(measured[0].len()).unwrap_or(u32::MAX),
            warmup,
            include_cold,
            cold_calls_left_out: samples[0].cold_calls,
            order: done,
            metrics: summaries(&samples[0]),
        };
        let md = crate::record::summary::write_summary(root, &summary).map_err(record_error)?;
        let page = serde_json::to_value(&summary)
            .map_err(|e| e.to_string())
            .and_then(|v| {
                crate::record::html::repeat_page(&title, &v, &raw(&samples[0]))
                    .map_err(|e| e.to_string())
            });
        write_page(root, "summary.html", page);
        if json {
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        } else {
            md
        }
    };
    println!("{}", text.trim_end());
    if !json {
        println!("record: {}", root.path().display());
    }
    if interrupted {
        eprintln!(
            "the plan was interrupted; the runs that finished are in {}",
            root.path().display()
        );
        Err(130)
    } else if failed {
        eprintln!("some runs failed; their records say why");
        Err(1)
    } else {
        Ok(())
    }
}

/// What the sides of a comparison declare they change, so that only other
/// differences in their provenance are reported.
fn side_overrides(sides: &[Side]) -> crate::record::provenance::Declared {
    let mut declared = crate::record::provenance::Declared::default();
    if let Some(compare) = &sides[0].checked.workflow.plan.compare {
        for side in [&compare.baseline, &compare.candidate] {
            declared.models |= side.overrides.backend.is_some()
                || side.overrides.model.is_some()
                || side
                    .overrides
                    .set
                    .iter()
                    .any(|s| !s.starts_with("model.options."));
            declared.templates |= side.persona.is_some() || !side.prompts.is_empty();
        }
    }
    declared
}

/// The directory of a plan's record: `--out`, or a new one under `runs/`.
pub(super) fn plan_dir(out: Option<&Path>, workflow: &str) -> Result<RunDir, u8> {
    match out {
        Some(out) => RunDir::at(out.to_path_buf()),
        None => RunDir::create(Path::new("runs"), workflow, jiff::Timestamp::now()),
    }
    .map_err(|e| fail(1, &format!("error: cannot create the run directory: {e}")))
}

/// The samples of each metric, as the pages plot them.
fn raw(samples: &Samples) -> crate::record::html::MetricSamples {
    samples
        .metrics
        .iter()
        .map(|(name, (_, values))| (name.clone(), values.clone()))
        .collect()
}

/// Writes a plan's page; a page that cannot be made is a warning, since
/// the markdown and JSON beside it hold everything it shows.
fn write_page(root: &RunDir, name: &str, page: Result<String, String>) {
    if let Err(e) = page.and_then(|p| root.write(name, p.as_bytes()).map_err(|e| e.to_string())) {
        eprintln!("warning: {name} not written: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_ups_come_first_and_measured_runs_alternate_or_shuffle_by_seed() {
        let alternate = schedule(2, 3, 1, Order::Alternate, 1);
        assert_eq!(
            alternate,
            [
                (0, true, 1),
                (1, true, 1),
                (0, false, 1),
                (1, false, 1),
                (0, false, 2),
                (1, false, 2),
                (0, false, 3),
                (1, false, 3)
            ]
        );
        let shuffled = schedule(2, 10, 1, Order::Shuffle, 42);
        assert_eq!(shuffled, schedule(2, 10, 1, Order::Shuffle, 42), "seeded");
        assert_ne!(shuffled, schedule(2, 10, 1, Order::Shuffle, 43));
        assert_eq!(shuffled[..2], [(0, true, 1), (1, true, 1)]);
        let mut measured = shuffled[2..].to_vec();
        assert_ne!(
            measured,
            schedule(2, 10, 0, Order::Alternate, 1),
            "shuffled"
        );
        measured.sort_unstable();
        let mut expected = schedule(2, 10, 0, Order::Alternate, 1);
        expected.sort_unstable();
        assert_eq!(measured, expected, "every run once");
    }
}
