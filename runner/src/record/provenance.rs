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
    /// The workflow's `sources:` as they resolved (a git source's commit).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sources: std::collections::BTreeMap<String, crate::sources::SourceRecord>,
    /// The lock file the run was checked against (`--locked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockRef>,
}

/// A lock file a run matched: where, and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRef {
    pub file: PathBuf,
    pub sha256: String,
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
    // Same names, same hashes, or say which differ.
    let mut by_name = |what: &str, a: Vec<(&String, &String)>, b: Vec<(&String, &String)>| {
        let names: std::collections::BTreeSet<&String> =
            a.iter().chain(&b).map(|(n, _)| *n).collect();
        for name in names {
            let sha = |side: &[(&String, &String)]| {
                side.iter()
                    .find(|(n, _)| *n == name)
                    .map_or_else(|| "absent".to_owned(), |(_, h)| short(h))
            };
            diff(format!("{what} `{name}`"), sha(&a), sha(&b));
        }
    };
    if !declared.templates {
        by_name("template", template_hashes(a), template_hashes(b));
    }
    by_name("plugin", plugin_hashes(a), plugin_hashes(b));
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
            "{}, {}, {} bytes, {}",
            m.cpu.as_deref().unwrap_or("cpu n/a"),
            m.cores.map_or_else(
                || "n/a cores".to_owned(),
                |c| crate::words::plural(c, "core")
            ),
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

/// The model options that differ between two runs, one line per option
/// and change, naming the stages it changed on (`every stage` when all):
/// "`temperature`: `0.6` → `0.8` (analyze/analyze, report/write)".
pub fn option_changes(a: &Provenance, b: &Provenance) -> Vec<String> {
    // (option, before, after) → stages, in the order first met.
    let mut changes: indexmap::IndexMap<(String, String, String), Vec<String>> =
        indexmap::IndexMap::new();
    let mut stages = 0;
    for m in &a.models {
        let Some(other) = b
            .models
            .iter()
            .find(|n| n.agent == m.agent && n.stage == m.stage)
        else {
            continue;
        };
        stages += 1;
        let keys: indexmap::IndexSet<&String> =
            m.options.keys().chain(other.options.keys()).collect();
        for key in keys {
            let show = |v: Option<&Value>| v.map_or_else(|| "unset".to_owned(), Value::to_string);
            let (x, y) = (m.options.get(key), other.options.get(key));
            if x != y {
                changes
                    .entry((key.clone(), show(x), show(y)))
                    .or_default()
                    .push(format!("{}/{}", m.agent, m.stage));
            }
        }
    }
    changes
        .into_iter()
        .map(|((key, x, y), on)| {
            let on = if on.len() == stages && stages > 1 {
                "every stage".to_owned()
            } else {
                on.join(", ")
            };
            format!("option `{key}`: `{x}` → `{y}` ({on})")
        })
        .collect()
}

fn template_hashes(p: &Provenance) -> Vec<(&String, &String)> {
    p.templates.iter().map(|t| (&t.name, &t.sha256)).collect()
}

fn plugin_hashes(p: &Provenance) -> Vec<(&String, &String)> {
    p.plugins
        .iter()
        .map(|q| (&q.reference, &q.sha256))
        .collect()
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

    #[test]
    fn differences_name_what_changed_unless_it_is_declared() {
        let template = |sha: &str| TemplateFile {
            name: "personas/p.j2".into(),
            file: PathBuf::from("/t/personas/p.j2"),
            root: PathBuf::from("/t"),
            sha256: sha.into(),
        };
        let model = |name: &str, num_ctx: i64| StageModel {
            agent: "a".into(),
            stage: "s".into(),
            backend: "ollama".into(),
            name: name.into(),
            host: None,
            options: [("num_ctx".to_owned(), Value::from(num_ctx))]
                .into_iter()
                .collect(),
            identity: None,
        };
        let a = Provenance {
            templates: vec![template("aaaa")],
            models: vec![model("gemma3", 512)],
            ..Provenance::default()
        };
        let options_only = Provenance {
            models: vec![model("gemma3", 8192)],
            ..a.clone()
        };
        assert!(differences(&a, &options_only, Declared::default()).is_empty());
        let b = Provenance {
            templates: vec![template("bbbb")],
            models: vec![model("llama3", 512)],
            ..a.clone()
        };
        let found = differences(&a, &b, Declared::default());
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("template `personas/p.j2`"),
            "{found:?}"
        );
        assert!(found[1].starts_with("the model of `a/s`"), "{found:?}");
        let declared = Declared {
            models: true,
            templates: true,
        };
        assert!(differences(&a, &b, declared).is_empty());
    }

    #[test]
    fn option_changes_name_the_option_its_values_and_its_stages() {
        let model = |stage: &str, options: &[(&str, Value)]| StageModel {
            agent: "a".into(),
            stage: stage.into(),
            backend: "ollama".into(),
            name: "gemma3".into(),
            host: None,
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            identity: None,
        };
        let a = Provenance {
            models: vec![
                model("s", &[("temperature", 0.6.into()), ("num_ctx", 512.into())]),
                model("t", &[("temperature", 0.6.into()), ("num_ctx", 512.into())]),
            ],
            ..Provenance::default()
        };
        let b = Provenance {
            models: vec![
                model("s", &[("temperature", 0.8.into()), ("num_ctx", 512.into())]),
                model(
                    "t",
                    &[
                        ("temperature", 0.8.into()),
                        ("top_k", 40.into()),
                        ("num_ctx", 512.into()),
                    ],
                ),
            ],
            ..Provenance::default()
        };
        assert_eq!(
            option_changes(&a, &b),
            [
                "option `temperature`: `0.6` → `0.8` (every stage)",
                "option `top_k`: `unset` → `40` (a/t)"
            ]
        );
        assert!(option_changes(&a, &a).is_empty());
    }
}
