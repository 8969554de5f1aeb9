//! The LLM calls of a run: each call with who made it, what was sent and
//! what came back, as `calls.jsonl` keeps it (one JSON line per call) and
//! `metrics.json` summarises it (without the text).

use crate::llm::{CallRecord, Message};
use serde::Serialize;
use serde_json::Value;
use std::sync::Mutex;

/// One LLM call as `calls.jsonl` keeps it: who made it, what was sent, what came back.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CallEntry {
    pub agent: String,
    pub stage: String,
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub record: CallRecord,
}

/// Every call of a run, in order.
#[derive(Debug, Default)]
pub struct CallLog {
    entries: Mutex<Vec<CallEntry>>,
}

impl CallLog {
    /// A log that starts with `entries` (a resumed run's earlier calls).
    pub fn with(entries: Vec<CallEntry>) -> Self {
        Self {
            entries: Mutex::new(entries),
        }
    }

    pub fn push(&self, entry: CallEntry) {
        self.entries.lock().expect("call log poisoned").push(entry);
    }

    /// A copy of the entries so far.
    pub fn entries(&self) -> Vec<CallEntry> {
        self.entries.lock().expect("call log poisoned").clone()
    }
}

/// LLM calls (prompts, responses, metrics) as JSON lines.
pub fn jsonl(entries: &[CallEntry]) -> std::io::Result<Vec<u8>> {
    let mut text = Vec::new();
    for entry in entries {
        serde_json::to_writer(&mut text, entry).map_err(std::io::Error::other)?;
        text.push(b'\n');
    }
    Ok(text)
}

/// A call's metrics without the prompt and response text, for metrics.json.
pub fn call_summary(entry: &CallEntry) -> Value {
    let mut value = serde_json::to_value(entry).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("messages");
        let chars = map
            .remove("text")
            .and_then(|t| t.as_str().map(str::len))
            .unwrap_or(0);
        map.insert("text_bytes".into(), chars.into());
    }
    value
}
