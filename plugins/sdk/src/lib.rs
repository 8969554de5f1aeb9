//! Write Chimera stage plugins.
//!
//! A plugin is a type that implements [`Plugin`], exported with [`export_plugin!`]
//! from a `cdylib` crate built for `wasm32-wasip2`:
//!
//! ```ignore
//! use chimera_plugin::{export_plugin, Info, Input, Plugin, StageError};
//! use serde_json::{json, Value};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn info() -> Info {
//!         Info::new("hello", env!("CARGO_PKG_VERSION"), "Greets the agent.")
//!     }
//!
//!     fn run(input: Input) -> Result<Value, StageError> {
//!         Ok(json!({ "greeting": format!("hello, {}", input.agent) }))
//!     }
//! }
//!
//! export_plugin!(Hello);
//! ```
//!
//! Files reach a plugin only in the directories in [`Input::read_dirs`]
//! (read-only) and [`Input::write_dir`], through `std::fs` or, with fewer
//! host calls, [`files`]; the model through [`llm`]; templates through
//! [`render`]; the host's log through [`log`].

pub mod files;

pub use schemars::{self, JsonSchema};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../../wit/0.1.0",
        world: "stage",
        pub_export_macro: true,
        export_macro_name: "__export_stage",
        default_bindings_module: "chimera_plugin::__bindings",
    });
}

use __bindings::chimera::plugin as wit;

/// What a plugin says about itself (`chimera plugins` prints it).
#[derive(Debug, Clone)]
pub struct Info {
    /// The name workflows use in `plugin:`.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// One line for humans.
    pub description: String,
    /// A JSON Schema of the stage's `with:` configuration.
    pub config_schema: Value,
    /// The top-level variables the plugin renders its prompt and persona
    /// templates with (empty: it renders none).
    pub template_context: Vec<String>,
}

/// The version of the `chimera:plugin` interface this SDK builds plugins
/// for. [`export_plugin!`] writes it into the component's custom section
/// `chimera:plugin-interface`, so Chimera can refuse a plugin built for a
/// version it does not support before linking it.
pub const INTERFACE_VERSION: &str = "0.1.0";

/// The JSON Schema `format` of a string that names an earlier stage of the
/// same agent; Chimera checks it before a run. Use it on a `Config` field as
/// `#[schemars(extend("format" = chimera_plugin::STAGE_FORMAT))]`.
pub const STAGE_FORMAT: &str = "chimera-stage";

impl Info {
    /// An `Info` whose configuration schema accepts any object.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            description: description.to_owned(),
            config_schema: serde_json::json!({ "type": "object" }),
            template_context: Vec::new(),
        }
    }

    /// Derives the JSON Schema of the `with:` configuration from the type
    /// the plugin reads it into (`input.config::<T>()`), so the two cannot
    /// drift: `#[derive(Deserialize, JsonSchema)]` on `T`, with
    /// `#[serde(deny_unknown_fields)]` to refuse unknown keys. Doc comments
    /// become the schema's descriptions.
    #[must_use]
    pub fn with_config<T: JsonSchema>(mut self) -> Self {
        self.config_schema = schemars::schema_for!(T).to_value();
        self
    }

    /// Sets the JSON Schema of the `with:` configuration by hand.
    #[must_use]
    pub fn with_schema(mut self, schema: Value) -> Self {
        self.config_schema = schema;
        self
    }

    /// Declares the top-level variables the plugin renders its prompt and
    /// persona templates with.
    #[must_use]
    pub fn with_template_context(mut self, names: &[&str]) -> Self {
        self.template_context = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }
}

/// Everything a stage is told when it runs.
#[derive(Debug, Clone)]
pub struct Input {
    /// The stage's `id`.
    pub stage_id: String,
    /// The agent the stage belongs to.
    pub agent: String,
    /// The stage's `with:` configuration.
    pub config: Value,
    /// Outputs of the agent's earlier stages, by stage id, and of the
    /// stages of other agents it `needs:` (directly or through its agent's
    /// `needs:`), by `<agent>/<stage>`.
    pub inputs: Map<String, Value>,
    /// Directories granted for reading (guest paths, read-only).
    pub read_dirs: Vec<String>,
    /// The directory granted for writing (guest path), if the workflow grants
    /// one; what the stage writes there is kept in the run record under
    /// `files/<agent>/<stage>/`.
    pub write_dir: Option<String>,
    /// The stage's prompt template name, if the workflow sets one.
    pub prompt_template: Option<String>,
    /// The agent's persona template name, if the workflow sets one.
    pub persona_template: Option<String>,
}

impl Input {
    /// Deserializes the `with:` configuration; a mismatch becomes
    /// [`StageError::InvalidConfig`] naming the problem.
    ///
    /// # Errors
    /// When the configuration does not fit `T`.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, StageError> {
        serde_json::from_value(self.config.clone())
            .map_err(|e| StageError::InvalidConfig(format!("stage `{}`: {e}", self.stage_id)))
    }

    /// The output of an earlier stage of the same agent.
    pub fn output_of(&self, stage_id: &str) -> Option<&Value> {
        self.inputs.get(stage_id)
    }
}

/// A failure the plugin detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageError {
    /// The `with:` configuration is wrong; say what to change.
    InvalidConfig(String),
    /// The stage could not do its work; say why.
    Failed(String),
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
            Self::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StageError {}

/// A stage plugin. Implement it and call [`export_plugin!`] once.
pub trait Plugin {
    /// Describes the plugin.
    fn info() -> Info;

    /// Runs the stage; the returned JSON is what later stages see under this
    /// stage's id.
    ///
    /// # Errors
    /// A [`StageError`] fails the stage with its message.
    fn run(input: Input) -> Result<Value, StageError>;
}

