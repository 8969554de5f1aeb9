//! A run: its record set up, its stages scheduled as a graph
//! ([`scheduler`]: agents concurrently, each agent's stages in order,
//! `needs:` between them), each stage in its own sandbox ([`stage`]), and
//! the record finished. A failed stage skips only what depends on it.

mod dry_run;
mod gateway;
mod grants;
mod scheduler;
mod stage;

pub use dry_run::DryRun;

use crate::llm::{Backend, CallRecord};
use crate::plugin::{PluginHost, Resolver};
use crate::record::calls::{CallEntry, CallLog, call_summary};
use crate::record::checkpoint::Checkpoint;
use crate::record::concurrency::Concurrency;
use crate::record::provenance::TemplateFile;
use crate::record::resume::Resume;
use crate::record::{METRICS_SCHEMA_VERSION, RunDir, RunMetrics, RunStatus, StageMetrics, ms};
use crate::template::Templates;
use crate::workflow::BackendKind;
use crate::workflow::Workflow;
use serde_json::Value;
use stage::{StageContext, upcoming_plugin};
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

/// Hears what a run does as it happens (progress bars, logs). Every method
/// has a do-nothing default.
pub trait Observer: Send + Sync {
    /// A stage is about to load its plugin.
    fn stage_started(&self, _agent: &str, _stage: &str) {}
    /// A piece of model output streamed in.
    fn token(&self, _agent: &str, _stage: &str, _piece: &str) {}
    /// An LLM call ended (successfully or not).
    fn call_finished(&self, _agent: &str, _stage: &str, _record: &CallRecord) {}
    /// A stage ended, or was skipped (status `skipped`, never started); its
    /// metrics are final.
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
    /// The state of every `hosts:` pool, shared by every run of the process.
    pub pools: Arc<crate::llm::pool::HostPools>,
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
            pools: Arc::default(),
        }
    }

    /// One backend standing in for all three (dry runs, tests).
    pub fn all(backend: Arc<dyn Backend>) -> Self {
        Self {
            ollama: backend.clone(),
            openai: backend.clone(),
            embedded: backend,
            pools: Arc::default(),
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
    let resolver = Resolver::for_workflow(Some(&workflow.dir)).with_sources(&workflow.source_roots);
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
        concurrency: None,
        hosts: Vec::new(),
    };
    let pooled: Vec<String> = {
        let mut urls: Vec<String> = workflow
            .stages()
            .filter_map(|(_, s)| s.model.as_ref())
            .flat_map(|m| m.hosts.iter().map(|h| h.url.clone()))
            .collect();
        urls.sort();
        urls.dedup();
        urls
    };
    let pools_before = options.backends.pools.usage(&pooled);

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
    let context = StageContext {
        workflow,
        host,
        resolver: &resolver,
        templates: &templates,
        options,
        calls: &calls,
        dir: &dir,
    };
    let mut schedule =
        scheduler::Schedule::new(&context, &mut metrics, &mut checkpoint, clock, started);
    schedule.run().await.map_err(record_err)?;
    drop(schedule);
    metrics.concurrency = Concurrency::of(&metrics.stages, workflow.max_parallel);
    metrics.hosts = crate::llm::pool::since(
        &pools_before,
        options.backends.pools.usage(&pooled),
        ms(clock.elapsed()),
    );
    crate::record::concurrency::write(&dir, &mut metrics, &calls.entries()).map_err(record_err)?;
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
    // The page shows the record as metrics.json will hold it; a page that
    // cannot be made is noted there, and the run stands.
    if let Ok(value) = serde_json::to_value(&metrics)
        && let Err(e) = crate::record::html::write_run_page(dir.path(), &value, false)
    {
        tracing::warn!(error = %e, "report.html not written");
        metrics.report_errors.push(format!("report.html: {e}"));
    }
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
