//! What the backend tests share: a model declaration and a chat that
//! collects the streamed pieces.

use chimera::llm::{Backend, CallRecord, LlmError, Message, ModelSpec};
use chimera::workflow::BackendKind;
use serde_json::Value;
use std::sync::Mutex;

/// A model as a workflow would declare it, with these options.
pub fn model_spec(
    backend: BackendKind,
    name: &str,
    host: Option<&str>,
    options: &[(&str, Value)],
) -> ModelSpec {
    ModelSpec {
        hosts: Vec::new(),
        backend,
        name: name.into(),
        host: host.map(str::to_owned),
        api_key_env: None,
        keep_alive: None,
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

/// Runs one chat; returns the result and the pieces `on_token` saw, in order.
pub async fn chat_collecting(
    backend: &dyn Backend,
    model: &ModelSpec,
    messages: &[Message],
) -> (Result<CallRecord, LlmError>, Vec<String>) {
    let pieces = Mutex::new(Vec::new());
    let on_token = |t: &str| pieces.lock().expect("pieces").push(t.to_owned());
    let result = backend.chat(model, messages, &on_token).await;
    (result, pieces.into_inner().expect("pieces"))
}
