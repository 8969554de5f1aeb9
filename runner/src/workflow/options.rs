//! The model options Chimera knows, and their checks.
//!
//! Ollama ignores option names it does not know (with a warning in its own
//! log), so a typo like `temprature` would silently do nothing: Chimera checks
//! names and value types itself.

use serde_json::Value;

/// The kind of value an option takes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// An integer in `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// A number in `min..=max`.
    Number {
        min: f64,
        max: f64,
    },
    Bool,
    /// A list of strings (or one string).
    Strings,
}

/// (name, kind, what it means).
const OPTIONS: &[(&str, Kind, &str)] = &[
    (
        "num_ctx",
        Kind::Int {
            min: 1,
            max: 1 << 24,
        },
        "context window in tokens",
    ),
    (
        "num_gpu",
        Kind::Int {
            min: -1,
            max: 100_000,
        },
        "layers offloaded to the GPU",
    ),
    ("num_thread", Kind::Int { min: 1, max: 1024 }, "CPU threads"),
    (
        "num_batch",
        Kind::Int {
            min: 1,
            max: 1 << 20,
        },
        "prompt batch size",
    ),
    (
        "main_gpu",
        Kind::Int { min: 0, max: 1024 },
        "GPU for small tensors",
    ),
    (
        "temperature",
        Kind::Number {
            min: 0.0,
            max: 100.0,
        },
        "sampling temperature",
    ),
    (
        "top_k",
        Kind::Int {
            min: 0,
            max: 1 << 20,
        },
        "top-k sampling",
    ),
    (
        "top_p",
        Kind::Number { min: 0.0, max: 1.0 },
        "nucleus sampling",
    ),
    (
        "min_p",
        Kind::Number { min: 0.0, max: 1.0 },
        "min-p sampling",
    ),
    (
        "typical_p",
        Kind::Number { min: 0.0, max: 1.0 },
        "locally typical sampling",
    ),
    (
        "repeat_penalty",
        Kind::Number {
            min: 0.0,
            max: 100.0,
        },
        "penalty for repeats",
    ),
    (
        "repeat_last_n",
        Kind::Int {
            min: -1,
            max: 1 << 24,
        },
        "tokens looked back for repeats",
    ),
    (
        "presence_penalty",
        Kind::Number {
            min: -100.0,
            max: 100.0,
        },
        "presence penalty",
    ),
    (
        "frequency_penalty",
        Kind::Number {
            min: -100.0,
            max: 100.0,
        },
        "frequency penalty",
    ),
    (
        "seed",
        Kind::Int {
            min: i64::MIN,
            max: i64::MAX,
        },
        "random seed",
    ),
    (
        "num_predict",
        Kind::Int {
            min: -2,
            max: 1 << 24,
        },
        "maximum tokens to generate (-1: no limit)",
    ),
    ("stop", Kind::Strings, "stop sequences"),
    (
        "num_keep",
        Kind::Int {
            min: -1,
            max: 1 << 24,
        },
        "tokens kept when the context shifts",
    ),
    ("use_mmap", Kind::Bool, "memory-map the model"),
];

/// The names of every known option, in declaration order.
pub fn known() -> impl Iterator<Item = &'static str> + Clone {
    OPTIONS.iter().map(|(n, _, _)| *n)
}

/// The JSON Schema of `options:`, from the same table [`check`] uses, so
/// an editor completes and checks option names and values as Chimera does.
pub fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let properties: serde_json::Map<String, Value> = OPTIONS
        .iter()
        .map(|(name, kind, meaning)| {
            let schema = match *kind {
                Kind::Int { min, max } => {
                    serde_json::json!({"type": "integer", "minimum": min, "maximum": max})
                }
                Kind::Number { min, max } => {
                    serde_json::json!({"type": "number", "minimum": min, "maximum": max})
                }
                Kind::Bool => serde_json::json!({"type": "boolean"}),
                Kind::Strings => serde_json::json!({"anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}}
                ]}),
            };
            let mut schema = schema;
            schema["description"] = Value::String((*meaning).to_owned());
            ((*name).to_owned(), schema)
        })
        .collect();
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
        "description": "model options (Ollama's names); unknown names are errors"
    })
}

/// Checks one option; `Err((message, help))` when it is unknown or ill-typed.
pub fn check(name: &str, value: &Value) -> Result<(), (String, Option<String>)> {
    let Some((_, kind, meaning)) = OPTIONS.iter().find(|(n, _, _)| *n == name) else {
        let help = crate::suggest::help(name, known(), "known options", "");
        return Err((format!("unknown model option `{name}`"), Some(help)));
    };
    let fits = match *kind {
        Kind::Int { min, max } => value.as_i64().is_some_and(|v| (min..=max).contains(&v)),
        Kind::Number { min, max } => value
            .as_f64()
            .is_some_and(|v| v.is_finite() && (min..=max).contains(&v)),
        Kind::Bool => value.is_boolean(),
        Kind::Strings => {
            value.is_string()
                || value
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string))
        }
    };
    if fits {
        return Ok(());
    }
    let expected = match *kind {
        Kind::Int { min, max } if max == i64::MAX => format!("an integer ≥ {min}"),
        Kind::Int { min, max } => format!("an integer from {min} to {max}"),
        Kind::Number { min, max } => format!("a number from {min} to {max}"),
        Kind::Bool => "true or false".into(),
        Kind::Strings => "a string or a list of strings".into(),
    };
    Err((
        format!(
            "model option `{name}` ({meaning}) must be {expected}, not {}",
            describe(value)
        ),
        None,
    ))
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string \"{s}\""),
        Value::Null => "empty".into(),
        other => format!("`{other}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::check;
    use serde_json::json;

    #[test]
    fn accepts_the_seed_configuration() {
        for (k, v) in [
            ("num_gpu", json!(80)),
            ("num_ctx", json!(512)),
            ("temperature", json!(0.8)),
            ("stop", json!(["\n\n"])),
        ] {
            assert!(check(k, &v).is_ok(), "{k}");
        }
    }

    #[test]
    fn rejects_wrong_types_ranges_and_names() {
        assert!(
            check("temperature", &json!("hot"))
                .unwrap_err()
                .0
                .contains("must be a number")
        );
        assert!(
            check("num_ctx", &json!(-1))
                .unwrap_err()
                .0
                .contains("from 1")
        );
        assert!(check("top_p", &json!(1.5)).is_err());
        let (msg, help) = check("temprature", &json!(0.5)).unwrap_err();
        assert_eq!(msg, "unknown model option `temprature`");
        assert_eq!(help.as_deref(), Some("did you mean `temperature`?"));
    }
}
