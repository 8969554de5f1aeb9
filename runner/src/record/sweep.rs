//! A sweep's record: `sweep.json` at its root (the workflow, the objective,
//! every cell of the sweep and which of them this directory ran) and, per
//! cell, `cells/<key>/` holding the cell's runs (`run-N/`, `warmup-N/`, a
//! run record each), its `summary.*`, and `cell.json`, written last, when
//! the cell ended. A directory is self-describing, so shards run on other
//! machines can be merged from their raw samples.

use super::provenance::{Build, Machine, PluginComponent, Provenance, StageModel};
use super::summary::RunRef;
use crate::workflow::objective::Objective;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The record's format version; a merge refuses others.
pub const FORMAT: u32 = 1;

/// One cell as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedCell {
    pub key: String,
    pub values: IndexMap<String, Value>,
}

/// Which part of a sweep a directory ran: shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepManifest {
    pub format: u32,
    /// The workflow's name.
    pub workflow: String,
    pub workflow_file: PathBuf,
    pub workflow_sha256: String,
    pub objective: Objective,
    /// The axes, in the order written.
    pub axes: Vec<String>,
    pub runs: u32,
    pub warmup: u32,
    pub include_cold: bool,
    /// Cell after cell, or round after round.
    #[serde(default)]
    pub order: crate::workflow::matrix::SweepOrder,
    /// Every cell of the sweep, in plan order.
    pub cells: Vec<PlannedCell>,
    /// `None`: every cell; else the shard this directory ran.
    pub shard: Option<Shard>,
    /// The keys of the cells this directory is for.
    pub assigned: Vec<String>,
    /// For a merged sweep: the directories merged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<PathBuf>,
}

/// How a cell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// Every run ended `ok`.
    Ok,
    /// A run failed; the ones that ended `ok` are measured.
    Failed,
    Interrupted,
}

impl CellStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// What a cell's result depends on. Two cells with equal fingerprints ran
/// the same thing; a re-run skips a finished cell only when its
/// fingerprint is the one the sweep has now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub workflow_sha256: String,
    /// Every template the cell was checked with: (name, file, SHA-256).
    pub templates: Vec<(String, PathBuf, String)>,
    pub plugins: Vec<PluginComponent>,
    pub chimera: Build,
    /// Each stage's effective model (host included: a re-run against
    /// another server runs the cell again).
    pub models: Vec<StageModel>,
    /// Measured and warm-up runs asked for (a cell run with fewer is not
    /// what a sweep asking for more wants).
    pub runs: u32,
    pub warmup: u32,
}

impl Fingerprint {
    pub fn of(
        provenance: &Provenance,
        templates: &[super::provenance::TemplateFile],
        (runs, warmup): (u32, u32),
    ) -> Self {
        Self {
            workflow_sha256: provenance.workflow.sha256.clone(),
            templates: templates
                .iter()
                .map(|t| (t.name.clone(), t.file.clone(), t.sha256.clone()))
                .collect(),
            plugins: provenance.plugins.clone(),
            chimera: provenance.chimera.clone(),
            models: provenance.models.clone(),
            runs,
            warmup,
        }
    }

    /// Whether a cell recorded with `self` ran what `now` would run. A
    /// model identity either side could not learn (the server did not
    /// answer) is not a difference: a re-run while a server is down must
    /// not discard finished cells.
    pub fn same_as(&self, now: &Self) -> bool {
        let models_match = self.models.len() == now.models.len()
            && self.models.iter().zip(&now.models).all(|(a, b)| {
                let identity =
                    a.identity.is_none() || b.identity.is_none() || a.identity == b.identity;
                identity
                    && StageModel {
                        identity: None,
                        ..a.clone()
                    } == StageModel {
                        identity: None,
                        ..b.clone()
                    }
            });
        models_match
            && Self {
                models: Vec::new(),
                ..self.clone()
            } == Self {
                models: Vec::new(),
                ..now.clone()
            }
    }

