//! Scheduling: agents in order, each agent's stages in order, each stage in
//! its own sandbox with the outputs of the agent's earlier stages as input.
//! A failed stage skips the rest of its agent; other agents still run.

mod dry_run;
mod gateway;
mod grants;

pub use dry_run::DryRun;

use crate::llm::{Backend, CallRecord};
use crate::plugin::{
    LlmGateway, PluginHost, PluginSource, Resolver, StageFailure, StageRequest, StageServices,
};
use crate::record::calls::{CallEntry, CallLog, call_summary};
use crate::record::checkpoint::Checkpoint;
use crate::record::provenance::TemplateFile;
use crate::record::resume::Resume;
use crate::record::{
    METRICS_SCHEMA_VERSION, RunDir, RunMetrics, RunStatus, StageMetrics, StageStatus, ms,
};
use crate::template::Templates;
use crate::workflow::BackendKind;
use crate::workflow::{Stage, Workflow};
use gateway::StageGateway;
use grants::{grants, write_grant, written_files};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

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

/// Hears what a run does as it happens (progress bars, logs). Every method
/// has a do-nothing default.
pub trait Observer: Send + Sync {
    /// A stage is about to load its plugin.
    fn stage_started(&self, _agent: &str, _stage: &str) {}
    /// A piece of model output streamed in.
    fn token(&self, _agent: &str, _stage: &str, _piece: &str) {}
    /// An LLM call ended (successfully or not).
    fn call_finished(&self, _agent: &str, _stage: &str, _record: &CallRecord) {}
    /// A stage ended; its metrics are final.
    fn stage_finished(&self, _metrics: &StageMetrics) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;

impl Observer for Silent {}

/// The LLM backends a run can use, created once and shared by every stage
/// (the embedded backend loads each model once per process).
#[derive(Clone)]
pub struct Backends {
    pub ollama: Arc<dyn Backend>,
    pub openai: Arc<dyn Backend>,
    pub embedded: Arc<dyn Backend>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends").finish_non_exhaustive()
    }
}

impl Default for Backends {
    fn default() -> Self {
        Self::new(crate::llm::Timeouts::default())
    }
}

impl Backends {
    /// The real backends, with these network timeouts.
    pub fn new(timeouts: crate::llm::Timeouts) -> Self {
        Self {
            ollama: Arc::new(crate::llm::OllamaBackend::new(timeouts)),
            openai: Arc::new(crate::llm::OpenAiBackend::new(timeouts)),
            embedded: Arc::new(crate::llm::EmbeddedBackend::new()),
        }
    }

    /// One backend standing in for all three (dry runs, tests).
    pub fn all(backend: Arc<dyn Backend>) -> Self {
        Self {
            ollama: backend.clone(),
            openai: backend.clone(),
            embedded: backend,
        }
    }

    /// The backend for `kind`.
    pub fn get(&self, kind: BackendKind) -> Arc<dyn Backend> {
        match kind {
            BackendKind::Ollama => self.ollama.clone(),
            BackendKind::Openai => self.openai.clone(),
            BackendKind::Embedded => self.embedded.clone(),
        }
    }
}

/// What a run needs besides the workflow.
#[derive(Clone)]
pub struct RunOptions {
    /// The directory grants are relative to.
    pub input: PathBuf,
    /// The run directory; a new `runs/<timestamp>-<workflow>` under the current directory when `None`.
    pub out: Option<PathBuf>,
    pub backends: Backends,
    pub observer: Arc<dyn Observer>,
    /// Stop after this (agent, stage) has run; the rest of the workflow is not run.
    pub stop_after: Option<(String, String)>,
    /// Becomes `true` to interrupt the run (Ctrl-C): in-flight calls are
    /// dropped, the record is written, the status is `interrupted`.
    pub interrupt: Option<tokio::sync::watch::Receiver<bool>>,
    /// Completed stages of an earlier run in the same directory, reused as they are.
    pub resume: Option<Resume>,
    /// How the run was asked for, written to `run.json` so `--resume` can repeat it.
    pub invocation: Value,
    /// The run's templates: the environment the workflow was checked
    /// against, so what runs is what was checked.
    pub templates: Arc<Templates>,
    /// What produced the run (the templates rendered are added as they load).
    pub provenance: crate::record::provenance::Provenance,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("input", &self.input)
            .field("out", &self.out)
            .finish_non_exhaustive()
    }
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub metrics: RunMetrics,
    /// Every LLM call, with its messages.
    pub calls: Vec<CallEntry>,
}

