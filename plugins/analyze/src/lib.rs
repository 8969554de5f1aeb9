//! The built-in `analyze` stage: asks the stage's model for a technical
//! analysis of an earlier `ingest` stage's inventory, then pulls the summary,
//! key findings and recommendations out of the answer.
//!
//! The agent's persona (if any) is the system prompt; the stage's prompt
//! template is the user prompt. Both render with: `agent`, `stage`, `config`
//! (this stage's `with:`), `data` (the whole ingest output), its fields
//! `summary`, `total_files`, `total_bytes`, `roots`, `types`, `errors`, and
//! `metrics` (the `max_metrics` fields with the most samples; `metrics_omitted`
//! counts the rest).
//!
//! Output: `analysis` (the model's full answer), `summary`, `key_findings`,
//! `recommendations`, `persona_prompt` (rendered, or null), `prompt`,
//! `eval_count`, `prompt_eval_count` (null when the backend reported none).

mod extract;

use chimera_plugin::{
    Info, Input, JsonSchema, Plugin, StageError, export_plugin, llm, log, render,
};
use serde::Deserialize;
use serde_json::{Value, json};

struct Analyze;

/// The stage's `with:` configuration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(crate = "chimera_plugin::schemars")]
struct Config {
    /// The id of the earlier ingest stage whose inventory is analysed.
    #[schemars(extend("format" = chimera_plugin::STAGE_FORMAT))]
    from: String,
    /// Whether the agent's persona becomes the system prompt.
    persona: bool,
    /// How many metric fields (most samples first) the templates see.
    max_metrics: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            from: "ingest".into(),
            persona: true,
            max_metrics: 12,
        }
    }
}

impl Plugin for Analyze {
    fn info() -> Info {
        Info::new(
            "analyze",
            env!("CARGO_PKG_VERSION"),
            "Asks the model for a technical analysis of an ingest inventory and extracts its summary, key findings and recommendations.",
        )
        .with_config::<Config>()
        .with_template_context(CONTEXT)
    }

    fn run(input: Input) -> Result<Value, StageError> {
        let config: Config = input.config()?;
        let data = ingest_output(&input, &config.from)?;
        let Some(prompt_template) = input.prompt_template.as_deref() else {
            return Err(StageError::InvalidConfig(format!(
                "stage `{}` has no prompt template; set `prompt: prompts/analyze.md.j2` on the stage",
                input.stage_id
            )));
        };
        let context = context(&input, &config, data);
        let persona_prompt = match input.persona_template.as_deref() {
            Some(persona) if config.persona => Some(rendered(persona, &context)?),
            _ => None,
        };
        let prompt = rendered(prompt_template, &context)?;
        let answer = llm::generate(persona_prompt.as_deref(), &prompt)?;
        let found = extract::extract(&answer.text);
        if answer.text.trim().is_empty() {
            log::warn(
                "the model answered with no text; check the stage's model, and that `num_ctx` fits the prompt",
            );
        } else if found.key_findings.is_empty() || found.recommendations.is_empty() {
            log::warn(&format!(
                "no {} found in the answer; the prompt template `{prompt_template}` should ask for `Key Findings` and `Recommendations` headings with bullet items",
                if found.key_findings.is_empty() {
                    "key findings"
                } else {
                    "recommendations"
                }
            ));
        }
        log::info(&format!(
            "analysed `{}`: {} chars, {} key findings, {} recommendations ({})",
            config.from,
            answer.text.len(),
            found.key_findings.len(),
            found.recommendations.len(),
            answer.token_summary()
        ));
        Ok(json!({
            "analysis": answer.text,
            "summary": found.summary,
            "key_findings": found.key_findings,
            "recommendations": found.recommendations,
            "persona_prompt": persona_prompt,
            "prompt": prompt,
            "eval_count": answer.eval_count,
            "prompt_eval_count": answer.prompt_eval_count,
        }))
    }
}

