//! Chimera runs LLM agent workflows declared in YAML. Each stage is a
//! WebAssembly component run in wasmtime with only the capabilities the
//! workflow grants; prompts and reports are minijinja templates; every stage
//! and LLM call is timed.
//!
//! Data flows one way: [`cli`] → [`workflow`] (checked model) → [`engine`] →
//! [`plugin`] (wasm host) → [`template`] → [`record`]; [`history`] finds and
//! reads records after the fact.

pub mod check;
pub mod cli;
pub mod engine;
pub mod history;
pub mod llm;
pub mod plugin;
pub mod progress;
pub mod record;
pub mod sources;
pub mod stats;
pub mod template;
pub mod workflow;

mod digest;
mod files;
mod search_path;
mod suggest;
mod words;

pub use engine::{RunOptions, RunOutcome};
pub use plugin::{ComponentCache, PluginHost};
pub use workflow::Workflow;
