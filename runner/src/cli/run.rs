//! `chimera run` (with `--resume`) and `chimera render`.

use super::prepare::{Checked, prepare};
use super::repeat;
use super::{PlanArgs, RunArgs, fail, host, release_at_exit};
use crate::engine::{self, RunOptions};
use crate::engine::{template_file, template_files};
use crate::llm::Timeouts;
use crate::progress::Progress;
use crate::record::provenance::Provenance;
use crate::record::resume::{Invocation, Resume, SearchPaths};
use crate::record::{RunStatus, timing_table};
use std::path::PathBuf;
use std::sync::Arc;

fn backends(args: &RunArgs) -> engine::Backends {
    engine::Backends::new(Timeouts {
        connect: args.connect_timeout,
        read: args.read_timeout,
    })
}

fn engine_failure(e: &engine::EngineError) -> u8 {
    let code = match e {
        engine::EngineError::MissingInput(_) => 2,
        engine::EngineError::Record { .. } => 1,
    };
    fail(code, &format!("error: {e}"))
}

/// Asks each backend who its models are (once per distinct model), for the
/// record: an answer the server does not give stays `null`.
pub(super) async fn identify_models(
    provenance: &mut Provenance,
    backends: &engine::Backends,
    workflow: &crate::workflow::Workflow,
) {
    let mut known: Vec<(crate::workflow::ModelSpec, Option<String>)> = Vec::new();
    for (agent, stage) in workflow.stages() {
        let Some(spec) = &stage.model else { continue };
        let identity = match known
            .iter()
            .find(|(k, _)| k.backend == spec.backend && k.name == spec.name && k.host == spec.host)
        {
            Some((_, identity)) => identity.clone(),
            None => {
                let identity = backends.get(spec.backend).identify(spec).await;
                known.push((spec.clone(), identity.clone()));
                identity
            }
        };
        if let Some(entry) = provenance
            .models
            .iter_mut()
            .find(|m| m.agent == agent.id && m.stage == stage.id)
        {
            entry.identity = identity;
        }
    }
}

/// `chimera run`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct RunCommand {
    /// The workflow YAML file.
    #[arg(required_unless_present = "resume")]
    pub workflow: Option<PathBuf>,
    #[command(flatten)]
    pub args: RunArgs,
    /// Continue an interrupted or failed run in its directory: completed
    /// stages are kept, the rest run with the same workflow, input and
    /// model overrides (from its `run.json`).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["workflow", "out", "input", "backend", "model", "set"])]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub plan: PlanArgs,
    /// With `--resume`: continue even though the workflow or a template
    /// changed since the run began (each change is printed). Without it
    /// such a resume is refused, since the stages kept and the stages run
    /// again would come from different sources.
    #[arg(long, requires = "resume")]
    pub force: bool,
    /// Write the run record here instead of a new directory under `runs/`.
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// For a sweep (a workflow with `matrix:`): run only shard K of N of
    /// its cells (`K/N`, 1-based), or `auto`: from a Slurm job array
    /// (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`) or a Kubernetes
    /// Indexed Job (`JOB_COMPLETION_INDEX`, with the count in
    /// `CHIMERA_SHARD_COUNT`). Join the shards with `chimera merge`.
    #[arg(long, value_name = "K/N|auto", conflicts_with = "resume")]
    pub shard: Option<String>,
    /// For a sweep: the model host of each shard, in shard order (shard K
    /// uses the K-th, wrapping round); repeatable. Like `--set
    /// model.host=…`, but one per shard.
    #[arg(long, value_name = "URL", conflicts_with = "resume")]
    pub shard_host: Vec<String>,
    /// Most stages running at once (agents without `needs:` between them
    /// run concurrently); over the workflow's `max_parallel:`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: Option<u32>,
    /// Refuse to run unless `chimera.lock` beside the workflow pins exactly
    /// the sources (commits) and templates and plugins (SHA-256) the run
    /// would use; the lock lands in the record's provenance. For CI.
    #[arg(long)]
    pub locked: bool,
    /// Print the run summary as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