    /// What makes two shards' cells incomparable: a different workflow, or
    /// a template or plugin both use that differs, named. (Cells may use
    /// different templates: a `persona` axis.) Model hosts, chimera builds and machines
    /// may differ between shards (that is what shards are for); they are
    /// kept in each cell's record.
    pub fn conflicts(&self, other: &Self) -> Vec<String> {
        let mut out = Vec::new();
        if (self.runs, self.warmup) != (other.runs, other.warmup) {
            out.push(format!(
                "the runs differ ({} measured and {} warm-up against {} and {})",
                self.runs, self.warmup, other.runs, other.warmup
            ));
        }
        if self.workflow_sha256 != other.workflow_sha256 {
            out.push(format!(
                "the workflow file differs (sha256 {} against {})",
                short(&self.workflow_sha256),
                short(&other.workflow_sha256)
            ));
        }
        for (name, file, sha) in &self.templates {
            match other.templates.iter().find(|(n, _, _)| n == name) {
                Some((_, other_file, other_sha)) if other_sha != sha => out.push(format!(
                    "template `{name}` differs: {} (sha256 {}) against {} (sha256 {})",
                    file.display(),
                    short(sha),
                    other_file.display(),
                    short(other_sha)
                )),
                _ => {}
            }
        }
        for p in &self.plugins {
            match other.plugins.iter().find(|o| o.reference == p.reference) {
                Some(o) if o.sha256 != p.sha256 => out.push(format!(
                    "plugin `{}` differs: {} (sha256 {}) against {} (sha256 {})",
                    p.reference,
                    p.origin,
                    short(&p.sha256),
                    o.origin,
                    short(&o.sha256)
                )),
                _ => {}
            }
        }
        out
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// `cells/<key>/cell.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    pub key: String,
    pub values: IndexMap<String, Value>,
    pub status: CellStatus,
    /// The runs in the order they ran.
    pub runs: Vec<RunRef>,
    pub fingerprint: Fingerprint,
    pub machine: Machine,
    /// The shard that ran it.
    pub shard: Option<Shard>,
}

/// A cell's directory under a sweep's.
pub fn cell_dir(sweep: &Path, key: &str) -> PathBuf {
    sweep.join("cells").join(key)
}

/// Reads a JSON file of the record.
///
/// # Errors
/// When it is missing or does not parse.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<T> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// The cell's record, when the cell ended (`None` when it never did: not
/// run yet, or stopped by a crash).
pub fn read_cell(sweep: &Path, key: &str) -> Option<CellRecord> {
    read_json(&cell_dir(sweep, key).join("cell.json")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(template_sha: &str, plugin_sha: &str, host: &str) -> Fingerprint {
        Fingerprint {
            workflow_sha256: "w".repeat(64),
            templates: vec![(
                "prompts/analyze.md.j2".into(),
                PathBuf::from("/a/templates/prompts/analyze.md.j2"),
                template_sha.into(),
            )],
            plugins: vec![PluginComponent {
                reference: "analyze".into(),
                name: "analyze".into(),
                version: "0.1.0".into(),
                origin: "built-in".into(),
                sha256: plugin_sha.into(),
            }],
            chimera: Build::default(),
            models: vec![StageModel {
                agent: "a".into(),
                stage: "analyze".into(),
                backend: "ollama".into(),
                name: "gemma3:latest".into(),
                host: Some(host.into()),
                options: IndexMap::new(),
                identity: None,
            }],
            runs: 3,
            warmup: 1,
        }
    }

    #[test]
    fn shards_conflict_on_templates_and_plugins_not_on_hosts() {
        let a = fingerprint("t1", "p1", "http://gpu1:11434");
        assert!(
            a.conflicts(&fingerprint("t1", "p1", "http://gpu2:11434"))
                .is_empty()
        );
        let template = a.conflicts(&fingerprint("t2", "p1", "http://gpu1:11434"));
        assert_eq!(template.len(), 1);
        assert!(
            template[0].contains("template `prompts/analyze.md.j2` differs")
                && template[0].contains("/a/templates/prompts/analyze.md.j2"),
            "{template:?}"
        );
        let plugin = a.conflicts(&fingerprint("t1", "p2", "http://gpu1:11434"));
        assert!(plugin[0].contains("plugin `analyze` differs"), "{plugin:?}");
        let mut edited = a.clone();
        edited.workflow_sha256 = "e".repeat(64);
        assert!(a.conflicts(&edited)[0].contains("workflow file differs"));
    }
}
