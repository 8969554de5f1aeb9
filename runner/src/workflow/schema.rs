//! The raw YAML shapes of a workflow, schema version 1.
//!
//! Only serde lives here; `validate` turns these into the checked model. Every
//! struct rejects unknown keys, and the values that later checks must point
//! at carry their line and column.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::matrix::RawMatrix;
use super::node::Node;
use super::plan::RawCompare;

/// A Chimera workflow: agents, each with a persona and ordered stages.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Workflow")]
pub struct RawWorkflow {
    /// The schema version; this chimera reads `1`.
    #[schemars(with = "i64", extend("const" = 1))]
    pub version: Spanned<i64>,
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The default model of every stage.
    #[serde(default)]
    pub model: Option<RawModel>,
    #[schemars(with = "Vec<RawAgent>")]
    pub agents: Spanned<Vec<RawAgent>>,
    /// Measured runs of the whole workflow (of each side, when comparing);
    /// default 1. `--runs` overrides it.
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1, max = 10000))]
    pub runs: Option<Spanned<u32>>,
    /// Warm-up runs before the measured ones: recorded, left out of every
    /// statistic; default 0. `--warmup` overrides it.
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(max = 10000))]
    pub warmup: Option<Spanned<u32>>,
    /// Most stages running at once (default: as many as are ready);
    /// `--max-parallel` overrides it.
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_parallel: Option<Spanned<u32>>,
    /// A baseline and a candidate to compare, run interleaved.
    #[serde(default)]
    pub compare: Option<RawCompare>,
    /// A sweep: axes (a setting, e.g. `model.options.num_ctx`,
    /// `model.name`, `model.backend`, `model.host`, `persona`, optionally
    /// scoped as `<agent>:`, `<agent>/<stage>:` or `*/<stage>:`) with their
    /// values, plus `include:` and `exclude:` lists of settings, expanded as
    /// GitHub Actions expands a job matrix. Each cell runs with `runs:` and
    /// `warmup:`; `order: interleave` runs round after round over the cells
    /// (default `sequential`: cell after cell).
    #[serde(default)]
    #[schemars(with = "Option<super::matrix::MatrixSchema>")]
    pub matrix: Option<Spanned<RawMatrix>>,
    /// Named sources of templates and plugins, each laid out like a project
    /// (`templates/`, `plugins/`): `dir:` a local directory (relative to
    /// the workflow), or `git:` a repository at a pinned `rev:` (commit or
    /// tag), optionally with `path:` inside it. Refer to what a source
    /// holds as `<source>:<name>`, e.g. `persona: perf-team:personas/skeptic.md.j2`.
    #[serde(default)]
    #[schemars(with = "Option<std::collections::BTreeMap<String, RawSource>>")]
    pub sources: Option<Spanned<IndexMap<String, Spanned<RawSource>>>>,
    /// What a sweep ranks its cells by: `<max|min> <metric> [p50|p95|mean|min|max]`,
    /// e.g. `max tokens_per_second p50` (default `min run_total p50`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub objective: Option<Spanned<String>>,
}

/// One source of templates and plugins.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Source")]
pub struct RawSource {
    /// A local directory, relative to the workflow.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub dir: Option<Spanned<String>>,
    /// A git repository's URL (`https://…`, `ssh://…`, `file:///…`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub git: Option<Spanned<String>>,
    /// The commit (full or abbreviated hash) or tag to use; required with `git:`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub rev: Option<Spanned<String>>,
    /// A directory inside the repository to use as the source's root.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
}

/// One agent: a persona and ordered stages.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Agent")]
pub struct RawAgent {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// The name people read in the report (`Chimera Agent A`); the id when absent.
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Report template rendered host-side after the agent's stages.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub report: Option<Spanned<String>>,
    /// Persona template name.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub persona: Option<Spanned<String>>,
    /// The agent's model, over the workflow's.
    #[serde(default)]
    pub model: Option<RawModel>,
    /// Agents whose stages all finish before this agent's first stage
    /// starts; their outputs reach this agent's stages as `<agent>/<stage>`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub needs: Vec<Spanned<String>>,
    #[schemars(with = "Vec<RawStage>")]
    pub stages: Spanned<Vec<RawStage>>,
}

