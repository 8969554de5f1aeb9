//! A test plugin: tries each file-system operation in its `with:` and
//! reports, per operation, what it got or the error it met. The sandbox tests
//! use it to prove that reads and writes outside a grant fail.
//!
//! ```yaml
//! with:
//!   paths: [reports/a.json, /etc/passwd]          # read each
//!   ops:                                          # then run each, in order
//!     - {op: write, path: out/a.txt, text: hello}
//!     - {op: link, from: out/a.txt, to: reports/a.txt}
//!     - {op: rename, from: out/a.txt, to: out/../a.txt}
//!     - {op: symlink, target: /etc, link: out/etc}
//! ```

use chimera_plugin::{Info, Input, Plugin, StageError, export_plugin};
use serde::Deserialize;
use serde_json::{Value, json};

struct FsProbe;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    ops: Vec<Op>,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Op {
    Read { path: String },
    Write { path: String, text: String },
    Mkdir { path: String },
    Link { from: String, to: String },
    Rename { from: String, to: String },
    Symlink { target: String, link: String },
}

impl Op {
    fn apply(&self) -> std::io::Result<Value> {
        match self {
            Self::Read { path } => {
                let bytes = std::fs::read(path)?;
                Ok(json!({
                    "bytes": bytes.len(),
                    "text": String::from_utf8_lossy(&bytes[..bytes.len().min(64)]),
                }))
            }
            Self::Write { path, text } => std::fs::write(path, text).map(|()| Value::Null),
            Self::Mkdir { path } => std::fs::create_dir_all(path).map(|()| Value::Null),
            Self::Link { from, to } => std::fs::hard_link(from, to).map(|()| Value::Null),
            Self::Rename { from, to } => std::fs::rename(from, to).map(|()| Value::Null),
            Self::Symlink { target, link } => symlink(target, link).map(|()| Value::Null),
        }
    }
}

/// `std::os::wasi::fs::symlink_path` is unstable; wasi-libc has `symlink`.
fn symlink(target: &str, link: &str) -> std::io::Result<()> {
    let target = std::ffi::CString::new(target)?;
    let link = std::ffi::CString::new(link)?;
    // SAFETY: both pointers are NUL-terminated strings that outlive the call.
    if unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Plugin for FsProbe {
    fn info() -> Info {
        Info::new(
            "fs-probe",
            env!("CARGO_PKG_VERSION"),
            "Test plugin: tries file-system operations and reports each outcome.",
        )
    }

    fn run(input: Input) -> Result<Value, StageError> {
        let config: Config = input.config()?;
        let reads = config
            .paths
            .iter()
            .map(|path| Op::Read { path: path.clone() });
        let ops: Vec<Op> = reads.chain(config.ops).collect();
        let results: Vec<Value> = ops
            .iter()
            .map(|op| {
                let mut entry = serde_json::to_value(op).expect("ops serialize");
                let fields = entry.as_object_mut().expect("ops are objects");
                match op.apply() {
                    Ok(got) => {
                        fields.insert("ok".into(), true.into());
                        if let Value::Object(got) = got {
                            fields.extend(got);
                        }
                    }
                    Err(e) => {
                        fields.insert("ok".into(), false.into());
                        fields.insert("error".into(), e.to_string().into());
                    }
                }
                entry
            })
            .collect();
        Ok(json!({
            "agent": input.agent,
            "read_dirs": input.read_dirs,
            "write_dir": input.write_dir,
            "results": results,
        }))
    }
}

export_plugin!(FsProbe);
