//! Command-line overrides of the models a workflow declares
//! (`--backend`, `--model`, `--set model.options.num_ctx=1024`).

use super::{BackendKind, Diagnostic, FileErrors, Pos, Workflow, options};
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
            let key = key.trim();
            if let Some(option) = key.strip_prefix("model.options.") {
                options::check(option, &value).map_err(|(msg, help)| {
                    // An unknown name is the key's fault, a bad value the value's.
                    let part = if msg.starts_with("unknown") {
                        option
                    } else {
                        raw
                    };
                    OverrideError::new(&format!("--set {pair}"), part, msg, help)
                })?;
            } else if !matches!(
                key,
                "model.host" | "model.keep_alive" | "model.name" | "model.backend"
            ) {
                return Err(OverrideError::new(
                    &arg,
                    key,
                    format!("unknown `--set` key `{key}`"),
                    Some("use `model.options.<option>`, `model.host`, `model.keep_alive`, `model.name` or `model.backend`".into()),
                ));
            } else if key == "model.backend" {
                backend(value.as_str().unwrap_or_default(), &arg)?;
            }
            sets.push((key.to_owned(), value));
        }
        for agent in &mut self.agents {
            for stage in &mut agent.stages {
                let Some(model) = &mut stage.model else {
                    continue;
                };
                if let Some(kind) = backend_kind {
                    model.backend = kind;
                }
                if let Some(name) = &overrides.model {
                    model.name.clone_from(name);
                }
                for (key, value) in &sets {
                    let text = || {
                        value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_owned)
                    };
                    match key.as_str() {
                        "model.host" => model.host = Some(text()),
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
}
