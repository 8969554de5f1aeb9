//! One stage: its plugin resolved and loaded (the next one prefetched),
//! its grants, its LLM gateway, and its run in the sandbox.

use super::RunOptions;
use super::gateway::StageGateway;
use super::grants::{grants, write_grant, written_files};
use crate::plugin::{
    LlmGateway, PluginHost, PluginSource, Resolver, StageFailure, StageRequest, StageServices,
};
use crate::record::calls::CallLog;
use crate::record::resume::Resume;
use crate::record::{RunDir, StageMetrics, ms};
use crate::template::Templates;
use crate::workflow::{Stage, Workflow};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The plugin of the first stage after `after` (or of the run's first stage,
/// for `None`) that will run: not carried over by `--resume`, not past
/// `stop_after`. It is prepared in the background — the first stage's while
/// the run directory is set up, each next stage's while the one before runs
/// — so its load overlaps other work instead of adding to the run's time.
pub(super) fn upcoming_plugin(
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

/// What every stage of a run shares.
pub(super) struct StageContext<'a> {
    pub workflow: &'a Workflow,
    pub host: &'a PluginHost,
    pub resolver: &'a Resolver,
    pub templates: &'a Arc<Templates>,
    pub options: &'a RunOptions,
    pub calls: &'a Arc<CallLog>,
    pub dir: &'a RunDir,
}

pub(super) async fn run_stage(
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
            pools: options.backends.pools.clone(),
        }) as Arc<dyn LlmGateway>
    });
    let services = StageServices {
        llm,
        templates: Some(templates.clone()),
        label: format!("{}/{}", agent.id, stage.id),
        agent: Some(crate::template::AgentInfo::of(agent)),
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
