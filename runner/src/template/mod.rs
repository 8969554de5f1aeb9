//! One minijinja `Environment` over the template search path.
//!
//! The search path, first match wins: the workflow's `templates/`, the
//! project's `templates/` (beside the workflow's directory), each directory on
//! `CHIMERA_TEMPLATE_PATH`, and `<user config dir>/chimera/templates`. A team
//! shares personas and prompts by putting a folder (or a git checkout) on it;
//! `include`, `extends` and macros work across all of it. Undefined variables
//! are errors; names with `..` or absolute paths and symlinks that lead out of
//! a search directory are refused.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Fuel for one render: bounds runaway loops in a shared template.
const FUEL: u64 = 5_000_000;
/// How deep includes, macros and blocks may nest (minijinja counts an
/// include or macro call as about ten levels): a template that includes
/// itself ends with an error instead of exhausting the stack.
const RECURSION_LIMIT: usize = 200;

mod agent;
mod stock;

pub use crate::workflow::sources::check_template_name as check_name;
pub use agent::AgentInfo;
pub use stock::{BUILTIN, STOCK, is_builtin};

/// Why a template could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template `{name}` not found in the template search path ({})", search.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound { name: String, search: Vec<PathBuf> },
    #[error("{0}")]
    Render(String),
}

/// Where a template name resolved: the file, the search-path entry it was
/// found in, and the SHA-256 of what was read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resolved {
    pub name: String,
    pub file: PathBuf,
    /// The search-path directory the file was found in.
    pub root: PathBuf,
    pub sha256: String,
}

/// A template that does not compile: where, and what the parser said.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    /// The template the error is in (an include's, maybe).
    pub name: String,
    /// 1-based line, when minijinja knows it.
    pub line: Option<usize>,
    /// What is wrong, without the template and line.
    pub detail: String,
    /// The template's text, to quote from.
    pub source: Option<String>,
}

/// The template environment of one run.
#[derive(Debug, Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    search_path: Vec<PathBuf>,
    /// The workflow's sources: name → the directory `<source>:<name>`
    /// templates are read from (the source's `templates/`).
    sources: Vec<(String, PathBuf)>,
    /// Every template the environment loaded, in load order (minijinja
    /// loads each name once): the run's template provenance.
    loaded: Arc<std::sync::Mutex<Vec<Resolved>>>,
}

impl Templates {
    /// The search path for a workflow in `workflow_dir`.
    pub fn search_path_for(workflow_dir: &Path) -> Vec<PathBuf> {
        let mut path = crate::search_path::around_workflow(
            Some(workflow_dir),
            "templates",
            "CHIMERA_TEMPLATE_PATH",
        );
        if let Some(config) = dirs::config_dir() {
            path.push(config.join("chimera").join("templates"));
        }
        path.push(PathBuf::from(BUILTIN));
        crate::search_path::dedup(&mut path);
        path
    }

    /// An environment that loads from `search_path`.
    pub fn new(search_path: Vec<PathBuf>) -> Self {
        Self::with_sources(search_path, Vec::new())
    }

    /// An environment that loads unprefixed names from `search_path` and
    /// `<source>:<name>` from each source root's `templates/`.
    pub fn with_sources(search_path: Vec<PathBuf>, source_roots: Vec<(String, PathBuf)>) -> Self {
        let sources: Vec<(String, PathBuf)> = source_roots
            .into_iter()
            .map(|(name, root)| (name, root.join("templates")))
            .collect();
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_keep_trailing_newline(true);
        let loader_path = search_path.clone();
        let loader_sources = sources.clone();
        let loaded = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = loaded.clone();
        env.set_loader(move |name| {
            let Some((resolved, text)) = load(&loader_path, &loader_sources, name) else {
                return Ok(None);
            };
            record.lock().expect("template log poisoned").push(resolved);
            Ok(Some(text))
        });
        Self {
            env: Arc::new(env),
            search_path,
            sources,
            loaded,
        }
    }

    /// A new environment over the same search path and sources (nothing
    /// loaded yet), for a variant of the workflow with a record of its own.
    pub fn fresh(&self) -> Self {
        let roots = self
            .sources
            .iter()
            .map(|(n, d)| {
                (
                    n.clone(),
                    d.parent().map_or_else(|| d.clone(), Path::to_path_buf),
                )
            })
            .collect();
        Self::with_sources(self.search_path.clone(), roots)
    }

    /// Every template loaded so far (rendered, included, imported or
    /// checked), with where it came from and its hash.
    pub fn loaded(&self) -> Vec<Resolved> {
        self.loaded.lock().expect("template log poisoned").clone()
    }

