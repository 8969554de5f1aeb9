//! Command-line overrides of the models a workflow declares
//! (`--backend`, `--model`, `--set model.options.num_ctx=1024`).

use super::{BackendKind, Workflow, options};
use serde_json::Value;

/// Overrides applied to every stage that has a model.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub backend: Option<String>,
    pub model: Option<String>,
    /// `key=value` pairs; keys are `model.options.<name>`, `model.host`,
    /// `model.keep_alive`, `model.name` or `model.backend`.
    pub set: Vec<String>,
}

/// Why an override was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OverrideError(String);

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.backend.is_none() && self.model.is_none() && self.set.is_empty()
    }
}

fn backend(name: &str) -> Result<BackendKind, OverrideError> {
    BackendKind::parse(name).ok_or_else(|| {
        let hint = crate::suggest::nearest(name, BackendKind::NAMES).map_or_else(
            || format!("backends: {}", BackendKind::NAMES.join(", ")),
            |s| format!("did you mean `{s}`?"),
        );
        OverrideError(format!("unknown backend `{name}`; {hint}"))
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
        let backend_kind = overrides.backend.as_deref().map(backend).transpose()?;
        let mut sets = Vec::new();
        for pair in &overrides.set {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                OverrideError(format!(
                    "`--set {pair}` needs the form `key=value`, e.g. `model.options.num_ctx=1024`"
                ))
            })?;
            let value = scalar(value.trim());
            let key = key.trim();
            if let Some(option) = key.strip_prefix("model.options.") {
                options::check(option, &value).map_err(|(msg, help)| {
                    OverrideError(help.map_or_else(
                        || format!("`--set {pair}`: {msg}"),
                        |h| format!("`--set {pair}`: {msg}; {h}"),
                    ))
                })?;
            } else if !matches!(
                key,
                "model.host" | "model.keep_alive" | "model.name" | "model.backend"
            ) {
                return Err(OverrideError(format!(
                    "`--set {pair}`: unknown key `{key}`; use `model.options.<option>`, `model.host`, `model.keep_alive`, `model.name` or `model.backend`"
                )));
            } else if key == "model.backend" {
                backend(value.as_str().unwrap_or_default())?;
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
                        "model.backend" => model.backend = backend(&text())?,
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
        assert!(
            w.apply(&typo)
                .unwrap_err()
                .to_string()
                .contains("did you mean `temperature`")
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
