//! The built-in `ingest` stage: inventories benchmark artifacts under the
//! directories the workflow grants and harvests the numeric metrics in them.
//!
//! Output (the JSON later stages see under the stage id):
//! `total_files`, `total_bytes`, `roots` (each granted root and whether it
//! exists), `types` (per extension: count, bytes, newest modified time, first
//! paths), `summary` (the text inventory), `metrics` (per field name: count,
//! mean, min, max) and `errors` (files that could not be read or parsed).

mod harvest;
mod inventory;

use chimera_plugin::{Info, Input, JsonSchema, Plugin, StageError, export_plugin, log};
use serde::Deserialize;
use serde_json::{Value, json};

struct Ingest;

/// The stage's `with:` configuration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(crate = "chimera_plugin::schemars")]
struct Config {
    /// File extensions to inventory, in the order the summary lists them.
    extensions: Vec<String>,
    /// How many paths to list per type before "... and N more".
    list: usize,
    /// Substrings (case-insensitive) of JSON keys / CSV columns to harvest.
    metric_keys: Vec<String>,
    /// Files larger than this are counted but not parsed for metrics.
    max_parse_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            extensions: vec!["csv".into(), "json".into(), "md".into()],
            list: 5,
            metric_keys: ["tokens", "throughput", "latency", "ttft"]
                .map(String::from)
                .to_vec(),
            max_parse_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Plugin for Ingest {
    fn info() -> Info {
        Info::new(
            "ingest",
            env!("CARGO_PKG_VERSION"),
            "Inventories benchmark artifacts (csv, json, md) in the granted directories and harvests their metrics.",
        )
        .with_config::<Config>()
    }

    fn run(input: Input) -> Result<Value, StageError> {
        let config: Config = input.config()?;
        if config.extensions.is_empty() {
            return Err(StageError::InvalidConfig(
                "`extensions` is empty; list at least one, e.g. [csv, json, md]".into(),
            ));
        }
        if input.read_dirs.is_empty() {
            return Err(StageError::InvalidConfig(
                "the stage has no `read:` grant; grant the directories to ingest, e.g. `read: [reports]`".into(),
            ));
        }
        let mut harvest = harvest::Harvest::new(&config.metric_keys);
        let mut inventory = inventory::scan(&input.read_dirs, &config.extensions, |found, file| {
            if found.bytes > config.max_parse_bytes || !harvest::Harvest::parses(&found.ext) {
                return Ok(());
            }
            let bytes = file
                .read(found.bytes)
                .map_err(|e| format!("cannot read: {e}"))?;
            harvest
                .file(&found.path, &found.ext, &bytes)
                .inspect_err(|error| log::warn(&format!("{}: {error}", found.path)))
        });
        let errors = std::mem::take(&mut inventory.errors);
        log::info(&format!(
            "ingested {} files ({} bytes), {} metric fields, {} errors",
            inventory.files.len(),
            inventory.total_bytes(),
            harvest.fields(),
            errors.len()
        ));
        Ok(json!({
            "total_files": inventory.files.len(),
            "total_bytes": inventory.total_bytes(),
            "roots": inventory.roots,
            "types": inventory.types(&config.extensions, config.list),
            "summary": inventory.summary(&config.extensions, config.list),
            "metrics": harvest.into_json(),
            "errors": errors,
        }))
    }
}

export_plugin!(Ingest);
