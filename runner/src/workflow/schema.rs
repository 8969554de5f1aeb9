//! The raw YAML shapes of a workflow, schema version 1.
//!
//! Only serde lives here; `validate` turns these into the checked model. Every
//! struct rejects unknown keys, and the values that later checks must point
//! at carry their line and column.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::node::Node;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    pub version: Spanned<i64>,
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The default model of every stage.
    #[serde(default)]
    pub model: Option<RawModel>,
    pub agents: Spanned<Vec<RawAgent>>,
}

/// One agent: a persona and ordered stages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub id: Spanned<String>,
    /// The name people read in the report (`Chimera Agent A`); the id when absent.
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Report template rendered host-side after the agent's stages.
    #[serde(default)]
    pub report: Option<Spanned<String>>,
    /// Persona template name.
    #[serde(default)]
    pub persona: Option<Spanned<String>>,
    /// The agent's model, over the workflow's.
    #[serde(default)]
    pub model: Option<RawModel>,
    pub stages: Spanned<Vec<RawStage>>,
}

/// One stage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub id: Spanned<String>,
    pub plugin: Spanned<String>,
    /// The plugin's configuration, checked against the plugin's schema once
    /// the plugin has described itself (so its parts keep their positions).
    #[serde(default, rename = "with")]
    pub with: Option<Spanned<Node>>,
    /// Prompt template name.
    #[serde(default)]
    pub prompt: Option<Spanned<String>>,
    /// The stage's model, over the agent's.
    #[serde(default)]
    pub model: Option<RawModel>,
    /// Wall-clock limit: `600s`, `10m`, `1h`, or seconds as a number.
    #[serde(default)]
    pub timeout: Option<Spanned<Value>>,
    /// Directories under the run's input directory that the stage may read.
    #[serde(default)]
    pub read: Vec<Spanned<String>>,
    /// The one directory the stage may write, by the name the plugin sees;
    /// it lives in the run record under `files/<agent>/<stage>/`.
    #[serde(default)]
    pub write: Option<Spanned<String>>,
    /// Most bytes the stage may leave in its `write:` directory: `64MiB`,
    /// `1GiB`, or bytes as a number (default 256 MiB).
    #[serde(default)]
    pub write_limit: Option<Spanned<Value>>,
    /// Linear-memory cap: `256MiB`, `1GiB`, or bytes as a number.
    #[serde(default)]
    pub memory: Option<Spanned<Value>>,
    /// The models this stage may call; a run whose (overridden) model is not
    /// listed fails the call.
    #[serde(default)]
    pub models: Option<Spanned<Vec<String>>>,
    /// Most `llm.generate` calls the stage may make (default 16).
    #[serde(default)]
    pub max_llm_calls: Option<Spanned<u32>>,
    /// Most tokens the stage's calls may generate in all (default: no cap).
    #[serde(default)]
    pub max_llm_tokens: Option<Spanned<u64>>,
}

/// A model declaration; every field overrides the level above it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// `ollama`, `openai` or `embedded`.
    #[serde(default)]
    pub backend: Option<Spanned<String>>,
    /// The model name, e.g. `gemma3:latest`.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// The backend's address, over `OLLAMA_HOST` and the defaults.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// For the `openai` backend: the name of the environment variable that
    /// holds the API key (the key itself never appears in a workflow or record).
    #[serde(default)]
    pub api_key_env: Option<Spanned<String>>,
    /// How long Ollama keeps the model loaded (`5m`, `0`).
    #[serde(default)]
    pub keep_alive: Option<Spanned<Value>>,
    /// Sampling and runtime options (`num_ctx`, `temperature`, …).
    #[serde(default)]
    pub options: IndexMap<Spanned<String>, Spanned<Value>>,
}
