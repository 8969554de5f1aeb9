//! A backend that calls no model: it answers every chat with a placeholder,
//! so `chimera render` can run the stages before the one asked about and
//! show the exact messages that stage would send.

use crate::llm::{Backend, CallRecord, LlmError, Message};
use crate::plugin::BoxFuture;
use crate::workflow::ModelSpec;

/// Answers without a model; the call log keeps the messages.
#[derive(Debug, Default)]
pub struct DryRun;

impl Backend for DryRun {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    fn chat<'a>(
        &'a self,
        model: &'a ModelSpec,
        _messages: &'a [Message],
        _on_token: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<CallRecord, LlmError>> {
        Box::pin(async move {
            Ok(CallRecord {
                backend: "dry-run".into(),
                model: model.name.clone(),
                options: model.options.clone(),
                text: format!("[dry run: `{}` was not called]", model.name),
                attempts: 1,
                ..CallRecord::default()
            })
        })
    }
}
