//! Finding a plugin from a workflow's `plugin:` value.
//!
//! A value with a `/` or ending in `.wasm` is a path, relative to the workflow
//! file. Any other value is a name, looked up as `<name>.wasm` where
//! templates are looked up: the `plugins/` directory beside the workflow,
//! then `plugins/` in its parent directory (a project's root, when workflows
//! live in `<project>/workflows/`), then each `CHIMERA_PLUGIN_PATH`
//! directory, then among the built-in plugins.

use super::builtin::{Builtin, builtins};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Where a plugin's bytes come from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    Builtin(&'static Builtin),
    File { name: String, path: PathBuf },
}

impl PluginSource {
    pub fn name(&self) -> &str {
        match self {
            Self::Builtin(b) => b.name,
            Self::File { name, .. } => name,
        }
    }

    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Self::Builtin(_) => None,
            Self::File { path, .. } => Some(path.clone()),
        }
    }

    /// Where it comes from, for people: `built-in` or the file path.
    pub fn origin(&self) -> String {
        match self {
            Self::Builtin(_) => "built-in".into(),
            Self::File { path, .. } => path.display().to_string(),
        }
    }

    pub(super) fn bytes(&self) -> std::io::Result<Cow<'static, [u8]>> {
        match self {
            Self::Builtin(b) => Ok(Cow::Borrowed(b.wasm)),
            Self::File { path, .. } => std::fs::read(path).map(Cow::Owned),
        }
    }

    /// The SHA-256 of the component's bytes, in hex (computed at build time
    /// for built-ins).
    ///
    /// # Errors
    /// When a plugin file cannot be read.
    pub fn sha256_hex(&self) -> std::io::Result<String> {
        match self {
            Self::Builtin(b) => Ok(b.sha256.to_owned()),
            Self::File { path, .. } => crate::digest::sha256_file(path),
        }
    }

    /// The hash computed at build time, for built-ins.
    pub(super) fn sha256(&self) -> Option<[u8; 32]> {
        match self {
            Self::Builtin(b) => hex::decode(b.sha256).ok().and_then(|v| v.try_into().ok()),
            Self::File { .. } => None,
        }
    }
}

/// Why a `plugin:` value did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("plugin file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("source `{source_name}` has no plugin `{name}` ({} does not exist)", path.display())]
    NotInSource {
        source_name: String,
        name: String,
        path: PathBuf,
    },
    #[error(
        "`{source_name}:` names a source, and the workflow's `sources:` has no `{source_name}`"
    )]
    UnknownSource { source_name: String },
    #[error("no plugin named `{name}`{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    Unknown {
        name: String,
        suggestion: Option<String>,
        /// The directories searched, in order.
        searched: Vec<PathBuf>,
        /// A crate `<dir>/<name>/` on the search path: the plugin's source,
        /// not built (or not copied) yet.
        unbuilt: Option<PathBuf>,
    },
}

impl ResolveError {
    /// What the user can do about it.
    pub fn help(&self) -> String {
        match self {
            Self::MissingFile(_) => {
                "build the plugin, or fix the path (it is relative to the workflow file)".into()
            }
            Self::NotInSource { source_name, .. } => format!(
                "a source's plugins are `plugins/<name>.wasm` under its root; check the name, or the revision `{source_name}` is pinned to"
            ),
            Self::UnknownSource { .. } => {
                "declare it under `sources:` (`dir:` or `git:` with `rev:`), or drop the `<source>:` prefix to use the search path".into()
            }
            Self::Unknown {
                name,
                searched,
                unbuilt,
                ..
            } => {
                let mut help = format!("`{name}.wasm` was looked for in, in order:");
                for dir in searched {
                    help.push_str(&format!("\n          {}", dir.display()));
                }
                help.push_str("\n          the built-in plugins");
                help.push_str("\n        put it in one of those directories or in one on `CHIMERA_PLUGIN_PATH`; `chimera plugins --workflow <file>` lists what it finds");
                if let Some(krate) = unbuilt {
                    let dir = krate.parent().unwrap_or(krate);
                    help.push_str(&format!(
                        "\n        `{}` is the plugin's crate, not built yet: `cargo build --release --target wasm32-wasip2 --manifest-path {}`, then copy `{}` to `{}`",
                        krate.display(),
                        krate.join("Cargo.toml").display(),
                        krate
                            .join("target/wasm32-wasip2/release")
                            .join(format!("{}.wasm", name.replace('-', "_")))
                            .display(),
                        dir.join(format!("{name}.wasm")).display(),
                    ));
                }
                help
            }
        }
    }
}

