//! Scheduling: agents in order, each agent's stages in order, each stage in
//! its own sandbox with the outputs of the agent's earlier stages as input.
//! A failed stage skips the rest of its agent; other agents still run.

use crate::plugin::{
    Grant, PluginHost, PluginSource, Resolver, StageFailure, StageRequest, StageServices,
};
use crate::record::{
    METRICS_SCHEMA_VERSION, RunDir, RunMetrics, RunStatus, StageMetrics, StageStatus, ms,
};
use crate::template::Templates;
use crate::workflow::{Diagnostic, Stage, Workflow};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Failures that stop a run before or outside any stage.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("input directory {} does not exist\n  = help: pass the directory that holds the data, e.g. `--input ./sample-data`", .0.display())]
    MissingInput(PathBuf),
    #[error("cannot write the run record in {}: {source}", path.display())]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a run needs besides the workflow.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The directory grants are relative to.
    pub input: PathBuf,
    /// The run directory; a new `runs/<timestamp>-<workflow>` under the current directory when `None`.
    pub out: Option<PathBuf>,
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub metrics: RunMetrics,
}

/// Checks what `Workflow::load` cannot: plugins resolve and templates exist.
pub fn check_references(
    workflow: &Workflow,
    resolver: &Resolver,
    templates: &Templates,
) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let mut template = |name: &crate::workflow::Located<String>, what: &str| {
        if !templates.exists(&name.value) {
            let search = templates
                .search_path()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            problems.push(
                Diagnostic::new(
                    format!("{what} template `{}` not found", name.value),
                    name.pos,
                )
                .help(format!("create it in one of: {search}")),
            );
        }
    };
    for agent in &workflow.agents {
        if let Some(persona) = &agent.persona {
            template(persona, "persona");
        }
        for stage in &agent.stages {
            if let Some(prompt) = &stage.prompt {
                template(prompt, "prompt");
            }
        }
    }
    for (_, stage) in workflow.stages() {
        if let Err(e) = resolver.resolve(&stage.plugin.value, &workflow.dir) {
            problems.push(Diagnostic::new(e.to_string(), stage.plugin.pos).help(e.help()));
        }
    }
    problems.sort_by_key(|d| d.pos.map(|p| (p.line, p.column)));
    problems
}

/// Resolves a stage's grants to host directories, refusing any that lead
/// outside the input directory (through a symlink, say). Missing directories
/// are passed on by name only, so the plugin can report them.
fn grants(input: &Path, stage: &Stage) -> Result<Vec<Grant>, StageFailure> {
    let root = input
        .canonicalize()
        .map_err(|e| StageFailure::Failed(format!("input directory {}: {e}", input.display())))?;
    let mut out = Vec::new();
    for name in &stage.read {
        let host = input.join(name);
        let Ok(real) = host.canonicalize() else {
            tracing::info!(stage = %stage.id, grant = %name, "granted directory does not exist; the plugin is told it is missing");
            out.push(Grant {
                host: None,
                guest: name.clone(),
            });
            continue;
        };
        if !real.starts_with(&root) {
            return Err(StageFailure::Failed(format!(
                "read grant `{name}` resolves to {} outside the input directory; grants cannot follow links out",
                real.display()
            )));
        }
        if !real.is_dir() {
            return Err(StageFailure::Failed(format!(
                "read grant `{name}` is not a directory"
            )));
        }
        out.push(Grant {
            host: Some(real),
            guest: name.clone(),
        });
    }
    Ok(out)
}