/// The model the workflow declares for the stage.
pub mod llm {
    use super::{StageError, wit};

    /// A finished generation with the counts the host measured.
    #[derive(Debug, Clone)]
    pub struct Generation {
        /// The generated text.
        pub text: String,
        /// Tokens generated; `None` when the backend did not report a count.
        pub eval_count: Option<u32>,
        /// Prompt tokens read; `None` when the backend did not report a count.
        pub prompt_eval_count: Option<u32>,
    }

    impl Generation {
        /// `"<prompt> prompt + <generated> generated tokens"`, with `n/a`
        /// for a count the backend did not report.
        pub fn token_summary(&self) -> String {
            let n = |c: Option<u32>| c.map_or_else(|| "n/a".to_owned(), |c| c.to_string());
            format!(
                "{} prompt + {} generated tokens",
                n(self.prompt_eval_count),
                n(self.eval_count)
            )
        }
    }

    /// Sends a system prompt (optional) and a user prompt to the stage's model.
    ///
    /// # Errors
    /// When no model is configured, the model is not allowed, or the backend fails.
    pub fn generate(system: Option<&str>, prompt: &str) -> Result<Generation, StageError> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = system {
            messages.push(wit::llm::Message {
                role: wit::llm::Role::System,
                content: system.into(),
            });
        }
        messages.push(wit::llm::Message {
            role: wit::llm::Role::User,
            content: prompt.into(),
        });
        chat(messages)
    }

    /// Continues a conversation with the stage's model.
    ///
    /// # Errors
    /// As [`generate`].
    pub fn chat(messages: Vec<wit::llm::Message>) -> Result<Generation, StageError> {
        match wit::llm::generate(&wit::llm::GenerateRequest { messages }) {
            Ok(r) => Ok(Generation {
                text: r.text,
                eval_count: r.eval_count,
                prompt_eval_count: r.prompt_eval_count,
            }),
            Err(wit::llm::LlmError::NoBackend(m) | wit::llm::LlmError::NotAllowed(m)) => {
                Err(StageError::Failed(m))
            }
            Err(wit::llm::LlmError::Failed(m)) => Err(StageError::Failed(m)),
        }
    }

    pub use wit::llm::{Message, Role};
}

/// Renders a template from the workflow's template search path.
///
/// # Errors
/// When the template is missing or fails to render; the message names the
/// template and line.
pub fn render(name: &str, context: &impl Serialize) -> Result<String, StageError> {
    let context = serde_json::to_string(context)
        .map_err(|e| StageError::Failed(format!("template context for `{name}`: {e}")))?;
    wit::template::render(name, &context).map_err(StageError::Failed)
}

/// Messages into the stage's span on the host.
pub mod log {
    use super::wit::log::{Level, log};

    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

#[doc(hidden)]
pub mod __private {
    use super::{Input, Plugin, StageError, wit};

    /// [`INTERFACE_VERSION`](super::INTERFACE_VERSION) as the bytes of the
    /// custom section.
    pub const INTERFACE_SECTION: [u8; super::INTERFACE_VERSION.len()] = {
        let text = super::INTERFACE_VERSION.as_bytes();
        let mut out = [0u8; super::INTERFACE_VERSION.len()];
        let mut i = 0;
        while i < text.len() {
            out[i] = text[i];
            i += 1;
        }
        out
    };

    pub fn describe<P: Plugin>() -> wit::types::PluginInfo {
        let info = P::info();
        wit::types::PluginInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            config_schema: info.config_schema.to_string(),
            template_context: info.template_context,
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        what: &str,
        text: &str,
    ) -> Result<T, wit::types::StageError> {
        serde_json::from_str(text)
            .map_err(|e| wit::types::StageError::Failed(format!("host sent malformed {what}: {e}")))
    }

    pub fn run<P: Plugin>(
        input: wit::types::StageInput,
    ) -> Result<wit::types::StageOutput, wit::types::StageError> {
        let config = parse("config", &input.config)?;
        let inputs = parse("inputs", &input.inputs)?;
        let input = Input {
            stage_id: input.stage_id,
            agent: input.agent,
            config,
            inputs,
            read_dirs: input.read_dirs,
            write_dir: input.write_dir,
            prompt_template: input.prompt_template,
            persona_template: input.persona_template,
        };
        match P::run(input) {
            Ok(data) => Ok(wit::types::StageOutput {
                data: data.to_string(),
            }),
            Err(StageError::InvalidConfig(m)) => Err(wit::types::StageError::InvalidConfig(m)),
            Err(StageError::Failed(m)) => Err(wit::types::StageError::Failed(m)),
        }
    }
}

/// Exports a [`Plugin`] implementation as the component's `describe` and `run`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        struct __ChimeraExport;

        impl $crate::__bindings::Guest for __ChimeraExport {
            fn describe() -> $crate::__bindings::chimera::plugin::types::PluginInfo {
                $crate::__private::describe::<$plugin>()
            }

            fn run(
                input: $crate::__bindings::chimera::plugin::types::StageInput,
            ) -> ::core::result::Result<
                $crate::__bindings::chimera::plugin::types::StageOutput,
                $crate::__bindings::chimera::plugin::types::StageError,
            > {
                $crate::__private::run::<$plugin>(input)
            }
        }

        $crate::__bindings::__export_stage!(__ChimeraExport with_types_in $crate::__bindings);

        /// The interface version the plugin was built for, read by the host
        /// before it links the component.
        #[doc(hidden)]
        #[used]
        #[unsafe(link_section = "chimera:plugin-interface")]
        static __CHIMERA_PLUGIN_INTERFACE: [u8; $crate::INTERFACE_VERSION.len()] =
            $crate::__private::INTERFACE_SECTION;
    };
}
