//! Helpers for driving the real `chimera` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's fixture: 86 real benchmark artifacts (read-only; see
/// tests/fixtures/README.md). It must resolve inside the repository, so a
/// plain clone runs every test.
pub fn fixtures() -> PathBuf {
    let dir = root().join("tests/fixtures/benchmark-artifacts");
    assert!(
        dir.join("reports").is_dir(),
        "fixtures missing at {}",
        dir.display()
    );
    let dir = dir.canonicalize().expect("canonical fixtures path");
    let root = root().canonicalize().expect("canonical repository root");
    assert!(
        dir.starts_with(&root),
        "fixtures at {} resolve outside the repository {}",
        dir.display(),
        root.display()
    );
    dir
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runner/ has a parent")
        .to_path_buf()
}

/// A test plugin built by runner/build.rs from plugins/test-plugins.
pub fn test_plugin(file: &str) -> PathBuf {
    let path = Path::new(chimera::plugin::GUEST_BUILD_DIR).join(file);
    assert!(
        path.is_file(),
        "test plugin {} was not built",
        path.display()
    );
    path
}

/// `chimera` with a private component cache and no inherited plugin/template paths.
pub fn chimera(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chimera"));
    cmd.env("CHIMERA_CACHE_DIR", cache)
        .env_remove("CHIMERA_PLUGIN_PATH")
        .env_remove("CHIMERA_TEMPLATE_PATH")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run chimera");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Writes `text` as `name` in `dir` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent");
    }
    std::fs::write(&path, text).expect("write file");
    path
}

/// Reads a JSON file.
pub fn json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

/// `chimera run <workflow> --input <input> --out <out>` with a private cache;
/// returns (exit code, stdout, stderr).
pub fn run_workflow(
    cache: &Path,
    workflow: &Path,
    input: &Path,
    out: &Path,
) -> (i32, String, String) {
    run(chimera(cache)
        .arg("run")
        .arg(workflow)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out))
}
