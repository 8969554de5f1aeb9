//! The built-in `report` stage: asks the stage's model to write the technical
//! report from an earlier `analyze` stage's output and, when there is one, the
//! `ingest` inventory it was based on.
//!
//! The prompt template renders with: `agent`, `stage`, `config` (this stage's
//! `with:`), `analysis` (the analysis text), `summary`, `key_findings`,
//! `recommendations` (as the analyze stage extracted them) and `data` (the
//! ingest output, or null when there is none).
//!
//! Output: `body` (the report the model wrote), `persona_prompt` (rendered,
//! or null), `prompt`, `eval_count`, `prompt_eval_count` (null when the
//! backend reported none).

use chimera_plugin::{
    Info, Input, JsonSchema, Plugin, StageError, export_plugin, llm, log, render,
};
use serde::Deserialize;
use serde_json::{Value, json};

struct Report;

/// The stage's `with:` configuration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(crate = "chimera_plugin::schemars")]
struct Config {
    /// The id of the earlier analyze stage the report is written from.
    #[schemars(extend("format" = chimera_plugin::STAGE_FORMAT))]
    from: String,
    /// The id of the ingest stage whose numbers the report may cite; when
    /// unset, `ingest` is used if the agent has such a stage.
    #[schemars(extend("format" = chimera_plugin::STAGE_FORMAT))]
    data_from: Option<String>,
    /// Whether the agent's persona becomes the system prompt.
    persona: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            from: "analyze".into(),
            data_from: None,
            persona: false,
        }
    }
}

/// The variables the persona and prompt templates see (declared in `info`,
/// so Chimera can check templates before a run).
const CONTEXT: &[&str] = &[
    "agent",
    "stage",
    "config",
    "analysis",
    "summary",
    "key_findings",
    "recommendations",
    "data",
];

/// The ingest stage `data_from` falls back to.
const DEFAULT_DATA_FROM: &str = "ingest";

impl Plugin for Report {
    fn info() -> Info {
        Info::new(
            "report",
            env!("CARGO_PKG_VERSION"),
            "Asks the model to write the technical report from an analysis and the ingest numbers behind it.",
        )
        .with_config::<Config>()
        .with_template_context(CONTEXT)
    }

    fn run(input: Input) -> Result<Value, StageError> {
        let config: Config = input.config()?;
        let analysis = earlier(&input, &config.from, "from", "an `analyze`")?;
        let Some(text) = analysis.get("analysis").and_then(Value::as_str) else {
            return Err(StageError::InvalidConfig(format!(
                "stage `{}`: the output of `{}` is not an analysis (no `analysis` text); point `with: from:` at an `analyze` stage",
                input.stage_id, config.from
            )));
        };
        let data = match &config.data_from {
            Some(stage) => Some(earlier(&input, stage, "data_from", "an `ingest`")?),
            None => input.output_of(DEFAULT_DATA_FROM),
        };
        let Some(prompt_template) = input.prompt_template.as_deref() else {
            return Err(StageError::InvalidConfig(format!(
                "stage `{}` has no prompt template; set `prompt: prompts/report.md.j2` on the stage",
                input.stage_id
            )));
        };
        let context = context(&input, analysis, text, data);
        let persona_prompt = match input.persona_template.as_deref() {
            Some(persona) if config.persona => Some(rendered(persona, &context)?),
            _ => None,
        };
        let prompt = rendered(prompt_template, &context)?;
        let answer = llm::generate(persona_prompt.as_deref(), &prompt)?;
        let body = answer.text.trim();
        if body.is_empty() {
            log::warn(
                "the model answered with no text; check the stage's model, and that `num_ctx` fits the prompt",
            );
        }
        log::info(&format!(
            "reported on `{}`: {} chars ({})",
            config.from,
            body.len(),
            answer.token_summary()
        ));
        Ok(json!({
            "body": body,
            "persona_prompt": persona_prompt,
            "prompt": prompt,
            "eval_count": answer.eval_count,
            "prompt_eval_count": answer.prompt_eval_count,
        }))
    }
}

/// The output of the earlier stage `from`, named by the `with:` key `key`;
/// `kind` says what stage it should be, for the error.
fn earlier<'a>(
    input: &'a Input,
    from: &str,
    key: &str,
    kind: &str,
) -> Result<&'a Value, StageError> {
    let stage = &input.stage_id;
    if from.trim().is_empty() {
        return Err(StageError::InvalidConfig(format!(
            "stage `{stage}`: `{key}` is empty; set it to the id of {kind} stage before this one"
        )));
    }
    input.output_of(from).ok_or_else(|| {
        let earlier: Vec<String> = input.inputs.keys().map(|k| format!("`{k}`")).collect();
        let hint = if earlier.is_empty() {
            format!("it has no earlier stages; put {kind} stage before this one")
        } else {
            format!("its earlier stages are {}", earlier.join(", "))
        };
        StageError::InvalidConfig(format!(
            "stage `{stage}` reads the output of `{from}` (`with: {key}:`), but agent `{}` has no earlier stage `{from}`; {hint}",
            input.agent
        ))
    })
}

/// A template rendered, without the trailing newline its file ends with.
fn rendered(name: &str, context: &Value) -> Result<String, StageError> {
    let mut text = render(name, context)?;
    text.truncate(text.trim_end().len());
    Ok(text)
}

/// The template context; its names are [`CONTEXT`]'s.
fn context(input: &Input, analysis: &Value, text: &str, data: Option<&Value>) -> Value {
    let field = |key: &str, empty: Value| analysis.get(key).cloned().unwrap_or(empty);
    json!({
        "agent": input.agent,
        "stage": input.stage_id,
        "config": input.config,
        "analysis": text,
        "summary": field("summary", json!("")),
        "key_findings": field("key_findings", json!([])),
        "recommendations": field("recommendations", json!([])),
        "data": data,
    })
}

export_plugin!(Report);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_template_context_is_the_one_rendered() {
        let input = Input {
            stage_id: "report".into(),
            agent: "a".into(),
            config: json!({}),
            inputs: serde_json::Map::new(),
            read_dirs: Vec::new(),
            write_dir: None,
            prompt_template: None,
            persona_template: None,
        };
        let context = context(&input, &json!({}), "text", None);
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
        let schema = Report::info().config_schema;
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(
            schema["properties"]["from"]["format"],
            json!("chimera-stage")
        );
        assert_eq!(schema["properties"]["from"]["default"], json!("analyze"));
        assert_eq!(
            schema["properties"]["data_from"]["format"],
            json!("chimera-stage")
        );
    }
}