/// The plugin of the first stage after `after` (or of the run's first stage,
/// for `None`) that will run: not carried over by `--resume`, not past
/// `stop_after`. It is prepared in the background — the first stage's while
/// the run directory is set up, each next stage's while the one before runs
/// — so its load overlaps other work instead of adding to the run's time.
fn upcoming_plugin(
    workflow: &Workflow,
    resolver: &Resolver,
    resume: Option<&Resume>,
    after: Option<(&str, &str)>,
) -> Option<PluginSource> {
    let mut stages = workflow.stages();
    if let Some((agent, stage)) = after {
        stages.find(|(a, s)| a.id == agent && s.id == stage)?;
    }
    let (_, next) = stages.find(|(a, s)| !resume.is_some_and(|r| r.completed(&a.id, &s.id)))?;
    resolver.resolve(&next.plugin.value, &workflow.dir).ok()
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
    let resolver = Resolver::for_workflow(Some(&workflow.dir));
    // Starting it earlier, while `chimera run` checks the workflow, measured
    // 0.8–1.1 ms slower: the load then competes with the checks for the
    // two cores.
    if let Some(first) = upcoming_plugin(workflow, &resolver, options.resume.as_ref(), None) {
        host.prefetch(&first);
    }
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

    let templates = options.templates.clone();
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
        calls: Vec::new(),
        reports: Vec::new(),
        report_errors: Vec::new(),
        provenance: crate::record::provenance::Provenance {
            templates: template_files(&templates),
            ..options.provenance.clone()
        },
    };

    dir.write_json("run.json", &options.invocation)
        .map_err(record_err)?;
    let kept = options
        .resume
        .as_ref()
        .map(|r| r.calls().to_vec())
        .unwrap_or_default();
    let mut checkpoint =
        Checkpoint::start(&dir, &kept, options.resume.is_some(), clock).map_err(record_err)?;
    metrics.calls = kept.iter().map(call_summary).collect();
    let calls = Arc::new(CallLog::with(kept));
    let mut interrupted = false;
    let last_stage = workflow.stages().last().map(|(a, s)| (&a.id, &s.id));
    let reporting = workflow
        .agents
        .iter()
        .filter(|a| a.report.is_some())
        .count();
    for agent in &workflow.agents {
        let mut outputs = Map::new();
        let mut failed = false;
        let agent_clock = Instant::now();
        let first_stage = metrics.stages.len();
        for stage in &agent.stages {
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
                resumed: false,
                files: Vec::new(),
            };
            let earlier = if failed || interrupted {
                None
            } else {
                options
                    .resume
                    .as_ref()
                    .and_then(|r| r.take(&agent.id, &stage.id))
            };
            if let Some((earlier, output)) = earlier {
                record = earlier;
                outputs.insert(stage.id.clone(), output);
            } else if !failed && !interrupted {
                options.observer.stage_started(&agent.id, &stage.id);
                let stage_clock = Instant::now();
                let context = StageContext {
                    workflow,
                    host,
                    resolver: &resolver,
                    templates: &templates,
                    options,
                    calls: &calls,
                    dir: &dir,
                };
                let span = tracing::info_span!("stage", agent = %agent.id, stage = %stage.id, plugin = %stage.plugin.value);
                let work =
                    run_stage(&context, agent, stage, &outputs, &mut record).instrument(span);
                let result = match options.interrupt.clone() {
                    Some(mut interrupt) => tokio::select! {
                        result = work => result,
                        _ = interrupt.wait_for(|stop| *stop) => Err(StageFailure::Interrupted),
                    },
                    None => work.await,
                };
                record.wall_ms = ms(stage_clock.elapsed());
                match result {
                    Ok(output) => {
                        let text = serde_json::to_vec_pretty(&output).unwrap_or_default();
                        record.output_bytes = text.len();
                        dir.write(&format!("outputs/{}/{}.json", agent.id, stage.id), &text)
                            .map_err(record_err)?;
                        record.status = StageStatus::Ok;
                        outputs.insert(stage.id.clone(), output);
                        tracing::info!(agent = %agent.id, stage = %stage.id, wall_ms = record.wall_ms, "stage finished");
                    }
                    Err(failure) => {
                        // The command line prints the failure once, from the
                        // record; the log has it with -v.
                        tracing::info!(agent = %agent.id, stage = %stage.id, error = %failure, "stage failed");
                        if matches!(failure, StageFailure::Interrupted) {
                            interrupted = true;
                            metrics.status = RunStatus::Interrupted;
                        } else if metrics.status == RunStatus::Ok {
                            metrics.status = RunStatus::Failed;
                        }
                        record.status = StageStatus::Failed;
                        record.error = Some(failure);
                        failed = true;
                    }
                }
            }
            options.observer.stage_finished(&record);
            metrics.stages.push(record);
            metrics.total_ms = ms(clock.elapsed());
            let entries = calls.entries();
            if checkpoint
                .append_calls(&dir, &entries)
                .map_err(record_err)?
            {
                metrics.calls = entries.iter().map(call_summary).collect();
            }
            if options
                .stop_after
                .as_ref()
                .is_some_and(|(a, s)| *a == agent.id && *s == stage.id)
            {
                return finish(dir, metrics, clock, calls, checkpoint, &templates);
            }
            // After the last stage, `finish` writes metrics.json right away.
            if last_stage != Some((&agent.id, &stage.id)) {
                checkpoint.metrics(&dir, &metrics).map_err(record_err)?;
            }
        }
        if let Some(template) = &agent.report {
            let entries = calls.entries();
            let agent_calls: Vec<&CallEntry> =
                entries.iter().filter(|c| c.agent == agent.id).collect();
            let stage_records: Vec<&StageMetrics> = metrics.stages[first_stage..].iter().collect();
            let context = crate::record::report::context(
                &workflow.name,
                agent,
                started,
                agent_clock.elapsed().as_secs_f64(),
                &stage_records,
                &outputs,
                &agent_calls,
            );
            let name = if reporting == 1 {
                "report.md".to_owned()
            } else {
                format!("report-{}.md", agent.id)
            };
            match templates.render(&template.value, &context) {
                Ok(text) => {
                    dir.write(&name, text.as_bytes()).map_err(record_err)?;
                    metrics.reports.push(name);
                }
                Err(e) => {
                    tracing::info!(agent = %agent.id, error = %e, "report template failed");
                    metrics
                        .report_errors
                        .push(format!("agent `{}`: {e}", agent.id));
                    if metrics.status == RunStatus::Ok {
                        metrics.status = RunStatus::Failed;
                    }
                }
            }
        }
    }
    finish(dir, metrics, clock, calls, checkpoint, &templates)
}

