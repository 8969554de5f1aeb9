//! A test plugin: tries to read each path in `with: {paths: [...]}` and
//! reports, per path, the bytes it got or the error it met. The sandbox tests
//! use it to prove that reads outside a grant fail.

use chimera_plugin::{Info, Input, Plugin, StageError, export_plugin};
use serde::Deserialize;
use serde_json::{Value, json};

struct FsProbe;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    paths: Vec<String>,
}

impl Plugin for FsProbe {
    fn info() -> Info {
        Info::new(
            "fs-probe",
            env!("CARGO_PKG_VERSION"),
            "Test plugin: tries to read paths.",
        )
    }

    fn run(input: Input) -> Result<Value, StageError> {
        let config: Config = input.config()?;
        let results: Vec<Value> = config
            .paths
            .iter()
            .map(|path| match std::fs::read(path) {
                Ok(bytes) => json!({
                    "path": path,
                    "ok": true,
                    "bytes": bytes.len(),
                    "text": String::from_utf8_lossy(&bytes[..bytes.len().min(64)]),
                }),
                Err(e) => json!({"path": path, "ok": false, "error": e.to_string()}),
            })
            .collect();
        Ok(json!({ "agent": input.agent, "read_dirs": input.read_dirs, "results": results }))
    }
}

export_plugin!(FsProbe);
