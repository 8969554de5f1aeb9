//! A hostile test plugin. `with: {mode: …}` picks the misbehaviour:
//! `loop` (spins forever), `memory` (allocates until it cannot), `recursion`
//! (overflows its stack), `panic`, `output` (returns `bytes` bytes of JSON,
//! default 200 MB), `llm` (calls the model), `read` (reads `path`), `env`
//! (lists its environment), `connect` (opens a TCP connection to `path`),
//! `sleep` (returns after `ms` milliseconds), `inputs` (returns the
//! outputs it received), `ok`.

use chimera_plugin::{Info, Input, Plugin, StageError, export_plugin, llm};
use serde::Deserialize;
use serde_json::{Value, json};

struct Hostile;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: String,
    #[serde(default)]
    bytes: Option<usize>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    ms: u64,
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64, pad: &mut [u8; 256]) -> u64 {
    pad[(depth % 256) as usize] = depth as u8;
    let mut next = *pad;
    recurse(depth + 1, &mut next) + u64::from(next[0])
}

impl Plugin for Hostile {
    fn info() -> Info {
        Info::new(
            "hostile",
            env!("CARGO_PKG_VERSION"),
            "Test plugin: misbehaves on purpose.",
        )
    }

    fn run(input: Input) -> Result<Value, StageError> {
        let config: Config = input.config()?;
        match config.mode.as_str() {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 8 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => Ok(json!(recurse(0, &mut [0u8; 256]))),
            "disk" => {
                // Fills its write grant with 1 MiB files, `bytes` in all
                // (default 200 MiB), unless stopped first.
                let dir = input.write_dir.clone().unwrap_or_else(|| ".".into());
                let chunk = vec![7u8; 1 << 20];
                let files = config.bytes.unwrap_or(200 << 20).div_ceil(chunk.len());
                for n in 0..files {
                    if let Err(e) = std::fs::write(format!("{dir}/bomb-{n}"), &chunk) {
                        return Err(StageError::Failed(format!("write failed: {e}")));
                    }
                }
                Ok(json!({"files": files}))
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "output" => {
                let bytes = config.bytes.unwrap_or(200 << 20);
                Ok(Value::String("x".repeat(bytes)))
            }
            "llm" => llm::generate(None, "hello")
                .map(|g| json!({"text": g.text}))
                .map_err(|e| StageError::Failed(e.to_string())),
            "read" => {
                let path = config.path.unwrap_or_else(|| "/etc/passwd".into());
                std::fs::read_to_string(&path)
                    .map(|text| json!({"leaked": text}))
                    .map_err(|e| StageError::Failed(format!("cannot read {path}: {e}")))
            }
            "env" => Ok(json!({"vars": std::env::vars().map(|(k, _)| k).collect::<Vec<_>>()})),
            "connect" => {
                let addr = config.path.unwrap_or_else(|| "127.0.0.1:9".into());
                match std::net::TcpStream::connect(&addr) {
                    Ok(_) => Ok(json!({"connected": addr})),
                    Err(e) => Err(StageError::Failed(format!("cannot connect to {addr}: {e}"))),
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(config.ms));
                Ok(json!({"slept_ms": config.ms}))
            }
            "ok" => Ok(json!({"ok": true, "agent": input.agent})),
            "inputs" => Ok(json!({"inputs": input.inputs})),
            other => Err(StageError::InvalidConfig(format!("unknown mode `{other}`"))),
        }
    }
}

export_plugin!(Hostile);
