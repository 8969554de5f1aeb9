//! The bridge from a stage's `llm.generate` to an LLM backend: picks the
//! stage's model, measures and logs every call, and reports progress.

use super::Observer;
use crate::llm::{Backend, Message, RetryPolicy, chat_with_retry};
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
                "stage `{label}` reached its limit of {} LLM calls; raise `max_llm_calls` if it needs more",
                self.max_calls
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
            let result = chat_with_retry(
                self.backend.as_ref(),
                &self.retry,
                &self.model,
                &messages,
                &on_token,
            )
            .instrument(span)
            .await;
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