/// Runs every agent of `workflow` and writes the run record.
///
/// # Errors
/// When the input is missing or the record cannot be written; stage failures
/// are recorded in the outcome, not returned.
pub async fn run(
    workflow: &Workflow,
    host: &PluginHost,
    options: &RunOptions,
) -> Result<RunOutcome, EngineError> {
    if !options.input.is_dir() {
        return Err(EngineError::MissingInput(options.input.clone()));
    }
    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    let dir = match &options.out {
        Some(out) => RunDir::at(out.clone()),
        None => RunDir::create(Path::new("runs"), &workflow.name, started),
    }
    .map_err(|source| EngineError::Record {
        path: options.out.clone().unwrap_or_else(|| "runs".into()),
        source,
    })?;
    let record_err = |source| EngineError::Record {
        path: dir.path().to_path_buf(),
        source,
    };

    let resolver = Resolver::for_workflow(Some(&workflow.dir));
    let templates = Arc::new(Templates::new(Templates::search_path_for(&workflow.dir)));
    let mut metrics = RunMetrics {
        schema_version: METRICS_SCHEMA_VERSION,
        chimera_version: env!("CARGO_PKG_VERSION"),
        workflow: workflow.name.clone(),
        workflow_file: workflow.path.display().to_string(),
        input_dir: options.input.display().to_string(),
        started_at: started.to_string(),
        finished_at: None,
        status: RunStatus::Ok,
        total_ms: 0.0,
        stages: Vec::new(),
    };

    for agent in &workflow.agents {
        let mut outputs = Map::new();
        let mut failed = false;
        for stage in &agent.stages {
            let span = tracing::info_span!("stage", agent = %agent.id, stage = %stage.id, plugin = %stage.plugin.value);
            let _guard = span.enter();
            let mut record = StageMetrics {
                agent: agent.id.clone(),
                stage: stage.id.clone(),
                plugin: stage.plugin.value.clone(),
                plugin_origin: String::new(),
                status: StageStatus::Skipped,
                error: None,
                wall_ms: 0.0,
                load_ms: 0.0,
                load_kind: None,
                instantiate_ms: 0.0,
                guest_ms: 0.0,
                llm_ms: 0.0,
                output_bytes: 0,
            };
            if !failed {
                let stage_clock = Instant::now();
                let result = run_stage(
                    workflow,
                    host,
                    &resolver,
                    &templates,
                    options,
                    agent,
                    stage,
                    &outputs,
                    &mut record,
                )
                .await;
                record.wall_ms = ms(stage_clock.elapsed());
                match result {
                    Ok(output) => {
                        let text = serde_json::to_vec_pretty(&output).unwrap_or_default();
                        record.output_bytes = text.len();
                        dir.write(&format!("outputs/{}/{}.json", agent.id, stage.id), &text)
                            .map_err(record_err)?;
                        record.status = StageStatus::Ok;
                        outputs.insert(stage.id.clone(), output);
                        tracing::info!(wall_ms = record.wall_ms, "stage finished");
                    }
                    Err(failure) => {
                        tracing::error!(error = %failure, "stage failed");
                        record.status = StageStatus::Failed;
                        record.error = Some(failure);
                        metrics.status = RunStatus::Failed;
                        failed = true;
                    }
                }
            }
            metrics.stages.push(record);
            metrics.total_ms = ms(clock.elapsed());
            dir.write_json("metrics.json", &metrics)
                .map_err(record_err)?;
        }
    }
    metrics.total_ms = ms(clock.elapsed());
    metrics.finished_at = Some(jiff::Timestamp::now().to_string());
    dir.write_json("metrics.json", &metrics)
        .map_err(record_err)?;
    Ok(RunOutcome {
        dir: dir.path().to_path_buf(),
        metrics,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_stage(
    workflow: &Workflow,
    host: &PluginHost,
    resolver: &Resolver,
    templates: &Arc<Templates>,
    options: &RunOptions,
    agent: &crate::workflow::Agent,
    stage: &Stage,
    outputs: &Map<String, Value>,
    record: &mut StageMetrics,
) -> Result<Value, StageFailure> {
    let source: PluginSource = resolver
        .resolve(&stage.plugin.value, &workflow.dir)
        .map_err(|e| StageFailure::Failed(e.to_string()))?;
    record.plugin_origin = source.origin();
    let loaded = host
        .load(&source)
        .await
        .map_err(|e| StageFailure::Failed(e.to_string()))?;
    record.load_ms = ms(loaded.load_time);
    record.load_kind = Some(loaded.kind);
    let request = StageRequest {
        agent: agent.id.clone(),
        stage: stage.id.clone(),
        config: stage.config.clone(),
        inputs: Value::Object(outputs.clone()),
        read: grants(&options.input, stage)?,
        prompt_template: stage.prompt.as_ref().map(|p| p.value.clone()),
        persona_template: agent.persona.as_ref().map(|p| p.value.clone()),
        timeout: stage.timeout,
        memory_limit: stage.memory_limit,
    };
    let services = StageServices {
        llm: None,
        templates: Some(templates.clone()),
        label: format!("{}/{}", agent.id, stage.id),
    };
    let run = host.run(&loaded.prepared, &request, services).await;
    record.instantiate_ms = ms(run.instantiate);
    record.guest_ms = ms(run.guest);
    record.llm_ms = ms(run.llm);
    if !run.stderr.is_empty() {
        tracing::debug!(stderr = %run.stderr, "plugin stderr");
    }
    run.result
}
