//! Workflows: YAML → raw serde structs (`schema`) → checks (`validate`) → the
//! checked [`Workflow`] the engine runs. Every error names file:line:column,
//! says what was expected and, for a typo, the nearest valid name.

pub mod dag;
mod diagnostic;
pub mod matrix;
pub mod node;
pub mod objective;
pub mod options;
pub mod overrides;
pub mod plan;
mod schema;
pub mod sources;
mod validate;
mod yaml;

pub use diagnostic::{Diagnostic, FileErrors, Pos};
pub use overrides::{OverrideError, Overrides};
pub use schema::workflow_json_schema;
pub use validate::parse_duration;

use indexmap::IndexMap;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The only schema version this build reads.
pub const SCHEMA_VERSION: i64 = 1;
/// Workflow files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Default stage wall-clock limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Default cap on a stage's LLM calls.
pub const DEFAULT_MAX_LLM_CALLS: u32 = 16;
/// Default stage linear-memory cap.
pub const DEFAULT_MEMORY: usize = 256 * 1024 * 1024;
/// What a stage may leave in its `write:` directory unless `write_limit:` says otherwise.
pub const DEFAULT_WRITE_LIMIT: u64 = 256 * 1024 * 1024;

/// Why a workflow could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("cannot read workflow {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<FileErrors>),
}

/// A value from the file with the place it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub pos: Pos,
}

/// A checked workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// The file as the user named it.
    pub path: PathBuf,
    /// The directory the file is in (plugin and template paths are relative to it).
    pub dir: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub agents: Vec<Agent>,
    /// Repeats, warm-up and comparison.
    pub plan: plan::Plan,
    /// Most stages running at once (`None`: every ready stage).
    pub max_parallel: Option<u32>,
    /// Which stage waits for which.
    pub dag: dag::Dag,
    /// `sources:` as written.
    pub sources: Vec<sources::SourceSpec>,
    /// Each source's local root once fetched (`templates/` and `plugins/`
    /// in it), by name; empty until the sources are resolved.
    pub source_roots: Vec<(String, PathBuf)>,
    source: String,
}

/// A checked agent.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    /// The name people read; the id when the workflow gives none.
    pub title: String,
    pub description: Option<String>,
    /// Report template, rendered host-side into `report.md` after the stages.
    pub report: Option<Located<String>>,
    /// Persona template name.
    pub persona: Option<Located<String>>,
    /// Agents that finish before this one starts.
    pub needs: Vec<Located<String>>,
    pub stages: Vec<Stage>,
}

/// A checked stage.
#[derive(Debug, Clone)]
pub struct Stage {
    pub id: String,
    /// Plugin name or path, as written.
    pub plugin: Located<String>,
    /// `with:` as JSON (an object).
    pub config: Value,
    /// Where each part of `with:` was written.
    pub config_positions: node::Positions,
    /// Prompt template name.
    pub prompt: Option<Located<String>>,
    /// Stages of other agents (`<agent>/<stage>`) that finish before this one.
    pub needs: Vec<Located<String>>,
    /// The effective model: stage over agent over workflow.
    pub model: Option<ModelSpec>,
    pub timeout: Duration,
    /// Directories under the input directory the stage may read (relative, checked).
    pub read: Vec<String>,
    /// The writable directory's guest name (relative, checked); the host
    /// directory is `files/<agent>/<stage>/` in the run record.
    pub write: Option<String>,
    /// Most bytes the stage may leave in its `write:` directory.
    pub write_limit: u64,
    pub memory_limit: usize,
    /// Models the stage may call (`None`: any).
    pub allowed_models: Option<Vec<String>>,
    pub max_llm_calls: u32,
    pub max_llm_tokens: Option<u64>,
}

/// Which LLM backend a model is served by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Ollama,
    Openai,
    Embedded,
}

