//! The body of a chat request, and how Ollama-style options map onto it.

use super::super::{Message, ModelSpec};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};

/// Options sent under their own name: the OpenAI ones, and the sampling
/// options llama.cpp server and vLLM accept as extra fields.
const SENT_AS_IS: &[&str] = &[
    "temperature",
    "top_p",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "top_k",
    "repeat_penalty",
    "min_p",
];

/// Options that are settings of the server (its command line), not of a
/// request.
const SERVER_SETTINGS: &[&str] = &[
    "num_ctx",
    "num_gpu",
    "num_thread",
    "num_batch",
    "main_gpu",
    "use_mmap",
    "num_keep",
    "repeat_last_n",
    "typical_p",
];

/// The declared options, split into what the request carries and what it
/// does not.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct MappedOptions {
    /// Under the names the request uses, in declaration order.
    pub(super) sent: IndexMap<String, Value>,
    /// Declared but not sent: (name, why).
    pub(super) dropped: Vec<(String, &'static str)>,
}

/// Maps Ollama-style options (what workflows declare) onto a chat request.
pub(super) fn map_options(options: &IndexMap<String, Value>) -> MappedOptions {
    let mut mapped = MappedOptions::default();
    for (name, value) in options {
        let name = name.as_str();
        if SENT_AS_IS.contains(&name) {
            mapped.sent.insert(name.to_owned(), value.clone());
        } else if name == "num_predict" {
            // -1 (no limit) and -2 (fill the context) are the server's default.
            if value.as_i64().is_some_and(|n| n < 0) {
                mapped
                    .dropped
                    .push((name.to_owned(), "no limit is the default"));
            } else {
                mapped.sent.insert("max_tokens".to_owned(), value.clone());
            }
        } else if SERVER_SETTINGS.contains(&name) {
            mapped.dropped.push((
                name.to_owned(),
                "a server setting for OpenAI-compatible servers",
            ));
        } else {
            mapped
                .dropped
                .push((name.to_owned(), "not known to OpenAI-compatible servers"));
        }
    }
    mapped
}

/// The JSON body of a streamed chat request carrying `options` (already
/// mapped); usage is asked for so the last chunk counts the tokens.
pub(super) fn request_body(
    model: &ModelSpec,
    messages: &[Message],
    options: &IndexMap<String, Value>,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model.name));
    body.insert("messages".into(), json!(messages));
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    for (name, value) in options {
        body.insert(name.clone(), value.clone());
    }
    Value::Object(body)
}
