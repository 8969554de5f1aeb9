//! Reading back a run record for `chimera run --resume`: what completed
//! (`metrics.json`, the outputs, `calls.jsonl`) and how the run was asked for
//! (`run.json`), so a resumed run repeats it with the same sources.

use super::calls::CallEntry;
use super::provenance::{Provenance, TemplateFile};
use super::{StageMetrics, StageStatus};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What an earlier run in the same directory completed (`chimera run --resume`).
#[derive(Debug, Clone, Default)]
pub struct Resume {
    stages: Vec<StageMetrics>,
    outputs: std::collections::HashMap<(String, String), Value>,
    calls: Vec<CallEntry>,
}

/// A record `--resume` cannot read.
#[derive(Debug, thiserror::Error)]
#[error("cannot resume from {}: {source}\n  = help: start the workflow again with `chimera run`, without `--resume`", path.display())]
pub struct ResumeError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl Resume {
    /// Reads `metrics.json`, the outputs of the stages that completed, and
    /// `calls.jsonl`. Without a `metrics.json` (a run killed before its
    /// first checkpoint) nothing counts as completed.
    ///
    /// # Errors
    /// When a file of the record cannot be read or parsed.
    pub fn load(dir: &Path) -> Result<Self, ResumeError> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|source| ResumeError {
                path: dir.join(name),
                source,
            })
        };
        let bad = |name: &str, e: serde_json::Error| ResumeError {
            path: dir.join(name),
            source: std::io::Error::other(e),
        };
        #[derive(serde::Deserialize)]
        struct Recorded {
            stages: Vec<StageMetrics>,
        }
        if !dir.join("metrics.json").exists() {
            return Ok(Self::default());
        }
        let metrics: Recorded =
            serde_json::from_str(&read("metrics.json")?).map_err(|e| bad("metrics.json", e))?;
        let mut resume = Self::default();
        for stage in metrics
            .stages
            .into_iter()
            .filter(|s| s.status == StageStatus::Ok)
        {
            let name = format!("outputs/{}/{}.json", stage.agent, stage.stage);
            let output = serde_json::from_str(&read(&name)?).map_err(|e| bad(&name, e))?;
            resume
                .outputs
                .insert((stage.agent.clone(), stage.stage.clone()), output);
            resume.stages.push(stage);
        }
        if let Ok(text) = read("calls.jsonl") {
            // Lines are appended whole; a last line without its newline is
            // a write the earlier run did not finish, and is left out.
            let complete = text
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n') && !l.trim().is_empty());
            for line in complete {
                let entry: CallEntry =
                    serde_json::from_str(line).map_err(|e| bad("calls.jsonl", e))?;
                if resume
                    .outputs
                    .contains_key(&(entry.agent.clone(), entry.stage.clone()))
                {
                    resume.calls.push(entry);
                }
            }
        }
        Ok(resume)
    }

    /// The calls of the stages it keeps.
    pub fn calls(&self) -> &[CallEntry] {
        &self.calls
    }

    /// Whether the earlier run completed this stage (it will not run again).
    pub fn completed(&self, agent: &str, stage: &str) -> bool {
        self.outputs
            .contains_key(&(agent.to_owned(), stage.to_owned()))
    }

    pub fn take(&self, agent: &str, stage: &str) -> Option<(StageMetrics, Value)> {
        let key = (agent.to_owned(), stage.to_owned());
        let output = self.outputs.get(&key)?.clone();
        let mut record = self
            .stages
            .iter()
            .find(|s| s.agent == agent && s.stage == stage)?
            .clone();
        record.resumed = true;
        Some((record, output))
    }
}

/// How a run was asked for; `run.json` in the run directory, read by `--resume`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Invocation {
    pub workflow: PathBuf,
    pub input: PathBuf,
    pub backend: Option<String>,
    pub model: Option<String>,
    pub set: Vec<String>,
    /// The workflow file's hash when the run began.
    #[serde(default)]
    pub workflow_sha256: Option<String>,
    /// The search paths the run used, so a resumed run uses the same ones.
    #[serde(default)]
    pub search: Option<SearchPaths>,
    /// The templates the run was checked with, and their hashes.
    #[serde(default)]
    pub templates: Vec<TemplateFile>,
    /// Set for a run that is one of a plan's (a repeat, a warm-up, a side
    /// of a comparison): `--resume` cannot repeat such a run on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_of_plan: Option<String>,
}

/// The template and plugin search paths of a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SearchPaths {
    pub templates: Vec<PathBuf>,
    pub plugins: Vec<PathBuf>,
}

impl Invocation {
    /// What changed since the run began: the workflow, or a template it was
    /// checked with (changed, gone, or now found elsewhere on the search
    /// path; `locate` says where a name resolves now). The stages kept and
    /// the stages run again would come from different sources.
    pub fn changes(
        &self,
        now: &Provenance,
        locate: impl Fn(&str) -> Option<TemplateFile>,
    ) -> Vec<String> {
        let mut changes = Vec::new();
        if let Some(before) = &self.workflow_sha256
            && *before != now.workflow.sha256
        {
            changes.push(format!(
                "the workflow {} changed (sha256 {} then, {} now)",
                self.workflow.display(),
                short(before),
                short(&now.workflow.sha256)
            ));
        }
        for before in &self.templates {
            match locate(&before.name) {
                Some(t) if t.file == before.file && t.sha256 == before.sha256 => {}
                Some(t) if t.file != before.file => changes.push(format!(
                    "template `{}` now resolves to {} instead of {}",
                    before.name,
                    t.file.display(),
                    before.file.display()
                )),
                Some(t) => changes.push(format!(
                    "template `{}` ({}) changed (sha256 {} then, {} now)",
                    before.name,
                    t.file.display(),
                    short(&before.sha256),
                    short(&t.sha256)
                )),
                None => changes.push(format!(
                    "template `{}` ({}) is gone",
                    before.name,
                    before.file.display()
                )),
            }
        }
        changes
    }
}

/// The first 12 hex digits of a hash, for messages.
fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
