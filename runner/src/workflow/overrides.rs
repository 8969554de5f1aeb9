//! Command-line overrides of the models a workflow declares
//! (`--backend`, `--model`, `--set model.options.num_ctx=1024`).

use super::{Agent, BackendKind, Diagnostic, FileErrors, Pos, Workflow, options};
use serde_json::Value;

/// Overrides applied to every stage that has a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub backend: Option<String>,
    pub model: Option<String>,
    /// `key=value` pairs; keys are `model.options.<name>`, `model.host`,
    /// `model.keep_alive`, `model.name` or `model.backend`.
    pub set: Vec<String>,
}

/// Why an override was refused: rendered like a workflow error, with the
/// command-line argument quoted and a caret run under the offending part.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OverrideError(Box<FileErrors>);

impl OverrideError {
    /// An error about `arg` (as typed, e.g. `--set model.host=x`), pointing
    /// at `part` of it (its last occurrence: the value, for
    /// `--set model.options.num_ctx=e`, not the `e` of `--set`).
    fn new(arg: &str, part: &str, message: String, help: Option<String>) -> Self {
        let start = arg.rfind(part).unwrap_or(0);
        let pos = Pos {
            line: 1,
            column: arg[..start].chars().count() as u64 + 1,
            len: part.chars().count().max(1) as u64,
        };
        let d = Diagnostic::new(message, pos).help_opt(help);
        Self(Box::new(FileErrors::new(
            std::path::Path::new("the command line"),
            arg,
            vec![d],
        )))
    }
}

/// Why a setting's key or value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub message: String,
    pub help: Option<String>,
    /// The key is at fault (else the value).
    pub at_key: bool,
}

/// The settings `--set`, a comparison side's `set:` and a matrix axis take
/// (after an optional scope).
pub const SET_KEYS: &str =
    "`model.options.<option>`, `model.host`, `model.keep_alive`, `model.name` or `model.backend`";

/// Checks one setting (without its scope): a known key, and a value that
/// fits it.
///
/// # Errors
/// An unknown key, an option value out of range, an unknown backend.
pub fn check_key(key: &str, value: &Value) -> Result<(), KeyError> {
    if let Some(option) = key.strip_prefix("model.options.") {
        return options::check(option, value).map_err(|(message, help)| KeyError {
            at_key: message.starts_with("unknown"),
            message,
            help,
        });
    }
    match key {
        "model.host" | "model.keep_alive" | "model.name" => Ok(()),
        "model.backend" => {
            let name = value.as_str().unwrap_or_default();
            match BackendKind::parse(name) {
                Some(_) => Ok(()),
                None => Err(KeyError {
                    message: format!("unknown backend `{name}`"),
                    help: Some(crate::suggest::help(
                        name,
                        BackendKind::NAMES,
                        "backends",
                        "",
                    )),
                    at_key: false,
                }),
            }
        }
        _ => Err(KeyError {
            message: format!("unknown setting `{key}`"),
            help: Some(format!(
                "use {SET_KEYS}, optionally scoped as `<agent>:`, `<agent>/<stage>:` or `*/<stage>:`"
            )),
            at_key: true,
        }),
    }
}

/// Which stages a setting reaches: `model.options.num_ctx` every stage,
/// `collector:model…` the stages of agent `collector`,
/// `collector/analyze:model…` one stage, `*/analyze:model…` the stage
/// `analyze` of every agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub agent: Option<String>,
    pub stage: Option<String>,
}

/// Splits `agent/stage:model.options.num_ctx` into its scope and its key.
pub fn split_scope(key: &str) -> (Scope, &str) {
    let Some((scope, rest)) = key.split_once(':') else {
        return (Scope::default(), key);
    };
    let (agent, stage) = match scope.split_once('/') {
        Some((a, s)) => (a, Some(s.to_owned())),
        None => (scope, None),
    };
    let agent = (agent != "*").then(|| agent.to_owned());
    (Scope { agent, stage }, rest)
}

impl Scope {
    pub fn matches(&self, agent: &str, stage: &str) -> bool {
        self.agent.as_deref().is_none_or(|a| a == agent)
            && self.stage.as_deref().is_none_or(|s| s == stage)
    }