pub(super) async fn run_workflow(command: RunCommand) -> Result<(), u8> {
    let RunCommand {
        workflow,
        mut args,
        mut out,
        json,
        quiet,
        resume,
        force,
        plan,
        shard,
        shard_host,
        max_parallel,
        locked,
    } = command;
    let PlanArgs {
        runs,
        warmup,
        include_cold,
    } = plan;
    let mut earlier_run = None;
    let (path, resume) = match resume {
        Some(dir) => {
            if dir.join("sweep.json").is_file() {
                return Err(fail(
                    2,
                    &format!(
                        "error: {} is a sweep's record; a sweep continues by running it again\n  = help: `chimera run <workflow> --out {}` keeps the cells that finished and runs the rest",
                        dir.display(),
                        dir.display()
                    ),
                ));
            }
            let text = std::fs::read_to_string(dir.join("run.json")).map_err(|e| {
                fail(2, &format!("error: cannot resume {}: no readable run.json ({e}); pass the directory of an earlier `chimera run`", dir.display()))
            })?;
            let invocation: Invocation = serde_json::from_str(&text).map_err(|e| {
                fail(
                    2,
                    &format!(
                        "error: cannot resume {}: run.json is not valid: {e}",
                        dir.display()
                    ),
                )
            })?;
            if let Some(plan) = &invocation.part_of_plan {
                return Err(fail(
                    2,
                    &format!(
                        "error: cannot resume {}: it is one run of a plan ({plan}); a plan's runs are compared with each other, so run the workflow again",
                        dir.display()
                    ),
                ));
            }
            let earlier = Resume::load(&dir).map_err(|e| fail(2, &format!("error: {e}")))?;
            args.input = invocation.input.clone();
            args.backend = invocation.backend.clone();
            args.model = invocation.model.clone();
            args.set = invocation.set.clone();
            out = Some(dir.clone());
            let path = invocation.workflow.clone();
            earlier_run = Some((dir, invocation));
            (path, Some(earlier))
        }
        None => (workflow.unwrap_or_default(), None),
    };
    let host = host()?;
    let search = earlier_run.as_ref().and_then(|(_, i)| i.search.as_ref());
    let checked = prepare(&path, &host, Some(&args), search).await?;
    let mut provenance = checked.provenance()?;
    if locked {
        provenance.lock = Some(super::lock::check(&checked)?);
    }
    let backends = backends(&args);
    identify_models(&mut provenance, &backends, &checked.workflow).await;
    if let Some((dir, before)) = &earlier_run {
        let changes = before.changes(&provenance, |name| {
            checked.templates.locate(name).map(template_file)
        });
        if !changes.is_empty() && !force {
            let list: Vec<String> = changes.iter().map(|c| format!("  - {c}")).collect();
            return Err(fail(
                2,
                &format!(
                    "error: cannot resume {}: since the run began\n{}\n  = help: restore what changed, start the workflow again without `--resume`, or add `--force` to resume with the changes",
                    dir.display(),
                    list.join("\n")
                ),
            ));
        }
        for change in &changes {
            eprintln!("warning: resuming although {change}");
        }
    }
    let mut checked = checked;
    if let Some(m) = max_parallel {
        checked.workflow.max_parallel = Some(m);
        for (_, side) in &mut checked.sides {
            side.workflow.max_parallel = Some(m);
        }
    }
    if let Some(runs) = runs {
        checked.workflow.plan.runs = runs;
    }
    if let Some(warmup) = warmup {
        checked.workflow.plan.warmup = warmup;
    }
    let plan = checked.workflow.plan.clone();
    if plan.matrix.is_none() && (shard.is_some() || !shard_host.is_empty()) {
        return Err(fail(
            2,
            &format!(
                "error: `--shard` and `--shard-host` split a sweep's cells, and `{}` has no `matrix:`",
                path.display()
            ),
        ));
    }
    let planned = resume.is_none() && (plan.runs > 1 || plan.warmup > 0 || plan.compare.is_some());
    let (stop, interrupt) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "interrupted: stopping the current stage and writing the record (Ctrl-C again to quit now)"
            );
            let _ = stop.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let invocation = Invocation {
        workflow: std::path::absolute(&path).unwrap_or(path.clone()),
        input: std::path::absolute(&args.input).unwrap_or(args.input.clone()),
        backend: args.backend.clone(),
        model: args.model.clone(),
        set: args.set.clone(),
        workflow_sha256: Some(provenance.workflow.sha256.clone()),
        search: Some(SearchPaths {
            templates: provenance.template_path.clone(),
            plugins: provenance.plugin_path.clone(),
        }),
        templates: template_files(&checked.templates),
        part_of_plan: None,
    };
    if plan.matrix.is_some() {
        let shard = shard
            .map(|s| super::shard::parse(&s, |k| std::env::var(k).ok()))
            .transpose()
            .map_err(|e| fail(2, &format!("error: {e}")))?;
        let root = repeat::plan_dir(out.as_deref(), &checked.workflow.name)?;
        let shared = repeat::Shared {
            host: &host,
            backends,
            input: args.input.clone(),
            quiet: quiet || json,
            interrupt,
            invocation: serde_json::to_value(&invocation).unwrap_or_default(),
            heading: String::new(),
        };
        let options = super::sweep::SweepOptions {
            shard,
            shard_hosts: shard_host,
            include_cold,
            json,
        };
        let result = super::sweep::run_sweep(&checked, shared, &root, &options).await;
        release_at_exit(host);
        crate::history::note_finished(root.path());
        return result;
    }
    if planned {
        let root = repeat::plan_dir(out.as_deref(), &checked.workflow.name)?;
        let mut sides = Vec::new();
        let side_checks = std::mem::take(&mut checked.sides);
        if side_checks.is_empty() {
            sides.push(repeat::Side {
                label: None,
                checked,
                provenance,
            });
        } else {
            for (label, mut side) in side_checks {
                side.workflow.plan = plan.clone();
                let mut side_provenance = side.provenance()?;
                side_provenance.lock.clone_from(&provenance.lock);
                identify_models(&mut side_provenance, &backends, &side.workflow).await;
                sides.push(repeat::Side {
                    label: Some(label),
                    checked: side,
                    provenance: side_provenance,
                });
            }
        }
        let invocation = Invocation {
            part_of_plan: Some(root.path().display().to_string()),
            ..invocation
        };
        let shared = repeat::Shared {
            host: &host,
            backends,
            input: args.input.clone(),
            quiet: quiet || json,
            interrupt,
            invocation: serde_json::to_value(&invocation).unwrap_or_default(),
            heading: String::new(),
        };
        let result = repeat::run_plan(sides, shared, &root, json, include_cold).await;
        release_at_exit(host);
        crate::history::note_finished(root.path());
        return result;
    }
    let Checked {
        workflow,
        templates,
        ..
    } = checked;
    let options = RunOptions {
        input: args.input.clone(),
        out,
        backends,
        observer: Arc::new(Progress::new(quiet || json)),
        stop_after: None,
        interrupt: Some(interrupt),
        resume,
        invocation: serde_json::to_value(&invocation).unwrap_or_default(),
        templates,
        provenance,
    };
    let outcome = engine::run(&workflow, &host, &options)
        .await
        .map_err(|e| engine_failure(&e))?;
    release_at_exit(host);
    crate::history::note_finished(&outcome.dir);
    if json {
        let summary = serde_json::json!({ "run_dir": outcome.dir, "metrics": outcome.metrics });
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        print!("{}", timing_table(&outcome.metrics));
        for report in &outcome.metrics.reports {
            println!("report: {}", outcome.dir.join(report).display());
        }
        let page = outcome.dir.join("report.html");
        if page.is_file() {
            println!("page: {} (open it in a browser)", page.display());
        }
        println!("run record: {}", outcome.dir.display());
    }
    for stage in outcome.metrics.stages.iter().filter(|s| s.error.is_some()) {
        if let Some(error) = &stage.error {
            eprintln!(
                "error: stage `{}/{}` failed: {error}",
                stage.agent, stage.stage
            );
        }
    }
    for error in &outcome.metrics.report_errors {
        eprintln!("error: report of {error}");
    }
    match outcome.metrics.status {
        RunStatus::Ok => Ok(()),
        RunStatus::Failed => Err(1),
        RunStatus::Interrupted => {
            eprintln!(
                "the run was interrupted; continue it with `chimera run --resume {}`",
                outcome.dir.display()
            );
            Err(130)
        }
    }
}

