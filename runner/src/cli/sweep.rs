//! Sweeps: `chimera run` of a workflow with a `matrix:` (every cell of this
//! shard, each with the workflow's repeats, skipping cells already finished
//! with the same provenance), and `chimera sweep plan` (the cells, for
//! people or a fan-out script).

use super::prepare::Checked;
use super::repeat::{self, Shared};
use super::run::identify_models;
use super::{fail, shard};
use crate::engine::template_files;
use crate::record::RunDir;
use crate::record::samples::Samples;
use crate::record::summary::{RepeatSummary, RunRef, summaries, write_summary};
use crate::record::sweep::{
    CellRecord, CellStatus, FORMAT, Fingerprint, PlannedCell, Shard, SweepManifest, cell_dir,
    read_cell,
};
use crate::record::sweep_summary::summarize_sweep;
use crate::workflow::Workflow;
use crate::workflow::matrix::{Cell, Matrix, SweepOrder};
use std::collections::HashMap;
use std::path::Path;

/// Seeds the bootstrap of the tie test.
const SEED: u64 = 1;

/// How a sweep runs, beyond what every plan shares.
pub(super) struct SweepOptions {
    pub shard: Option<Shard>,
    /// One model host per shard, in shard order (wrapping round).
    pub shard_hosts: Vec<String>,
    pub include_cold: bool,
    pub json: bool,
}

/// The sweep's cells as the record plans them.
fn planned(matrix: &Matrix) -> Vec<PlannedCell> {
    matrix
        .cells
        .iter()
        .map(|c| PlannedCell {
            key: c.key(),
            values: c.values.clone(),
        })
        .collect()
}

/// The sweep's manifest for this directory.
fn manifest(workflow: &Workflow, sha256: &str, options: &SweepOptions) -> SweepManifest {
    let matrix = workflow.plan.matrix.as_ref().expect("a sweep has a matrix");
    let cells = planned(matrix);
    let assigned = shard::assign(cells.iter().map(|c| c.key.as_str()), options.shard);
    SweepManifest {
        format: FORMAT,
        workflow: workflow.name.clone(),
        workflow_file: std::path::absolute(&workflow.path).unwrap_or(workflow.path.clone()),
        workflow_sha256: sha256.to_owned(),
        objective: workflow.plan.objective.clone(),
        axes: matrix.axes.iter().map(|(k, _)| k.value.clone()).collect(),
        runs: workflow.plan.runs,
        warmup: workflow.plan.warmup,
        include_cold: options.include_cold,
        order: matrix.order,
        cells,
        shard: options.shard,
        assigned,
        merged_from: Vec::new(),
    }
}