    /// The scope must name an agent and a stage the workflow has.
    ///
    /// # Errors
    /// For a name the workflow does not have (with the nearest one).
    pub fn check(&self, agents: &[Agent]) -> Result<(), KeyError> {
        let stages = || {
            agents
                .iter()
                .flat_map(|a| a.stages.iter().map(move |s| (a, s)))
        };
        let unknown = |what: &str, name: &str, known: Vec<&str>| KeyError {
            message: format!("the workflow has no {what} `{name}`"),
            help: Some(crate::suggest::help(name, known, &format!("{what}s"), "")),
            at_key: true,
        };
        if let Some(agent) = &self.agent
            && !agents.iter().any(|a| &a.id == agent)
        {
            return Err(unknown(
                "agent",
                agent,
                agents.iter().map(|a| a.id.as_str()).collect(),
            ));
        }
        if let Some(stage) = &self.stage
            && !stages().any(|(a, s)| &s.id == stage && self.matches(&a.id, &s.id))
        {
            return Err(unknown(
                "stage",
                stage,
                stages()
                    .filter(|(a, _)| self.agent.as_deref().is_none_or(|x| x == a.id))
                    .map(|(_, s)| s.id.as_str())
                    .collect(),
            ));
        }
        Ok(())
    }
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.backend.is_none() && self.model.is_none() && self.set.is_empty()
    }
}

/// `arg` is the argument as typed, for the message.
fn backend(name: &str, arg: &str) -> Result<BackendKind, OverrideError> {
    BackendKind::parse(name).ok_or_else(|| {
        let hint = crate::suggest::help(name, BackendKind::NAMES, "backends", "");
        OverrideError::new(arg, name, format!("unknown backend `{name}`"), Some(hint))
    })
}