    /// The help for a template that is not found: every place searched, in
    /// order, with `CHIMERA_TEMPLATE_PATH`'s entries marked (or a word that
    /// it is unset), and how to copy a stock template out.
    pub fn not_found_help_for(&self, name: &str) -> String {
        if let Some((source, rest)) = crate::workflow::sources::split(name) {
            return match self.sources.iter().find(|(n, _)| n == source) {
                Some((_, dir)) => format!(
                    "looked in source `{source}`: {}\n        the source has no such file at its pinned revision; `chimera templates` lists what each name resolves to",
                    dir.join(rest).display()
                ),
                None => format!(
                    "`{source}:` names a source, and the workflow's `sources:` has no `{source}`{}",
                    if self.sources.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (it has {})",
                            self.sources
                                .iter()
                                .map(|(n, _)| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ),
            };
        }
        self.not_found_help()
    }

    /// The help for a template that is not found on the search path.
    pub fn not_found_help(&self) -> String {
        let from_env: Vec<PathBuf> = std::env::var_os("CHIMERA_TEMPLATE_PATH")
            .map(|v| std::env::split_paths(&v).collect())
            .unwrap_or_default();
        let mut help = String::from("looked in, in order:");
        for dir in &self.search_path {
            let note = if is_builtin(dir) {
                "  (the stock templates built into chimera)"
            } else if from_env.contains(dir) {
                "  (from CHIMERA_TEMPLATE_PATH)"
            } else {
                ""
            };
            help.push_str(&format!("\n          {}{note}", dir.display()));
        }
        if from_env.is_empty() {
            help.push_str("\n          (CHIMERA_TEMPLATE_PATH is unset)");
        }
        help.push_str("\n        create it in one of those directories; `chimera templates` lists what each name resolves to, `chimera templates --eject <name>` copies a stock one out");
        help
    }

    /// Where `name` resolves, without loading it into the environment.
    pub fn locate(&self, name: &str) -> Option<Resolved> {
        load(&self.search_path, &self.sources, name).map(|(resolved, _)| resolved)
    }

    /// Every file named `name` on the search path, the one that wins first:
    /// the rest are shadowed by it.
    pub fn candidates(&self, name: &str) -> Vec<Resolved> {
        (0..self.search_path.len())
            .filter_map(|i| load(&self.search_path[i..=i], &self.sources, name).map(|(r, _)| r))
            .collect()
    }

    /// Compiles `name`; the top-level variables it reads that are neither
    /// set in it nor globals, and the templates it names literally in
    /// `include`, `extends`, `import` and `from`.
    ///
    /// # Errors
    /// When the template is missing or does not compile.
    pub fn compile(&self, name: &str) -> Result<Compiled, Box<CompileError>> {
        let template = self.env.get_template(name).map_err(|e| {
            Box::new(if e.kind() == minijinja::ErrorKind::TemplateNotFound {
                CompileError::NotFound(name.to_owned())
            } else {
                let at = e.name().unwrap_or(name).to_owned();
                CompileError::Syntax(SyntaxError {
                    source: load(&self.search_path, &self.sources, &at).map(|(_, text)| text),
                    name: at,
                    line: e.line(),
                    detail: e
                        .detail()
                        .map_or_else(|| e.kind().to_string(), str::to_owned),
                })
            })
        })?;
        let mut variables: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| self.env.globals().all(|(g, _)| g != v))
            .collect();
        variables.sort();
        Ok(Compiled {
            variables,
            references: static_references(template.source()),
        })
    }

    pub fn search_path(&self) -> &[PathBuf] {
        &self.search_path
    }

    /// Whether `name` resolves on the search path.
    pub fn exists(&self, name: &str) -> bool {
        self.locate(name).is_some()
    }

    /// Renders `name` with `context`.
    ///
    /// # Errors
    /// When the template is missing, uses an undefined variable, runs out of
    /// fuel or fails otherwise; the message names the template and line.
    pub fn render(&self, name: &str, context: &Value) -> Result<String, TemplateError> {
        self.render_for(name, context, None)
    }

    /// Renders `name` with `context`, where a context's `agent` that is
    /// `agent`'s id becomes the agent itself: it still prints as the id,
    /// and `agent.id`, `agent.title`, `agent.description` reach its fields.
    ///
    /// # Errors
    /// As [`Templates::render`].
    pub fn render_for(
        &self,
        name: &str,
        context: &Value,
        agent: Option<&AgentInfo>,
    ) -> Result<String, TemplateError> {
        let agent = agent.filter(|a| context.get("agent").and_then(Value::as_str) == Some(&a.id));
        if let Err(why) = check_name(name) {
            return Err(TemplateError::Render(format!(
                "template name `{name}` {why}"
            )));
        }
        let template = self.env.get_template(name).map_err(|e| {
            if e.kind() == minijinja::ErrorKind::TemplateNotFound {
                TemplateError::NotFound {
                    name: name.to_owned(),
                    search: self.search_path.clone(),
                }
            } else {
                TemplateError::Render(describe(&e))
            }
        })?;
        let rendered = match agent {
            Some(a) => template.render(minijinja::context! {
                agent => minijinja::Value::from_object(a.clone()),
                ..minijinja::Value::from_serialize(context)
            }),
            None => template.render(context),
        };
        rendered.map_err(|e| {
            let mut message = describe(&e);
            // The undefined value may be deep in an include: find the innermost error.
            let mut inner = &e;
            while let Some(next) =
                std::error::Error::source(inner).and_then(|s| s.downcast_ref::<minijinja::Error>())
            {
                inner = next;
            }
            if inner.kind() == minijinja::ErrorKind::UndefinedError {
                let seen = match agent {
                    Some(a) => {
                        let mut c = context.clone();
                        c["agent"] = serde_json::to_value(a).unwrap_or_default();
                        c
                    }
                    None => context.clone(),
                };
                let missing = self.missing_variables(inner.name().unwrap_or(name), &seen);
                if !missing.is_empty() {
                    message.push_str(&format!("; not in the context: {}", missing.join(", ")));
                }
            }
            TemplateError::Render(message)
        })
    }