/// The output of the ingest stage `from`, checked to look like an inventory.
fn ingest_output<'a>(input: &'a Input, from: &str) -> Result<&'a Value, StageError> {
    let stage = &input.stage_id;
    if from.trim().is_empty() {
        return Err(StageError::InvalidConfig(format!(
            "stage `{stage}`: `from` is empty; set it to the id of an earlier ingest stage, e.g. `from: ingest`"
        )));
    }
    let Some(data) = input.output_of(from) else {
        let earlier: Vec<String> = input.inputs.keys().map(|k| format!("`{k}`")).collect();
        let hint = if earlier.is_empty() {
            "it has no earlier stages; put an `ingest` stage before this one".to_owned()
        } else {
            format!("its earlier stages are {}", earlier.join(", "))
        };
        return Err(StageError::InvalidConfig(format!(
            "stage `{stage}` analyses the output of `{from}` (`with: from:`), but agent `{}` has no earlier stage `{from}`; {hint}",
            input.agent
        )));
    };
    let inventory = data.as_object().is_some_and(|o| {
        ["summary", "types", "metrics"]
            .iter()
            .any(|k| o.contains_key(*k))
    });
    if !inventory {
        return Err(StageError::InvalidConfig(format!(
            "stage `{stage}`: the output of `{from}` is not an ingest inventory (no `summary`, `types` or `metrics`); point `with: from:` at an `ingest` stage"
        )));
    }
    Ok(data)
}

/// The variables the persona and prompt templates see (declared in `info`,
/// so Chimera can check templates before a run; a unit test keeps this list
/// and [`context`] together).
const CONTEXT: &[&str] = &[
    "agent",
    "stage",
    "config",
    "data",
    "summary",
    "total_files",
    "total_bytes",
    "roots",
    "types",
    "errors",
    "metrics",
    "metrics_omitted",
];

/// The template context; every name is always present (templates render
/// with strict undefined).
fn context(input: &Input, config: &Config, data: &Value) -> Value {
    let field = |key: &str, empty: Value| data.get(key).cloned().unwrap_or(empty);
    let mut metrics = data
        .get("metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // Most samples first; the sort is stable, so ties keep ingest's order.
    metrics.sort_by_key(|m| std::cmp::Reverse(m.get("count").and_then(Value::as_u64)));
    let omitted = metrics.len().saturating_sub(config.max_metrics);
    metrics.truncate(config.max_metrics);
    json!({
        "agent": input.agent,
        "stage": input.stage_id,
        "config": input.config,
        "data": data,
        "summary": field("summary", json!("")),
        "total_files": field("total_files", json!(0)),
        "total_bytes": field("total_bytes", json!(0)),
        "roots": field("roots", json!([])),
        "types": field("types", json!([])),
        "errors": field("errors", json!([])),
        "metrics": metrics,
        "metrics_omitted": omitted,
    })
}

/// A template rendered, without the trailing newline its file ends with.
fn rendered(name: &str, context: &Value) -> Result<String, StageError> {
    let mut text = render(name, context)?;
    text.truncate(text.trim_end().len());
    Ok(text)
}

export_plugin!(Analyze);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_template_context_is_the_one_rendered() {
        let input = Input {
            stage_id: "analyze".into(),
            agent: "a".into(),
            config: json!({}),
            inputs: serde_json::Map::new(),
            read_dirs: Vec::new(),
            write_dir: None,
            prompt_template: None,
            persona_template: None,
        };
        let context = context(&input, &Config::default(), &json!({}));
        let names: Vec<&str> = context
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, CONTEXT);
    }

    #[test]
    fn the_config_schema_is_derived_and_marks_stage_references() {
        let schema = Analyze::info().config_schema;
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(
            schema["properties"]["from"]["format"],
            json!("chimera-stage")
        );
        assert_eq!(schema["properties"]["max_metrics"]["default"], json!(12));
        assert_eq!(Analyze::info().template_context, CONTEXT);
    }
}