/// A value as YAML would read it: `0.8` is a number, `true` a bool, `[a, b]` a list.
fn scalar(text: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

impl Workflow {
    /// Applies `overrides` to every stage's model.
    ///
    /// # Errors
    /// For an unknown backend, an unknown key, or an option that fails its check.
    pub fn apply(&mut self, overrides: &Overrides) -> Result<(), OverrideError> {
        let backend_kind = overrides
            .backend
            .as_deref()
            .map(|b| backend(b, &format!("--backend {b}")))
            .transpose()?;
        let mut sets = Vec::new();
        for pair in &overrides.set {
            let arg = format!("--set {pair}");
            let (key, raw) = pair.split_once('=').ok_or_else(|| {
                OverrideError::new(
                    &arg,
                    pair,
                    "this `--set` has no `=`".into(),
                    Some("write `key=value`, e.g. `model.options.num_ctx=1024`".into()),
                )
            })?;
            let value = scalar(raw.trim());
            let (scope, key) = split_scope(key.trim());
            check_key(key, &value).map_err(|e| {
                // An unknown name is the key's fault, a bad value the value's.
                let part = if e.at_key {
                    key.strip_prefix("model.options.").unwrap_or(key)
                } else {
                    raw
                };
                OverrideError::new(&arg, part, e.message, e.help)
            })?;
            if let Err(e) = scope.check(&self.agents) {
                let part = pair.split_once(':').map_or(pair.as_str(), |(s, _)| s);
                return Err(OverrideError::new(&arg, part, e.message, e.help));
            }
            sets.push((scope, key.to_owned(), value));
        }
        for agent in &mut self.agents {
            for stage in &mut agent.stages {
                let Some(model) = &mut stage.model else {
                    continue;
                };
                let (agent_id, stage_id) = (agent.id.as_str(), stage.id.as_str());
                if let Some(kind) = backend_kind {
                    model.backend = kind;
                }
                if let Some(name) = &overrides.model {
                    model.name.clone_from(name);
                }
                for (scope, key, value) in &sets {
                    if !scope.matches(agent_id, stage_id) {
                        continue;
                    }
                    let text = || {
                        value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_owned)
                    };
                    match key.as_str() {
                        "model.host" => {
                            // One host pins a pool to it.
                            model.host = Some(text());
                            model.hosts.clear();
                        }
                        "model.keep_alive" => model.keep_alive = Some(value.clone()),
                        "model.name" => model.name = text(),
                        "model.backend" => model.backend = backend(&text(), key)?,
                        option => {
                            let name = option.trim_start_matches("model.options.");
                            model.options.insert(name.to_owned(), value.clone());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const YAML: &str = "version: 1\nname: w\nmodel:\n  name: gemma3:latest\n  options: {num_ctx: 512}\nagents:\n  - id: a\n    stages:\n      - id: ingest\n        plugin: ingest\n      - id: analyze\n        plugin: analyze\n";

    #[test]
    fn overrides_reach_every_stage_model_and_are_checked() {
        let mut w = Workflow::from_source(Path::new("w.yaml"), YAML).unwrap();
        let o = Overrides {
            backend: Some("embedded".into()),
            model: Some("smollm2-135m".into()),
            set: vec![
                "model.options.num_ctx=1024".into(),
                "model.options.temperature=0.2".into(),
            ],
        };
        w.apply(&o).unwrap();
        let m = w.agents[0].stages[1].model.as_ref().unwrap();
        assert_eq!(
            (m.backend, m.name.as_str()),
            (BackendKind::Embedded, "smollm2-135m")
        );
        assert_eq!(m.options["num_ctx"], 1024);
        assert_eq!(m.options["temperature"], 0.2);

        let bad = Overrides {
            set: vec!["model.options.num_ctx=-1".into()],
            ..Overrides::default()
        };
        assert!(w.apply(&bad).unwrap_err().to_string().contains("num_ctx"));
        let typo = Overrides {
            set: vec!["model.options.temprature=1".into()],
            ..Overrides::default()
        };
        let shown = w.apply(&typo).unwrap_err().to_string();
        assert!(shown.contains("did you mean `temperature`"), "{shown}");
        assert!(
            shown.contains("1 | --set model.options.temprature=1\n")
                && shown.contains("  |                     ^^^^^^^^^^\n"),
            "quotes the argument with a caret run under the name: {shown}"
        );
        let backend = Overrides {
            backend: Some("olama".into()),
            ..Overrides::default()
        };
        assert!(
            w.apply(&backend)
                .unwrap_err()
                .to_string()
                .contains("did you mean `ollama`")
        );
    }

    #[test]
    fn a_scoped_setting_reaches_only_its_agent_or_stage() {
        const TWO: &str = "version: 1\nname: w\nmodel: {name: m, options: {num_ctx: 512}}\nagents:\n  - id: a\n    stages:\n      - {id: ingest, plugin: ingest}\n      - {id: analyze, plugin: analyze}\n  - id: b\n    stages:\n      - {id: analyze, plugin: analyze}\n";
        let ctx = |w: &Workflow| -> Vec<i64> {
            w.stages()
                .map(|(_, s)| {
                    s.model.as_ref().unwrap().options["num_ctx"]
                        .as_i64()
                        .unwrap()
                })
                .collect()
        };
        let apply = |set: &str| {
            let mut w = Workflow::from_source(Path::new("w.yaml"), TWO).unwrap();
            w.apply(&Overrides {
                set: vec![set.into()],
                ..Overrides::default()
            })
            .map(|()| ctx(&w))
            .map_err(|e| e.to_string())
        };
        assert_eq!(apply("model.options.num_ctx=1").unwrap(), [1, 1, 1]);
        assert_eq!(apply("a:model.options.num_ctx=1").unwrap(), [1, 1, 512]);
        assert_eq!(
            apply("a/analyze:model.options.num_ctx=1").unwrap(),
            [512, 1, 512]
        );
        assert_eq!(
            apply("*/analyze:model.options.num_ctx=1").unwrap(),
            [512, 1, 1]
        );
        let unknown = apply("b/ingest:model.options.num_ctx=1").unwrap_err();
        assert!(
            unknown.contains("the workflow has no stage `ingest`"),
            "{unknown}"
        );
        let typo = apply("c:model.options.num_ctx=1").unwrap_err();
        assert!(typo.contains("no agent `c`"), "{typo}");
    }
}