/// Runs this shard's cells into `root`, then writes the sweep's summary.
pub(super) async fn run_sweep(
    checked: &Checked,
    shared: Shared<'_>,
    root: &RunDir,
    options: &SweepOptions,
) -> Result<(), u8> {
    let matrix = checked
        .workflow
        .plan
        .matrix
        .as_ref()
        .expect("a sweep has a matrix");
    let base = checked.provenance()?;
    let manifest = manifest(&checked.workflow, &base.workflow.sha256, options);
    let record_error = |e: std::io::Error| {
        fail(
            1,
            &format!(
                "error: cannot write the sweep's record in {}: {e}",
                root.path().display()
            ),
        )
    };
    root.write_json("sweep.json", &manifest)
        .map_err(record_error)?;
    let host_override = match (options.shard, options.shard_hosts.as_slice()) {
        (_, []) => None,
        (None, [first, ..]) => Some(first.clone()),
        (Some(s), hosts) => Some(hosts[(s.index as usize - 1) % hosts.len()].clone()),
    };
    let cells: Vec<&Cell> = matrix
        .cells
        .iter()
        .filter(|c| manifest.assigned.contains(&c.key()))
        .collect();
    // Every cell is checked before the first runs: a cell that cannot run
    // fails the sweep now, not hours in.
    let mut prepared = Vec::new();
    for (overrides, variant) in
        variants(checked, &cells, host_override.as_deref(), shared.host).await?
    {
        let mut provenance = variant.provenance()?;
        identify_models(&mut provenance, &shared.backends, &variant.workflow).await;
        let plan = (variant.workflow.plan.runs, variant.workflow.plan.warmup);
        let fingerprint = Fingerprint::of(&provenance, &template_files(&variant.templates), plan);
        prepared.push((overrides, variant, provenance, fingerprint));
    }
    let current: HashMap<String, Fingerprint> = cells
        .iter()
        .zip(&prepared)
        .map(|(c, (_, _, _, f))| (c.key(), f.clone()))
        .collect();
    // The cells to run: not finished earlier with the same provenance.
    let mut metas = Vec::new();
    let mut sides = Vec::new();
    let mut skipped = 0;
    for (n, (cell, (overrides, variant, provenance, fingerprint))) in
        cells.iter().zip(prepared).enumerate()
    {
        let key = cell.key();
        let heading = format!("cell {}/{} `{key}` {}: ", n + 1, cells.len(), cell.label());
        if read_cell(root.path(), &key)
            .is_some_and(|r| r.status == CellStatus::Ok && r.fingerprint.same_as(&fingerprint))
        {
            if !shared.quiet {
                eprintln!("== {heading}finished earlier with the same provenance, kept");
            }
            skipped += 1;
            continue;
        }
        metas.push(Meta {
            cell,
            heading,
            set: overrides.set,
            fingerprint,
        });
        sides.push(repeat::Side {
            label: None,
            checked: variant,
            provenance,
        });
    }
    let ran = metas.len();
    let mut statuses = Vec::new();
    match matrix.order {
        SweepOrder::Sequential => {
            for (meta, side) in metas.iter().zip(&sides) {
                let cell_root =
                    RunDir::at(cell_dir(root.path(), &meta.cell.key())).map_err(record_error)?;
                let executed = repeat::execute(
                    std::slice::from_ref(side),
                    &shared.for_cell(meta, cell_root.path()),
                    &cell_root,
                )
                .await?;
                let measured = executed.measured.into_iter().next().unwrap_or_default();
                let status = finish_cell(&cell_root, meta, side, executed.done, &measured, options)
                    .map_err(record_error)?;
                statuses.push(status);
                if status == CellStatus::Interrupted {
                    break;
                }
            }
        }
        SweepOrder::Interleave if !metas.is_empty() => {
            // Every pending cell is a side of one plan, its runs in
            // `cells/<key>/`: warm-ups first, then round after round.
            for (meta, side) in metas.iter().zip(&mut sides) {
                fresh_cell_dir(root.path(), &meta.cell.key()).map_err(record_error)?;
                side.label = Some(format!("cells/{}", meta.cell.key()));
            }
            let mut invocation = shared.invocation.clone();
            invocation["part_of_plan"] =
                serde_json::Value::String(root.path().display().to_string());
            let plan_shared = Shared {
                host: shared.host,
                backends: shared.backends.clone(),
                input: shared.input.clone(),
                quiet: shared.quiet,
                interrupt: shared.interrupt.clone(),
                invocation,
                heading: String::new(),
            };
            let executed = repeat::execute(&sides, &plan_shared, root).await?;
            for ((meta, side), measured) in metas.iter().zip(&sides).zip(&executed.measured) {
                let label = side.label.clone().unwrap_or_default();
                let prefix = format!("{label}/");
                let done: Vec<RunRef> = executed
                    .done
                    .iter()
                    .filter(|r| r.side.as_deref() == Some(label.as_str()))
                    .map(|r| RunRef {
                        side: None,
                        dir: r.dir.strip_prefix(&prefix).unwrap_or(&r.dir).to_owned(),
                        ..r.clone()
                    })
                    .collect();
                let cell_root =
                    RunDir::at(cell_dir(root.path(), &meta.cell.key())).map_err(record_error)?;
                statuses.push(
                    finish_cell(&cell_root, meta, side, done, measured, options)
                        .map_err(record_error)?,
                );
            }
        }
        // Every cell finished earlier: nothing to run.
        SweepOrder::Interleave => {}
    }
    let failed = statuses
        .iter()
        .filter(|s| **s == CellStatus::Failed)
        .count();
    let interrupted = statuses.contains(&CellStatus::Interrupted);
    let summary =
        summarize_sweep(root.path(), &manifest, SEED, Some(&current)).map_err(record_error)?;
    let md = summary.write(root).map_err(record_error)?;
    if options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        println!("{}", md.trim_end());
        println!("record: {}", root.path().display());
    }
    if !shared.quiet {
        eprintln!(
            "{ran} cell{} run, {skipped} kept from before{}",
            if ran == 1 { "" } else { "s" },
            options
                .shard
                .map_or_else(String::new, |s| format!(" (shard {s})"))
        );
    }
    if interrupted {
        eprintln!(
            "the sweep was interrupted; its finished cells are kept: run the same command with `--out {}` to continue",
            root.path().display()
        );
        Err(130)
    } else if failed > 0 {
        eprintln!(
            "{failed} cell{} had a failed run (their records say why); run the same command with `--out {}` to run them again",
            if failed == 1 { "" } else { "s" },
            root.path().display()
        );
        Err(1)
    } else {
        Ok(())
    }
}