pub(super) async fn render(
    path: &std::path::Path,
    stage: &str,
    agent: Option<&str>,
    args: &RunArgs,
) -> Result<(), u8> {
    let host = host()?;
    let Checked {
        workflow,
        templates,
        ..
    } = prepare(path, &host, Some(args), None).await?;
    let matches: Vec<_> = workflow
        .stages()
        .filter(|(a, s)| s.id == stage && agent.is_none_or(|id| a.id == id))
        .map(|(a, _)| a.id.clone())
        .collect();
    let agent = match matches.as_slice() {
        [one] => one.clone(),
        [] => {
            let ids: Vec<String> = workflow
                .stages()
                .map(|(a, s)| format!("`{}/{}`", a.id, s.id))
                .collect();
            return Err(fail(
                2,
                &format!(
                    "error: no stage `{stage}` in `{}`; stages: {}",
                    workflow.name,
                    ids.join(", ")
                ),
            ));
        }
        _ => {
            return Err(fail(
                2,
                &format!(
                    "error: several agents have a stage `{stage}`; choose one with `--agent`: {}",
                    matches.join(", ")
                ),
            ));
        }
    };
    let scratch = tempfile::tempdir()
        .map_err(|e| fail(1, &format!("error: cannot create a scratch directory: {e}")))?;
    let dry: Arc<dyn crate::llm::Backend> = Arc::new(engine::DryRun);
    let options = RunOptions {
        input: args.input.clone(),
        out: Some(scratch.path().to_path_buf()),
        backends: engine::Backends::all(dry),
        observer: Arc::new(engine::Silent),
        stop_after: Some((agent.clone(), stage.to_owned())),
        interrupt: None,
        resume: None,
        invocation: serde_json::Value::Null,
        templates,
        provenance: Provenance::default(),
    };
    let outcome = engine::run(&workflow, &host, &options)
        .await
        .map_err(|e| engine_failure(&e))?;
    release_at_exit(host);
    if let Some(failed) = outcome.metrics.stages.iter().find(|s| s.error.is_some()) {
        let error = failed
            .error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(fail(
            1,
            &format!(
                "error: stage `{}/{}` failed before its prompt was complete: {error}",
                failed.agent, failed.stage
            ),
        ));
    }
    let calls: Vec<_> = outcome
        .calls
        .iter()
        .filter(|c| c.agent == agent && c.stage == stage)
        .collect();
    if calls.is_empty() {
        return Err(fail(
            1,
            &format!("error: stage `{agent}/{stage}` made no model call, so it has no prompt"),
        ));
    }
    for (i, call) in calls.iter().enumerate() {
        if calls.len() > 1 {
            println!("=== call {} of {} ===", i + 1, calls.len());
        }
        for message in &call.messages {
            println!("--- {} ---", message.role);
            println!("{}", message.content.trim_end());
        }
    }
    Ok(())
}
