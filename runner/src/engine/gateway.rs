//! The bridge from a stage's `llm.generate` to an LLM backend: picks the
//! stage's model, measures and logs every call, and reports progress.

use super::Observer;
use crate::llm::pool::HostPools;
use crate::llm::{
    Backend, CallRecord, LlmError, LlmErrorKind, Message, RetryPolicy, chat_with_retry,
};
use crate::plugin::{BoxFuture, GatewayError, LlmGateway, LlmReply};
use crate::record::calls::{CallEntry, CallLog};
use crate::workflow::ModelSpec;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// What a stage's model calls go through.
pub struct StageGateway {
    pub backend: Arc<dyn Backend>,
    pub model: ModelSpec,
    pub agent: String,
    pub stage: String,
    pub log: Arc<CallLog>,
    pub observer: Arc<dyn Observer>,
    /// Models the stage may call (`None`: any).
    pub allowed_models: Option<Vec<String>>,
    pub max_calls: u32,
    pub max_tokens: Option<u64>,
    /// When a failed call is tried again.
    pub retry: RetryPolicy,
    /// Calls made and tokens generated so far.
    pub used: Mutex<(u32, u64)>,
    /// Where a model with `hosts:` finds a free host.
    pub pools: Arc<HostPools>,
}

impl StageGateway {
    /// Refuses a call the stage's grants or caps do not allow.
    fn admit(&self) -> Result<(), GatewayError> {
        let label = format!("{}/{}", self.agent, self.stage);
        if let Some(allowed) = self
            .allowed_models
            .as_ref()
            .filter(|allowed| !allowed.contains(&self.model.name))
        {
            let list = allowed
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(GatewayError::NotAllowed(format!(
                "model `{}` is not allowed for stage `{label}`; allowed: {list}",
                self.model.name
            )));
        }
        let mut used = self.used.lock().expect("gateway counters poisoned");
        if used.0 >= self.max_calls {
            return Err(GatewayError::NotAllowed(format!(
                "stage `{label}` reached its limit of {}; raise `max_llm_calls` if it needs more",
                crate::words::plural(self.max_calls, "LLM call")
            )));
        }
        if let Some(max) = self.max_tokens.filter(|max| used.1 >= *max) {
            return Err(GatewayError::NotAllowed(format!(
                "stage `{label}` has generated {} tokens, its limit is {max}; raise `max_llm_tokens` if it needs more",
                used.1
            )));
        }
        used.0 += 1;
        Ok(())
    }
}

impl StageGateway {
    /// One call over the model's pool: to the least busy host, and on to
    /// another when a host fails before any token in a way that says it is
    /// down or overloaded (refused, unreachable, 5xx, 429, or a stream that
    /// broke or went silent before its first token; that host is benched).
    /// A call that streamed tokens is not moved, whatever broke it: its
    /// partial answer is in the record, and another host's answer would be
    /// another call. Nor is one that failed for a reason another host would
    /// share (a bad request, an unknown model).
    async fn pooled(
        &self,
        messages: &[Message],
        on_token: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<CallRecord, LlmError> {
        let mut tried: Vec<String> = Vec::new();
        let mut queued = std::time::Duration::ZERO;
        let mut last: Option<LlmError> = None;
        loop {
            let Some(lease) = self.pools.acquire(&self.model.hosts, &tried).await else {
                let mut error = last.unwrap_or_else(|| {
                    let hosts: Vec<&str> =
                        self.model.hosts.iter().map(|h| h.url.as_str()).collect();
                    LlmError::new(
                        LlmErrorKind::Connect,
                        format!(
                            "every host of the pool is benched after failing: {}",
                            hosts.join(", ")
                        ),
                        CallRecord::default(),
                    )
                });
                error.record.hosts_left = tried;
                error.record.queue_ms = Some(queued.as_secs_f64() * 1000.0);
                return Err(error);
            };
            queued += lease.queued;
            let spec = ModelSpec {
                host: Some(lease.host.clone()),
                hosts: Vec::new(),
                ..self.model.clone()
            };
            // With other hosts to go to, a failing host is not tried again.
            let policy = if self.model.hosts.len() > 1 {
                RetryPolicy::none()
            } else {
                self.retry
            };
            let result =
                chat_with_retry(self.backend.as_ref(), &policy, &spec, messages, on_token).await;
            let down = match &result {
                Ok(_) => false,
                Err(e) => {
                    let streamed = e.record.ttft_ms.is_some() || !e.record.text.is_empty();
                    !streamed
                        && matches!(
                            e.kind,
                            LlmErrorKind::ConnectionRefused
                                | LlmErrorKind::ConnectTimeout
                                | LlmErrorKind::Connect
                                | LlmErrorKind::ServerError
                                | LlmErrorKind::RateLimited
                                | LlmErrorKind::Http(429 | 500..=599)
                                | LlmErrorKind::IncompleteStream
                                | LlmErrorKind::Stalled
                        )
                }
            };
            let host = lease.host.clone();
            lease.release(down);
            match result {
                Err(e) if down => {
                    tried.push(host);
                    last = Some(e);
                }
                Ok(mut record) => {
                    record.queue_ms = Some(queued.as_secs_f64() * 1000.0);
                    record.hosts_left = tried;
                    return Ok(record);
                }
                Err(mut e) => {
                    e.record.queue_ms = Some(queued.as_secs_f64() * 1000.0);
                    e.record.hosts_left = tried;
                    return Err(e);
                }
            }
        }
    }
}

impl LlmGateway for StageGateway {
    fn generate(
        &self,
        messages: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<LlmReply, GatewayError>> {
        Box::pin(async move {
            self.admit()?;
            let messages: Vec<Message> = messages
                .into_iter()
                .map(|(role, content)| Message { role, content })
                .collect();
            let observer = self.observer.clone();
            let (agent, stage) = (self.agent.clone(), self.stage.clone());
            let on_token = move |piece: &str| observer.token(&agent, &stage, piece);
            let span = tracing::info_span!("llm_call", backend = self.backend.name(), model = %self.model.name);
            let result = if self.model.hosts.is_empty() {
                chat_with_retry(
                    self.backend.as_ref(),
                    &self.retry,
                    &self.model,
                    &messages,
                    &on_token,
                )
                .instrument(span)
                .await
            } else {
                self.pooled(&messages, &on_token).instrument(span).await
            };
            let (record, outcome) = match result {
                Ok(record) => {
                    // A plugin gets the counts the backend reported; an
                    // estimate stays in the record, labelled as one.
                    let reported = !record.estimated.iter().any(|f| f == "eval_count");
                    let reply = LlmReply {
                        text: record.text.clone(),
                        eval_count: record
                            .eval_count
                            .filter(|_| reported)
                            .and_then(|n| u32::try_from(n).ok()),
                        prompt_eval_count: record
                            .prompt_eval_count
                            .and_then(|n| u32::try_from(n).ok()),
                    };
                    (record, Ok(reply))
                }
                Err(e) => {
                    let message = e.to_string();
                    (*e.record, Err(GatewayError::Failed(message)))
                }
            };
            self.used.lock().expect("gateway counters poisoned").1 +=
                record.eval_count.unwrap_or(0);
            self.observer
                .call_finished(&self.agent, &self.stage, &record);
            self.log.push(CallEntry {
                agent: self.agent.clone(),
                stage: self.stage.clone(),
                messages,
                record,
            });
            outcome
        })
    }
}