/// Resolves plugin references against the search path.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// Directories searched for `<name>.wasm`, in order.
    pub search_path: Vec<PathBuf>,
    /// The workflow's sources: name → the directory `<source>:<name>`
    /// plugins are read from (the source's `plugins/`).
    pub sources: Vec<(String, PathBuf)>,
}

impl Resolver {
    /// The search path for a workflow in `workflow_dir`: its `plugins/`,
    /// its parent's `plugins/`, then `CHIMERA_PLUGIN_PATH` (the same order
    /// as templates, without the user's config directory).
    pub fn for_workflow(workflow_dir: Option<&Path>) -> Self {
        let mut search_path =
            crate::search_path::around_workflow(workflow_dir, "plugins", "CHIMERA_PLUGIN_PATH");
        crate::search_path::dedup(&mut search_path);
        Self {
            search_path,
            sources: Vec::new(),
        }
    }

    /// This resolver, also finding `<source>:<name>` in each source root's `plugins/`.
    #[must_use]
    pub fn with_sources(mut self, roots: &[(String, PathBuf)]) -> Self {
        self.sources = roots
            .iter()
            .map(|(name, root)| (name.clone(), root.join("plugins")))
            .collect();
        self
    }

    /// Whether a `plugin:` value is a path rather than a name.
    pub fn is_path(reference: &str) -> bool {
        reference.contains('/') || reference.contains('\\') || reference.ends_with(".wasm")
    }

    /// Resolves `reference`; paths are relative to `base` (the workflow's directory).
    ///
    /// # Errors
    /// When a path does not exist or no plugin has that name.
    pub fn resolve(&self, reference: &str, base: &Path) -> Result<PluginSource, ResolveError> {
        if let Some((source, name)) = crate::workflow::sources::split(reference) {
            let Some((_, dir)) = self.sources.iter().find(|(n, _)| n == source) else {
                return Err(ResolveError::UnknownSource {
                    source_name: source.to_owned(),
                });
            };
            let path = dir.join(format!("{name}.wasm"));
            let inside = !name.contains(['/', '\\']) && !name.is_empty() && name != "..";
            if !inside || !path.is_file() {
                return Err(ResolveError::NotInSource {
                    source_name: source.to_owned(),
                    name: name.to_owned(),
                    path,
                });
            }
            return Ok(PluginSource::File {
                name: name.to_owned(),
                path,
            });
        }
        if Self::is_path(reference) {
            let path = if base == Path::new(".") {
                PathBuf::from(reference)
            } else {
                base.join(reference)
            };
            if !path.is_file() {
                return Err(ResolveError::MissingFile(path));
            }
            let name = path.file_stem().map_or_else(
                || reference.to_owned(),
                |s| s.to_string_lossy().into_owned(),
            );
            return Ok(PluginSource::File { name, path });
        }
        for dir in &self.search_path {
            let path = dir.join(format!("{reference}.wasm"));
            if path.is_file() {
                return Ok(PluginSource::File {
                    name: reference.to_owned(),
                    path,
                });
            }
        }
        if let Some(b) = builtins().iter().find(|b| b.name == reference) {
            return Ok(PluginSource::Builtin(b));
        }
        let names: Vec<String> = self
            .available()
            .iter()
            .map(|p| p.name().to_owned())
            .collect();
        Err(ResolveError::Unknown {
            name: reference.to_owned(),
            suggestion: crate::suggest::nearest(reference, names.iter().map(String::as_str))
                .map(str::to_owned),
            searched: self.search_path.clone(),
            unbuilt: self
                .search_path
                .iter()
                .map(|dir| dir.join(reference))
                .find(|krate| krate.join("Cargo.toml").is_file()),
        })
    }