/// Stamps the end of the run and writes the final `metrics.json` (and an
/// empty calls.jsonl when no stage called a model).
fn finish(
    dir: RunDir,
    mut metrics: RunMetrics,
    clock: Instant,
    calls: Arc<CallLog>,
    mut checkpoint: Checkpoint,
    templates: &Templates,
) -> Result<RunOutcome, EngineError> {
    metrics.total_ms = ms(clock.elapsed());
    metrics.provenance.templates = template_files(templates);
    metrics.finished_at = Some(jiff::Timestamp::now().to_string());
    let entries = calls.entries();
    checkpoint
        .append_calls(&dir, &entries)
        .and_then(|_| dir.write_json("metrics.json", &metrics).map(drop))
        .map_err(|source| EngineError::Record {
            path: dir.path().to_path_buf(),
            source,
        })?;
    Ok(RunOutcome {
        dir: dir.path().to_path_buf(),
        metrics,
        calls: entries,
    })
}

/// The templates loaded so far, as the record keeps them.
pub fn template_files(templates: &Templates) -> Vec<TemplateFile> {
    templates.loaded().into_iter().map(template_file).collect()
}

/// A resolved template as the record keeps it.
pub fn template_file(t: crate::template::Resolved) -> TemplateFile {
    TemplateFile {
        name: t.name,
        file: t.file,
        root: t.root,
        sha256: t.sha256,
    }
}

