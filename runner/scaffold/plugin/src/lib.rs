//! A Chimera stage plugin: greets the agent it runs for.
//!
//! Build (from the project's root):
//!   cargo build --release --target wasm32-wasip2 --manifest-path plugins/__NAME__/Cargo.toml && cp plugins/__NAME__/target/wasm32-wasip2/release/__CRATE__.wasm plugins/__NAME__.wasm
//! then use it in a workflow as `plugin: __NAME__`.

use chimera_plugin::{Info, Input, JsonSchema, Plugin, StageError, export_plugin};
use serde::Deserialize;
use serde_json::{Value, json};

struct Stage;

/// The stage's `with:`. Its JSON Schema is derived from this type, and
/// `chimera validate` checks every stage's `with:` against it.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(crate = "chimera_plugin::schemars")]
struct Config {
    /// How to greet.
    greeting: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            greeting: "Hello from".into(),
        }
    }
}

impl Plugin for Stage {
    fn info() -> Info {
        Info::new("__NAME__", env!("CARGO_PKG_VERSION"), "Greets the agent it runs for.")
            .with_config::<Config>()
    }

    fn run(input: Input) -> Result<Value, StageError> {
        // input.config: the stage's `with:`; input.inputs: earlier stages'
        // outputs; std::fs reads input.read_dirs and writes input.write_dir
        // (if the stage has `write:`), nothing else;
        // chimera_plugin::llm::generate calls the stage's model;
        // chimera_plugin::render renders a template.
        let config: Config = input.config()?;
        Ok(json!({
            "greeting": format!("{} {}", config.greeting, input.agent),
            "stages_before": input.inputs.keys().collect::<Vec<_>>(),
        }))
    }
}

export_plugin!(Stage);
