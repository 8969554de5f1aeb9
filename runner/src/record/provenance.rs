//! What produced a run, kept in `metrics.json` so a record can say what ran:
//! the workflow's hash, every template rendered (the file it resolved to, the
//! search-path entry and its hash), every plugin (origin and component
//! hash), each stage's effective model after every override, this chimera's
//! version and commit, and the machine.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

/// The `provenance` section of `metrics.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub workflow: WorkflowFile,
    pub chimera: Build,
    pub machine: Machine,
    /// Where templates were looked for, in order (first match wins).
    pub template_path: Vec<PathBuf>,
    /// Where plugins were looked for by name, in order, before the built-ins.
    pub plugin_path: Vec<PathBuf>,
    /// Every template loaded (rendered, included, imported), in load order.
    pub templates: Vec<TemplateFile>,
    /// Every plugin the workflow uses.
    pub plugins: Vec<PluginComponent>,
    /// Each stage's model after the workflow's levels and every override.
    pub models: Vec<StageModel>,
}

/// The workflow file and its hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowFile {
    pub file: PathBuf,
    pub sha256: String,
}

/// A template as it resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateFile {
    /// The name the workflow or another template used.
    pub name: String,
    pub file: PathBuf,
    /// The search-path entry it was found in.
    pub root: PathBuf,
    pub sha256: String,
}

/// A plugin as it was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginComponent {
    /// The workflow's `plugin:` value.
    pub reference: String,
    /// What the plugin calls itself, and its version.
    pub name: String,
    pub version: String,
    /// `built-in` or the component's path.
    pub origin: String,
    /// SHA-256 of the component's bytes.
    pub sha256: String,
}

/// One stage's effective model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageModel {
    pub agent: String,
    pub stage: String,
    pub backend: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub options: indexmap::IndexMap<String, Value>,
    /// The model's identity beyond its name: `sha256:<hex>` of an embedded
    /// GGUF, `digest:<hex>` as Ollama lists it, `id:<id>` as an
    /// OpenAI-compatible server lists it; `null` when the server does not say.
    pub identity: Option<String>,
}

/// The build of chimera that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub version: String,
    /// The commit HEAD was at when the binary was built (`unknown` outside git).
    pub git_commit: String,
}

impl Default for Build {
    fn default() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            git_commit: env!("CHIMERA_GIT_COMMIT").to_owned(),
        }
    }
}

/// The machine a run ran on; a field it could not read is `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: Option<String>,
    /// Cores this process could use.
    pub cores: Option<usize>,
    pub memory_bytes: Option<u64>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub arch: String,
}

impl Machine {
    /// Reads the machine's description (Linux `/proc` and `/etc/os-release`;
    /// elsewhere only what the standard library knows).
    pub fn current() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let field = |text: &str, key: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once([':', '='])?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        Self {
            cpu: read("/proc/cpuinfo").and_then(|t| field(&t, "model name")),
            cores: std::thread::available_parallelism().ok().map(usize::from),
            memory_bytes: read("/proc/meminfo")
                .and_then(|t| field(&t, "MemTotal"))
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024),
            os: read("/etc/os-release")
                .and_then(|t| field(&t, "PRETTY_NAME"))
                .or_else(|| Some(std::env::consts::OS.to_owned())),
            kernel: read("/proc/sys/kernel/osrelease").map(|k| k.trim().to_owned()),
            arch: std::env::consts::ARCH.to_owned(),
        }
    }
}

/// What a comparison declares its two sides change, beyond model options
/// (which a comparison may always change).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Declared {
    /// Backend, model name, host (and so the model's identity).
    pub models: bool,
    /// Templates (a side sets its own persona).
    pub templates: bool,
}

/// What differs between two runs' provenance beyond model options and what
/// `declared` covers, for people; empty when the runs are comparable.
pub fn differences(a: &Provenance, b: &Provenance, declared: Declared) -> Vec<String> {
    let mut out = Vec::new();
    let mut diff = |what: String, x: String, y: String| {
        if x != y {
            out.push(format!("{what}: `{x}` against `{y}`"));
        }
    };
    if !declared.templates {
        let names: std::collections::BTreeSet<&String> = a
            .templates
            .iter()
            .chain(&b.templates)
            .map(|t| &t.name)
            .collect();
        for name in names {
            let sha = |p: &Provenance| {
                p.templates
                    .iter()
                    .find(|t| &t.name == name)
                    .map_or_else(|| "absent".to_owned(), |t| short(&t.sha256))
            };
            diff(format!("template `{name}`"), sha(a), sha(b));
        }
    }
    let references: std::collections::BTreeSet<&String> = a
        .plugins
        .iter()
        .chain(&b.plugins)
        .map(|p| &p.reference)
        .collect();
    for reference in references {
        let sha = |p: &Provenance| {
            p.plugins
                .iter()
                .find(|q| &q.reference == reference)
                .map_or_else(|| "absent".to_owned(), |q| short(&q.sha256))
        };
        diff(format!("plugin `{reference}`"), sha(a), sha(b));
    }
    if !declared.models {
        for m in &a.models {
            let other = b
                .models
                .iter()
                .find(|n| n.agent == m.agent && n.stage == m.stage);
            let show = |s: Option<&StageModel>| {
                s.map_or_else(
                    || "no model".to_owned(),
                    |s| {
                        format!(
                            "{} {} at {} ({})",
                            s.backend,
                            s.name,
                            s.host.as_deref().unwrap_or("the default host"),
                            s.identity.as_deref().unwrap_or("identity n/a")
                        )
                    },
                )
            };
            diff(
                format!("the model of `{}/{}`", m.agent, m.stage),
                show(Some(m)),
                show(other),
            );
        }
    }
    diff(
        "chimera".into(),
        format!("{} {}", a.chimera.version, a.chimera.git_commit),
        format!("{} {}", b.chimera.version, b.chimera.git_commit),
    );
    let machine = |m: &Machine| {
        format!(
            "{}, {} cores, {} bytes, {}",
            m.cpu.as_deref().unwrap_or("cpu n/a"),
            m.cores.map_or_else(|| "n/a".to_owned(), |c| c.to_string()),
            m.memory_bytes
                .map_or_else(|| "n/a".to_owned(), |b| b.to_string()),
            m.os.as_deref().unwrap_or("os n/a")
        )
    };
    diff(
        "the machine".into(),
        machine(&a.machine),
        machine(&b.machine),
    );
    out
}

fn short(sha: &str) -> String {
    sha.get(..12).unwrap_or(sha).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_is_described_from_what_the_system_reports() {
        let m = Machine::current();
        assert_eq!(m.arch, std::env::consts::ARCH);
        assert!(m.cores.is_some_and(|c| c >= 1));
        if cfg!(target_os = "linux") {
            assert!(m.memory_bytes.is_some_and(|b| b > 1 << 20), "{m:?}");
            assert!(m.kernel.is_some(), "{m:?}");
        }
    }
}