/// One stage.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Stage")]
pub struct RawStage {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    #[schemars(with = "String")]
    pub plugin: Spanned<String>,
    /// The plugin's configuration, checked against the plugin's schema once
    /// the plugin has described itself (so its parts keep their positions).
    #[serde(default, rename = "with")]
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub with: Option<Spanned<Node>>,
    /// Prompt template name.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub prompt: Option<Spanned<String>>,
    /// Stages of other agents (`<agent>/<stage>`) that finish before this
    /// one starts; their outputs reach it as `<agent>/<stage>`. (The
    /// agent's own earlier stages always come first.)
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub needs: Vec<Spanned<String>>,
    /// The stage's model, over the agent's.
    #[serde(default)]
    pub model: Option<RawModel>,
    /// Wall-clock limit: `600s`, `10m`, `1h`, or seconds as a number.
    #[serde(default)]
    #[schemars(schema_with = "duration_schema")]
    pub timeout: Option<Spanned<Value>>,
    /// Directories under the run's input directory that the stage may read.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub read: Vec<Spanned<String>>,
    /// The one directory the stage may write, by the name the plugin sees;
    /// it lives in the run record under `files/<agent>/<stage>/`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub write: Option<Spanned<String>>,
    /// Most bytes the stage may leave in its `write:` directory: `64MiB`,
    /// `1GiB`, or bytes as a number (default 256 MiB).
    #[serde(default)]
    #[schemars(schema_with = "size_schema")]
    pub write_limit: Option<Spanned<Value>>,
    /// Linear-memory cap: `256MiB`, `1GiB`, or bytes as a number.
    #[serde(default)]
    #[schemars(schema_with = "size_schema")]
    pub memory: Option<Spanned<Value>>,
    /// The models this stage may call; a run whose (overridden) model is not
    /// listed fails the call.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub models: Option<Spanned<Vec<String>>>,
    /// Most `llm.generate` calls the stage may make (default 16).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max_llm_calls: Option<Spanned<u32>>,
    /// Most tokens the stage's calls may generate in all (default: no cap).
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    pub max_llm_tokens: Option<Spanned<u64>>,
}

/// A model declaration; every field overrides the level above it.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Model")]
pub struct RawModel {
    /// `ollama`, `openai` or `embedded`.
    #[serde(default)]
    #[schemars(schema_with = "backend_schema")]
    pub backend: Option<Spanned<String>>,
    /// The model name, e.g. `gemma3:latest`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// The backend's address, over `OLLAMA_HOST` and the defaults.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    /// A pool of servers instead of one `host`: each call goes to the host
    /// with the fewest calls in flight; a host that fails to connect or
    /// answers 5xx before any token is benched for a while. Each entry is a
    /// URL or `{url, max_concurrency}`. A `host:` at a lower level (an
    /// agent, a stage, `--set model.host=…`) pins it to one server.
    #[serde(default)]
    #[schemars(with = "Option<Vec<RawPoolHost>>")]
    pub hosts: Option<Spanned<Vec<RawPoolHost>>>,
    /// For the `openai` backend: the name of the environment variable that
    /// holds the API key (the key itself never appears in a workflow or record).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub api_key_env: Option<Spanned<String>>,
    /// How long Ollama keeps the model loaded (`5m`, `0`).
    #[serde(default)]
    #[schemars(schema_with = "duration_schema")]
    pub keep_alive: Option<Spanned<Value>>,
    /// Sampling and runtime options (`num_ctx`, `temperature`, …).
    #[serde(default)]
    #[schemars(schema_with = "super::options::json_schema")]
    pub options: IndexMap<Spanned<String>, Spanned<Value>>,
}

/// One host of a pool, as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "PoolHost")]
pub enum RawPoolHost {
    Url(String),
    Full(RawPoolHostFull),
}

/// A pool host with its bound.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PoolHostWithBound")]
pub struct RawPoolHostFull {
    pub url: String,
    /// Most calls in flight at once on this host.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_concurrency: Option<u32>,
}

/// `600s`, `10m`, `1h30m`, or seconds as a number.
fn duration_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            {"type": "string", "description": "a duration such as `600s`, `10m` or `1h30m`"},
            {"type": "number", "exclusiveMinimum": 0, "description": "seconds"}
        ]
    })
}

/// `256MiB`, `1GiB`, `512MB`, or bytes as a number.
fn size_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            {"type": "string", "pattern": "^[0-9]+ *(B|KiB|MiB|GiB|KB|kB|MB|GB)?$", "description": "a size such as `256MiB` or `1GiB`"},
            {"type": "integer", "minimum": 1, "description": "bytes"}
        ]
    })
}

/// The backends a model may name.
fn backend_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"enum": super::BackendKind::NAMES})
}

/// The JSON Schema of a workflow file (schema version 1), generated from the
/// types the loader reads it with; `chimera schema` prints it for editors.
pub fn workflow_json_schema() -> Value {
    let mut schema = schemars::schema_for!(RawWorkflow).to_value();
    if let Some(map) = schema.as_object_mut() {
        map.insert("title".into(), "Chimera workflow (version 1)".into());
    }
    schema
}