    /// Every plugin found: the `.wasm` files on the search path, then the built-ins.
    pub fn available(&self) -> Vec<PluginSource> {
        let mut found = Vec::new();
        for dir in &self.search_path {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
                .collect();
            paths.sort();
            for path in paths {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                found.push(PluginSource::File { name, path });
            }
        }
        found.extend(builtins().iter().map(PluginSource::Builtin));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_found_beside_the_workflow_then_in_the_project_root() {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().canonicalize().unwrap();
        let workflows = project.join("workflows");
        std::fs::create_dir_all(workflows.join("plugins")).unwrap();
        std::fs::create_dir_all(project.join("plugins")).unwrap();
        std::fs::write(project.join("plugins/hello.wasm"), b"").unwrap();
        std::fs::write(project.join("plugins/both.wasm"), b"").unwrap();
        std::fs::write(workflows.join("plugins/both.wasm"), b"").unwrap();
        let resolver = Resolver::for_workflow(Some(&workflows));
        let found = |name| resolver.resolve(name, &workflows).unwrap().path().unwrap();
        assert_eq!(found("hello"), project.join("plugins/hello.wasm"));
        assert_eq!(found("both"), workflows.join("plugins/both.wasm"));

        let err = resolver.resolve("missing", &workflows).unwrap_err();
        let help = err.help();
        let beside = help.find(&format!("{}\n", workflows.join("plugins").display()));
        let root = help.find(&format!("{}\n", project.join("plugins").display()));
        assert!(
            beside.is_some() && root.is_some() && beside < root,
            "{help}"
        );
        assert!(help.contains("`missing.wasm`"), "{help}");
        assert!(!help.contains("not built"), "{help}");

        std::fs::create_dir_all(project.join("plugins/my-plugin")).unwrap();
        std::fs::write(project.join("plugins/my-plugin/Cargo.toml"), b"").unwrap();
        let help = resolver
            .resolve("my-plugin", &workflows)
            .unwrap_err()
            .help();
        let krate = project.join("plugins/my-plugin");
        assert!(
            help.contains(&format!(
                "--manifest-path {}",
                krate.join("Cargo.toml").display()
            )) && help.contains(&format!(
                "copy `{}` to `{}`",
                krate
                    .join("target/wasm32-wasip2/release/my_plugin.wasm")
                    .display(),
                project.join("plugins/my-plugin.wasm").display()
            )),
            "{help}"
        );
    }

    #[test]
    fn a_source_prefix_looks_in_that_source_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let team = tmp.path().join("team");
        std::fs::create_dir_all(team.join("plugins")).unwrap();
        std::fs::write(team.join("plugins/hello.wasm"), b"").unwrap();
        let resolver =
            Resolver::for_workflow(Some(tmp.path())).with_sources(&[("team".into(), team.clone())]);
        let found = resolver.resolve("team:hello", tmp.path()).unwrap();
        assert_eq!(found.path().unwrap(), team.join("plugins/hello.wasm"));
        assert!(
            matches!(
                resolver.resolve("team:ingest", tmp.path()),
                Err(ResolveError::NotInSource { .. })
            ),
            "a built-in's name is not looked up outside the source"
        );
        assert!(matches!(
            resolver.resolve("other:hello", tmp.path()),
            Err(ResolveError::UnknownSource { .. })
        ));
        assert!(matches!(
            resolver.resolve("team:../plugins/hello", tmp.path()),
            Err(ResolveError::NotInSource { .. })
        ));
    }
}
