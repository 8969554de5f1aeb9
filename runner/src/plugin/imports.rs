//! The host side of the plugin's imports (`llm`, `template`, `log`) and the
//! per-stage store state.

use super::bindings::chimera::plugin::{llm, log, template, types};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// A generation the host made for a plugin.
#[derive(Debug, Clone)]
pub struct LlmReply {
    pub text: String,
    /// `None` when the backend did not report it.
    pub eval_count: Option<u32>,
    /// `None` when the backend did not report it.
    pub prompt_eval_count: Option<u32>,
}

/// Why the host could not generate for a plugin (becomes the WIT `llm-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// No model configured, or the backend is unavailable.
    NoBackend(String),
    /// The model or the call is not allowed for this stage.
    NotAllowed(String),
    /// The backend failed; the text names host, model and what to do.
    Failed(String),
}

pub use futures_util::future::BoxFuture;

/// Where a stage's `llm.generate` goes: the stage's model, measured by the host.
pub trait LlmGateway: Send + Sync {
    /// Generates a reply to `messages` (role, content).
    fn generate(
        &self,
        messages: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<LlmReply, GatewayError>>;
}

/// Where a stage's `template.render` goes.
pub trait TemplateRenderer: Send + Sync {
    /// Renders template `name` with `context` for `agent` (see
    /// [`crate::template::Templates::render_for`]); the error names template
    /// and line.
    fn render(
        &self,
        name: &str,
        context: &Value,
        agent: Option<&crate::template::AgentInfo>,
    ) -> Result<String, String>;
}

/// The workflow's templates serve a stage's `template.render`.
impl TemplateRenderer for crate::template::Templates {
    fn render(
        &self,
        name: &str,
        context: &Value,
        agent: Option<&crate::template::AgentInfo>,
    ) -> Result<String, String> {
        self.render_for(name, context, agent)
            .map_err(|e| e.to_string())
    }
}

/// What a stage's imports can reach; nothing else is reachable.
#[derive(Clone, Default)]
pub struct StageServices {
    pub llm: Option<Arc<dyn LlmGateway>>,
    pub templates: Option<Arc<dyn TemplateRenderer>>,
    /// `agent/stage`, for log lines.
    pub label: String,
    /// The stage's agent, which its templates see as `agent`.
    pub agent: Option<crate::template::AgentInfo>,
}

impl StageServices {
    /// No model, no templates (for `describe`).
    pub fn none() -> Self {
        Self::default()
    }
}

/// Everything one stage's `Store` holds.
pub struct StageState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: StoreLimits,
    services: StageServices,
    llm_time: Duration,
}

impl StageState {
    pub(super) fn new(wasi: WasiCtx, limits: StoreLimits, services: StageServices) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            limits,
            services,
            llm_time: Duration::ZERO,
        }
    }

    /// Time spent inside `llm.generate` calls.
    pub(super) fn llm_time(&self) -> Duration {
        self.llm_time
    }
}

impl WasiView for StageState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for StageState {}

impl llm::Host for StageState {
    async fn generate(
        &mut self,
        request: llm::GenerateRequest,
    ) -> Result<llm::GenerateResponse, llm::LlmError> {
        let Some(gateway) = self.services.llm.clone() else {
            return Err(llm::LlmError::NoBackend(format!(
                "stage `{}` has no model backend configured; declare `model:` in the workflow",
                self.services.label
            )));
        };
        let messages = request
            .messages
            .into_iter()
            .map(|m| {
                let role = match m.role {
                    llm::Role::System => "system",
                    llm::Role::User => "user",
                    llm::Role::Assistant => "assistant",
                };
                (role.to_owned(), m.content)
            })
            .collect();
        let start = Instant::now();
        let reply = gateway.generate(messages).await;
        self.llm_time += start.elapsed();
        match reply {
            Ok(r) => Ok(llm::GenerateResponse {
                text: r.text,
                eval_count: r.eval_count,
                prompt_eval_count: r.prompt_eval_count,
            }),
            Err(GatewayError::NoBackend(m)) => Err(llm::LlmError::NoBackend(m)),
            Err(GatewayError::NotAllowed(m)) => Err(llm::LlmError::NotAllowed(m)),
            Err(GatewayError::Failed(m)) => Err(llm::LlmError::Failed(m)),
        }
    }
}

impl template::Host for StageState {
    fn render(&mut self, name: String, context_json: String) -> Result<String, String> {
        let Some(templates) = &self.services.templates else {
            return Err(format!(
                "templates are not available to stage `{}`",
                self.services.label
            ));
        };
        let context: Value = serde_json::from_str(&context_json)
            .map_err(|e| format!("the context for template `{name}` is not JSON: {e}"))?;
        templates.render(&name, &context, self.services.agent.as_ref())
    }
}

impl log::Host for StageState {
    fn log(&mut self, level: log::Level, message: String) {
        let stage = self.services.label.as_str();
        match level {
            log::Level::Trace => tracing::trace!(target: "chimera::plugin", stage, "{message}"),
            log::Level::Debug => tracing::debug!(target: "chimera::plugin", stage, "{message}"),
            log::Level::Info => tracing::info!(target: "chimera::plugin", stage, "{message}"),
            log::Level::Warn => tracing::warn!(target: "chimera::plugin", stage, "{message}"),
            log::Level::Error => tracing::error!(target: "chimera::plugin", stage, "{message}"),
        }
    }
}