/// A cell's directory, emptied: a cell runs again from scratch, so its old
/// runs never mix with the new ones. Done just before the cell runs, so a
/// sweep that stops first leaves the old record.
fn fresh_cell_dir(root: &Path, key: &str) -> std::io::Result<RunDir> {
    let dir = cell_dir(root, key);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    RunDir::at(dir)
}

/// A cell about to run.
struct Meta<'a> {
    cell: &'a Cell,
    heading: String,
    /// Its settings as `--set` takes them.
    set: Vec<String>,
    fingerprint: Fingerprint,
}

impl Shared<'_> {
    /// What a cell's own runs share: the sweep's, headed by the cell.
    fn for_cell(&self, meta: &Meta<'_>, dir: &Path) -> Shared<'_> {
        let mut invocation = self.invocation.clone();
        invocation["part_of_plan"] = serde_json::Value::String(dir.display().to_string());
        invocation["cell"] = serde_json::json!({ "key": meta.cell.key(), "set": meta.set });
        Shared {
            host: self.host,
            backends: self.backends.clone(),
            input: self.input.clone(),
            quiet: self.quiet,
            interrupt: self.interrupt.clone(),
            invocation,
            heading: meta.heading.clone(),
        }
    }
}

/// Writes a cell's summary and, last, its `cell.json`; the cell's status:
/// interrupted when it has fewer measured runs than asked for (a run was
/// cut short, or, interleaved, the sweep stopped before its turn), failed
/// when a run failed.
fn finish_cell(
    cell_root: &RunDir,
    meta: &Meta<'_>,
    side: &repeat::Side,
    done: Vec<RunRef>,
    measured: &[std::path::PathBuf],
    options: &SweepOptions,
) -> std::io::Result<CellStatus> {
    let plan = &side.checked.workflow.plan;
    let samples = Samples::of_runs(measured, options.include_cold)?;
    let summary = RepeatSummary {
        runs: u32::try_from(measured.len()).unwrap_or(u32::MAX),
        warmup: plan.warmup,
        include_cold: options.include_cold,
        cold_calls_left_out: samples.cold_calls,
        order: done.clone(),
        metrics: summaries(&samples),
    };
    write_summary(cell_root, &summary)?;
    let ended = |kind: &str| {
        done.iter()
            .filter(|r| r.kind == kind && r.status != "interrupted")
            .count()
    };
    let status = if ended("run") < plan.runs as usize || ended("warmup") < plan.warmup as usize {
        CellStatus::Interrupted
    } else if done.iter().any(|r| r.status == "failed") {
        CellStatus::Failed
    } else {
        CellStatus::Ok
    };
    let record = CellRecord {
        key: meta.cell.key(),
        values: meta.cell.values.clone(),
        status,
        runs: done,
        fingerprint: meta.fingerprint.clone(),
        machine: side.provenance.machine.clone(),
        shard: options.shard,
    };
    // Last: a cell without `cell.json` never finished.
    cell_root.write_json("cell.json", &record)?;
    Ok(status)
}