impl BackendKind {
    pub const NAMES: [&'static str; 3] = ["ollama", "openai", "embedded"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ollama" => Some(Self::Ollama),
            "openai" => Some(Self::Openai),
            "embedded" => Some(Self::Embedded),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The model a stage uses, with options exactly as declared.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelSpec {
    pub backend: BackendKind,
    pub name: String,
    /// The server address (`ollama`, `openai`); backends have defaults.
    pub host: Option<String>,
    /// A pool of servers instead of one `host`: each call goes to the
    /// host with the fewest calls in flight.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<PoolHost>,
    /// The environment variable holding the API key (`openai`).
    pub api_key_env: Option<String>,
    pub keep_alive: Option<Value>,
    pub options: IndexMap<String, Value>,
}

/// One host of a pool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PoolHost {
    pub url: String,
    /// Most calls in flight at once (`None`: no bound).
    pub max_concurrency: Option<u32>,
}

impl Workflow {
    /// Reads and checks a workflow file.
    ///
    /// # Errors
    /// When the file cannot be read, is not YAML, does not fit schema v1, or
    /// fails a check; [`WorkflowError::Invalid`] lists every problem found.
    pub fn load(path: &Path) -> Result<Self, WorkflowError> {
        let io = |source| WorkflowError::Io {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_FILE_BYTES {
            let d = Diagnostic::new(
                format!("the workflow file is {size} bytes; workflows are limited to {MAX_FILE_BYTES} bytes"),
                None,
            )
            .help("a workflow declares agents and stages; keep data in the input directory, not in the workflow");
            return Err(WorkflowError::Invalid(Box::new(FileErrors::new(
                path,
                "",
                vec![d],
            ))));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let source = String::from_utf8(bytes).map_err(|e| {
            let d = Diagnostic::new(
                format!(
                    "the workflow file is not UTF-8 text (byte {})",
                    e.utf8_error().valid_up_to()
                ),
                None,
            );
            WorkflowError::Invalid(Box::new(FileErrors::new(path, "", vec![d])))
        })?;
        Self::from_source(path, &source)
            .map_err(|d| WorkflowError::Invalid(Box::new(FileErrors::new(path, &source, d))))
    }

    /// Checks workflow text as if it were read from `path`.
    ///
    /// # Errors
    /// Every problem found, in file order.
    pub fn from_source(path: &Path, source: &str) -> Result<Self, Vec<Diagnostic>> {
        let raw = yaml::parse(source)?;
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let mut problems = Vec::new();
        let plan = plan::check(
            raw.runs.as_ref(),
            raw.warmup.as_ref(),
            raw.compare.as_ref(),
            &mut problems,
        );
        let mut plan = plan;
        if let Some(m) = &raw.matrix {
            let at: Pos = m.referenced.into();
            if raw.compare.is_some() {
                problems.push(
                    Diagnostic::new("a workflow has `matrix:` or `compare:`, not both", at)
                        .help("a sweep ranks its cells by `objective:` and marks the ties; to compare two of them, run each as a side of `compare:`"),
                );
            }
            plan.matrix = Some(matrix::check(&m.value, at, &mut problems));
        }
        if let Some(o) = &raw.objective {
            let at: Pos = o.referenced.into();
            if raw.matrix.is_none() {
                problems.push(
                    Diagnostic::new(
                        "`objective:` ranks the cells of a `matrix:`, and there is none",
                        at,
                    )
                    .help("add a `matrix:` or remove `objective:`"),
                );
            }
            plan.objective = objective::check(&o.value, at, &mut problems);
        }
        let max_parallel = raw.max_parallel.as_ref().and_then(|m| {
            if m.value == 0 {
                problems.push(
                    Diagnostic::new(
                        "`max_parallel: 0` would run nothing",
                        Pos::from(m.referenced),
                    )
                    .help("at least 1 (1 runs one stage at a time)"),
                );
                None
            } else {
                Some(m.value)
            }
        });
        let source_specs = sources::check(raw.sources.as_ref(), &mut problems);
        let checked = validate::check(raw);
        let mut graph = dag::Dag::default();
        if let Ok((_, _, agents)) = &checked {
            graph = dag::build(agents, &mut problems);
            let ids: Vec<&str> = agents
                .iter()
                .flat_map(|a| a.stages.iter().map(|s| s.id.as_str()))
                .collect();
            plan::check_prompt_stages(&plan, &ids, &mut problems);
            if let Some(m) = &plan.matrix {
                matrix::check_scopes(agents, m, &mut problems);
            }
        }
        let (name, description, agents) = match checked {
            Ok(c) if problems.is_empty() => c,
            Ok(_) => {
                problems.sort_by_key(|d| d.pos.map(|p| (p.line, p.column)));
                return Err(problems);
            }
            Err(mut more) => {
                more.append(&mut problems);
                more.sort_by_key(|d| d.pos.map(|p| (p.line, p.column)));
                return Err(more);
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            dir,
            name,
            description,
            agents,
            plan,
            max_parallel,
            dag: graph,
            sources: source_specs,
            source_roots: Vec::new(),
            source: source.to_owned(),
        })
    }

    /// Renders diagnostics found after loading (missing plugins or templates)
    /// against this file's text.
    pub fn errors(&self, diagnostics: Vec<Diagnostic>) -> FileErrors {
        FileErrors::new(&self.path, &self.source, diagnostics)
    }

    /// Every stage with its agent, in run order.
    pub fn stages(&self) -> impl Iterator<Item = (&Agent, &Stage)> {
        self.agents
            .iter()
            .flat_map(|a| a.stages.iter().map(move |s| (a, s)))
    }
}