/// What every stage of a run shares.
struct StageContext<'a> {
    workflow: &'a Workflow,
    host: &'a PluginHost,
    resolver: &'a Resolver,
    templates: &'a Arc<Templates>,
    options: &'a RunOptions,
    calls: &'a Arc<CallLog>,
    dir: &'a RunDir,
}

async fn run_stage(
    cx: &StageContext<'_>,
    agent: &crate::workflow::Agent,
    stage: &Stage,
    outputs: &Map<String, Value>,
    record: &mut StageMetrics,
) -> Result<Value, StageFailure> {
    let StageContext {
        workflow,
        host,
        resolver,
        templates,
        options,
        calls,
        dir,
    } = *cx;
    let source: PluginSource = resolver
        .resolve(&stage.plugin.value, &workflow.dir)
        .map_err(|e| StageFailure::Failed(e.to_string()))?;
    record.plugin_origin = source.origin();
    let loaded = host
        .load(&source)
        .await
        .map_err(|e| StageFailure::Failed(e.to_string()))?;
    let last = options
        .stop_after
        .as_ref()
        .is_some_and(|(a, s)| *a == agent.id && *s == stage.id);
    let next = Some((agent.id.as_str(), stage.id.as_str()));
    if let Some(next) = upcoming_plugin(workflow, resolver, options.resume.as_ref(), next)
        && !last
    {
        host.prefetch(&next);
    }
    record.load_ms = ms(loaded.load_time);
    record.load_kind = Some(loaded.kind);
    let request = StageRequest {
        agent: agent.id.clone(),
        stage: stage.id.clone(),
        config: stage.config.clone(),
        inputs: Value::Object(outputs.clone()),
        read: grants(&options.input, stage)?,
        write: write_grant(dir.path(), agent, stage)?,
        write_limit: stage.write_limit,
        prompt_template: stage.prompt.as_ref().map(|p| p.value.clone()),
        persona_template: agent.persona.as_ref().map(|p| p.value.clone()),
        timeout: stage.timeout,
        memory_limit: stage.memory_limit,
    };
    let llm = stage.model.as_ref().map(|model| {
        Arc::new(StageGateway {
            backend: options.backends.get(model.backend),
            model: model.clone(),
            agent: agent.id.clone(),
            stage: stage.id.clone(),
            log: calls.clone(),
            observer: options.observer.clone(),
            allowed_models: stage.allowed_models.clone(),
            max_calls: stage.max_llm_calls,
            max_tokens: stage.max_llm_tokens,
            retry: crate::llm::RetryPolicy::default(),
            used: std::sync::Mutex::new((0, 0)),
        }) as Arc<dyn LlmGateway>
    });
    let services = StageServices {
        llm,
        templates: Some(templates.clone()),
        label: format!("{}/{}", agent.id, stage.id),
    };
    let run = host.run(&loaded.prepared, &request, services).await;
    record.files = written_files(dir.path(), &run.written);
    record.instantiate_ms = ms(run.instantiate);
    record.guest_ms = ms(run.guest);
    record.llm_ms = ms(run.llm);
    if !run.stderr.is_empty() {
        tracing::debug!(stderr = %run.stderr, "plugin stderr");
    }
    run.result
}