/// Each cell's overrides and its workflow, checked whole like any
/// workflow (plugins, `with:`, templates).
pub(super) async fn variants(
    checked: &Checked,
    cells: &[&Cell],
    host_override: Option<&str>,
    host: &crate::plugin::PluginHost,
) -> Result<Vec<(crate::workflow::Overrides, Checked)>, u8> {
    let matrix = checked
        .workflow
        .plan
        .matrix
        .as_ref()
        .expect("a sweep has a matrix");
    let mut out = Vec::new();
    for cell in cells {
        let (mut overrides, personas) = cell.overrides(&matrix.axes);
        if let Some(h) = host_override {
            overrides.set.push(format!("model.host={h}"));
        }
        let mut variant = checked
            .variant(&overrides, &personas, &[], host)
            .await
            .inspect_err(|_| {
                eprintln!("  = note: in cell `{}` ({})", cell.key(), cell.label());
            })?;
        variant.workflow.plan.matrix = None;
        out.push((overrides, variant));
    }
    Ok(out)
}

/// `chimera sweep plan`: the cells, this shard's or all.
pub(super) fn plan(workflow: &Path, shard: Option<Shard>, json: bool) -> Result<(), u8> {
    let w = Workflow::load(workflow).map_err(|e| match e {
        crate::workflow::WorkflowError::Io { .. } => fail(2, &format!("error: {e}")),
        crate::workflow::WorkflowError::Invalid(errors) => fail(2, &errors.to_string()),
    })?;
    let Some(matrix) = &w.plan.matrix else {
        return Err(fail(
            2,
            &format!(
                "error: `{}` has no `matrix:`, so it is not a sweep\n  = help: add a `matrix:` of settings to vary, e.g. `model.options.num_ctx: [256, 512]`",
                workflow.display()
            ),
        ));
    };
    let cells = planned(matrix);
    let count = shard.map_or(1, |s| s.count);
    let shard_of = |key: &str| {
        (1..=count).find(|&index| {
            shard::assign(
                cells.iter().map(|c| c.key.as_str()),
                Some(Shard { index, count }),
            )
            .iter()
            .any(|k| k == key)
        })
    };
    let listed: Vec<(&PlannedCell, u32)> = cells
        .iter()
        .map(|c| (c, shard_of(&c.key).unwrap_or(1)))
        .filter(|(_, s)| shard.is_none_or(|sh| sh.index == *s))
        .collect();
    if json {
        let list: Vec<serde_json::Value> = listed
            .iter()
            .map(|(c, s)| {
                serde_json::json!({
                    "key": c.key,
                    "values": c.values,
                    "shard": shard.map(|sh| format!("{s}/{}", sh.count)),
                    "set": c.values.iter().map(|(k, v)| format!("{k}={}", crate::workflow::matrix::scalar_text(v))).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "{} cell{} of `{}`{} × {} measured run{} + {} warm-up{}, ranked by `{}`:",
        listed.len(),
        if listed.len() == 1 { "" } else { "s" },
        w.name,
        shard.map_or_else(String::new, |s| format!(
            " (shard {s}; {} in all)",
            cells.len()
        )),
        w.plan.runs,
        if w.plan.runs == 1 { "" } else { "s" },
        w.plan.warmup,
        if w.plan.warmup == 1 { "" } else { "s" },
        w.plan.objective
    );
    for (c, _) in listed {
        let label = matrix
            .cells
            .iter()
            .find(|m| m.key() == c.key)
            .map(Cell::label)
            .unwrap_or_default();
        println!("  {}  {label}", c.key);
    }
    Ok(())
}