    /// The variables (`a`, `a.b`) template `name` uses that `context` lacks,
    /// so an undefined-value error can say which one it was.
    fn missing_variables(&self, name: &str, context: &Value) -> Vec<String> {
        let Ok(template) = self.env.get_template(name) else {
            return Vec::new();
        };
        let mut missing: Vec<String> = template
            .undeclared_variables(true)
            .into_iter()
            .filter(|path| {
                let root = path.split('.').next().unwrap_or_default();
                let mut value = Some(context);
                for part in path.split('.') {
                    value = value.and_then(|v| v.get(part));
                }
                value.is_none() && self.env.globals().all(|(g, _)| g != root)
            })
            .map(|p| format!("`{p}`"))
            .collect();
        missing.sort();
        missing
    }
}

/// A one-line description naming the template, the line and the cause chain.
fn describe(e: &minijinja::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// What [`Templates::compile`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// Top-level variables the template reads from its context.
    pub variables: Vec<String>,
    /// Templates it names with a literal in `include`, `extends`, `import`
    /// or `from`.
    pub references: Vec<String>,
}

/// Why [`Templates::compile`] failed.
#[derive(Debug, Clone)]
pub enum CompileError {
    NotFound(String),
    Syntax(SyntaxError),
}

/// Finds `name` in the first search directory that has it, refusing paths
/// that lead outside that directory.
fn load(
    search_path: &[PathBuf],
    sources: &[(String, PathBuf)],
    name: &str,
) -> Option<(Resolved, String)> {
    check_name(name).ok()?;
    if let Some((source, rest)) = crate::workflow::sources::split(name) {
        // `<source>:<name>`: that source alone, never the search path.
        let (_, dir) = sources.iter().find(|(n, _)| n == source)?;
        check_name(rest).ok()?;
        let (mut resolved, text) = load(std::slice::from_ref(dir), &[], rest)?;
        resolved.name = name.to_owned();
        return Some((resolved, text));
    }
    search_path.iter().find_map(|dir| {
        if is_builtin(dir) {
            let (_, text) = STOCK.iter().find(|(n, _)| *n == name)?;
            let resolved = Resolved {
                name: name.to_owned(),
                file: dir.join(name),
                root: dir.clone(),
                sha256: crate::digest::sha256(text.as_bytes()),
            };
            return Some((resolved, (*text).to_owned()));
        }
        let root = dir.canonicalize().ok()?;
        let file = dir.join(name).canonicalize().ok()?;
        if !file.starts_with(&root) || !file.is_file() {
            return None;
        }
        let text = std::fs::read_to_string(&file).ok()?;
        let sha256 = crate::digest::sha256(text.as_bytes());
        let resolved = Resolved {
            name: name.to_owned(),
            file,
            root: dir.clone(),
            sha256,
        };
        Some((resolved, text))
    })
}

/// The template names a template's source gives literally to `include`,
/// `extends`, `import` and `from` (comments left out). Names built at render
/// time cannot be known before it.
pub fn static_references(source: &str) -> Vec<String> {
    let mut text = source.to_owned();
    while let Some(start) = text.find("{#") {
        let end = text[start..]
            .find("#}")
            .map_or(text.len(), |e| start + e + 2);
        text.replace_range(start..end, "");
    }
    let mut names = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{%") {
        let after = &rest[start + 2..];
        let end = after.find("%}").unwrap_or(after.len());
        let tag = after[..end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        if tag.contains("ignore missing") {
            rest = &after[end..];
            continue;
        }
        let mut words = tag.splitn(2, char::is_whitespace);
        if let (Some("include" | "extends" | "import" | "from"), Some(arg)) =
            (words.next(), words.next())
        {
            let arg = arg.trim_start();
            if let Some(quote) = arg.chars().next().filter(|c| *c == '"' || *c == '\'')
                && let Some(close) = arg[1..].find(quote)
            {
                let name = arg[1..=close].to_owned();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        rest = &after[end..];
    }
    names
}

#[cfg(test)]
mod tests;
