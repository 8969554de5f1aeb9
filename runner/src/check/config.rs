//! A stage's `with:` against the JSON Schema its plugin declares.
//!
//! Errors point at the offending key or value in the workflow file and, for
//! an unknown key or a misspelt stage reference, suggest the nearest valid
//! name. A string whose schema says `"format": "chimera-stage"` must name an
//! earlier stage of the same agent (so `from: analyse` fails here, before any
//! model call, instead of in the report stage after the analyze call).

use crate::workflow::{Diagnostic, Stage};
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

/// The `format` of a string naming an earlier stage of the same agent (the
/// SDK's `STAGE_FORMAT`).
pub const STAGE_FORMAT: &str = "chimera-stage";

/// Checks `stage.config` against `schema`; `earlier` are the ids of the
/// agent's stages before this one.
pub fn check(plugin: &str, stage: &Stage, schema: &Value, earlier: &[String]) -> Vec<Diagnostic> {
    let known = earlier.to_vec();
    let validator = match jsonschema::options()
        .should_validate_formats(true)
        .with_format(STAGE_FORMAT, move |s: &str| known.iter().any(|k| k == s))
        .build(schema)
    {
        Ok(v) => v,
        Err(e) => {
            return vec![
                Diagnostic::new(
                    format!("plugin `{plugin}` declares a configuration schema that is not valid JSON Schema: {e}"),
                    stage.plugin.pos,
                )
                .help("this is a bug in the plugin; its author must fix `config-schema` (the SDK's `Info::with_config` derives a valid one)"),
            ];
        }
    };
    let at = &stage.config_positions;
    validator
        .iter_errors(&stage.config)
        .map(|error| {
            let pointer = error.instance_path().as_str().to_owned();
            let key = pointer
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .replace("~1", "/")
                .replace("~0", "~");
            let shown = if pointer.is_empty() {
                "`with:`".to_owned()
            } else {
                format!("`{}`", pointer.trim_start_matches('/').replace('/', "."))
            };
            let properties = || -> Vec<&str> {
                let mut schema_at = schema;
                for part in pointer.split('/').skip(1) {
                    schema_at = schema_at
                        .get("properties")
                        .and_then(|p| p.get(part))
                        .unwrap_or(&Value::Null);
                }
                schema_at
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default()
            };
            match error.kind() {
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    let name = unexpected.first().cloned().unwrap_or_default();
                    let child = format!(
                        "{pointer}/{}",
                        crate::workflow::node::pointer_segment(&name)
                    );
                    let valid = properties();
                    let help = crate::suggest::help(
                        &name,
                        valid.iter().copied(),
                        &format!("plugin `{plugin}` takes"),
                        &format!("plugin `{plugin}` takes no settings here"),
                    );
                    Diagnostic::new(
                        format!(
                            "unknown key `{name}` in the `with:` of stage `{}` (plugin `{plugin}`)",
                            stage.id
                        ),
                        at.key(&child).or(at.value(&pointer)),
                    )
                    .help(help)
                }
                ValidationErrorKind::Format { format } if format == STAGE_FORMAT => {
                    let value = error.instance().as_str().unwrap_or_default().to_owned();
                    let help = crate::suggest::help(
                        &value,
                        earlier.iter().map(String::as_str),
                        "earlier stages",
                        "it is the agent's first stage, so there is no earlier stage to name",
                    );
                    Diagnostic::new(
                        format!(
                            "`{key}: {value}` in stage `{}` names no earlier stage of its agent",
                            stage.id
                        ),
                        at.value(&pointer),
                    )
                    .help(help)
                }
                _ => Diagnostic::new(
                    format!(
                        "{shown} in the `with:` of stage `{}` (plugin `{plugin}`): {}",
                        stage.id,
                        plain(&error.to_string())
                    ),
                    at.value(&pointer).or(at.value("")),
                )
                .help(format!(
                    "`chimera plugins --json` shows plugin `{plugin}`'s configuration schema"
                )),
            }
        })
        .collect()
}

/// jsonschema's message with the JSON quoting of strings kept, lowercased
/// first letter.
fn plain(message: &str) -> String {
    let mut chars = message.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect())
}
