//! `chimera new` as a new user meets it: from an empty directory outside
//! the repository, scaffold a project, build its plugin for wasm32-wasip2
//! with the command it prints, then validate and run its workflow.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use common::{chimera, json, run};
use std::path::Path;
use std::process::Command;

/// Builds the scaffold's plugin with the one-line command `chimera new`
/// prints (its cargo half), sharing one target directory between test runs
/// so only the scaffold's own two crates compile each time.
fn build_plugin(project: &Path) {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold-plugins");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(project)
        // Not `--offline`: on a machine whose cargo cache lacks a crate the
        // lock names, cargo may fetch it (a new user's first build does too).
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(["--manifest-path", "plugins/hello/Cargo.toml"])
        .env("CARGO_TARGET_DIR", &target);
    // The test's own build settings must not leak into the guest's.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cargo.env_remove(var);
    }
    let out = cargo.output().expect("run cargo");
    assert!(
        out.status.success(),
        "the scaffold's plugin does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(
        target.join("wasm32-wasip2/release/hello.wasm"),
        project.join("plugins/hello.wasm"),
    )
    .expect("the built component");
}

#[test]
fn a_new_project_builds_validates_and_runs_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (code, stdout, stderr) = run(chimera(&cache)
        .current_dir(tmp.path())
        .args(["new", "proj"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let project = tmp.path().join("proj");
    assert!(
        stdout.contains(
            "cargo build --release --target wasm32-wasip2 --manifest-path plugins/hello/Cargo.toml"
        ),
        "it prints the build command: {stdout}"
    );
    // Writing into a project that exists is refused, and writes nothing.
    let (code, _, stderr) = run(chimera(&cache)
        .current_dir(tmp.path())
        .args(["new", "proj"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not empty"), "{stderr}");

    let workflow = project.join("workflows/proj.yaml");
    // Before the plugin is built, the error lists where it was looked for
    // and how to build the crate it found there.
    let (code, _, stderr) = run(chimera(&cache).arg("validate").arg(&workflow));
    assert_eq!(code, 2, "{stderr}");
    let root_plugins = project.canonicalize().unwrap().join("plugins");
    assert!(
        stderr.contains(&root_plugins.display().to_string()),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "--manifest-path {}",
            root_plugins.join("hello/Cargo.toml").display()
        )),
        "{stderr}"
    );

    build_plugin(&project);
    // Found in the project's `plugins/`, from its `workflows/`.
    let (code, stdout, stderr) = run(chimera(&cache).arg("validate").arg(&workflow));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("1 agent, 4 stages"), "{stdout}");
    let (code, stdout, stderr) = run(chimera(&cache)
        .args(["plugins", "--workflow"])
        .arg(&workflow));
    assert_eq!(code, 0, "{stderr}");
    let listed = stdout
        .lines()
        .find(|l| l.starts_with("hello "))
        .unwrap_or_else(|| panic!("hello is listed: {stdout}"));
    assert!(listed.contains("proj/plugins/hello.wasm"), "{listed}");
    assert!(
        stdout.contains(&format!("  {}\n", root_plugins.display())),
        "{stdout}"
    );

    let server = FakeOllama::start(FakeConfig::default());
    let out = tmp.path().join("run");
    let (code, stdout, stderr) = run(chimera(&cache)
        .arg("run")
        .arg(&workflow)
        .arg("--input")
        .arg(project.join("data"))
        .arg("--out")
        .arg(&out)
        .args(["--set", &format!("model.host={}", server.url()), "-q"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Proj Analyst"), "{report}");
    let hello = json(&out.join("outputs/analyst/hello.json"));
    assert_eq!(hello["greeting"], "Hello from analyst");
    let analyze = json(&out.join("outputs/analyst/analyze.json"));
    let persona = analyze["persona_prompt"].as_str().unwrap();
    assert!(
        persona.starts_with("You are Proj Analyst,"),
        "the persona sees the agent's title: {persona}"
    );
}

#[test]
fn new_plugin_writes_a_crate_and_the_sdk_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let new = |name: &str| {
        run(chimera(&cache)
            .current_dir(tmp.path())
            .args(["new", "plugin", name]))
    };
    let (code, stdout, stderr) = new("probe");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let plugins = tmp.path().join("plugins");
    for file in [
        "probe/Cargo.toml",
        "probe/src/lib.rs",
        "probe/Cargo.lock",
        "chimera-plugin/src/lib.rs",
        "chimera-plugin/wit/plugin.wit",
    ] {
        assert!(plugins.join(file).is_file(), "{file}");
    }
    let lib = std::fs::read_to_string(plugins.join("probe/src/lib.rs")).unwrap();
    assert!(lib.contains("Info::new(\"probe\""), "{lib}");
    // A second plugin shares the SDK already there; a name taken is refused.
    let sdk = plugins.join("chimera-plugin/src/lib.rs");
    std::fs::write(&sdk, "// edited\n").unwrap();
    let (code, _, stderr) = new("second");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read_to_string(&sdk).unwrap(), "// edited\n");
    let (code, _, stderr) = new("probe");
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = new("chimera-plugin");
    assert_eq!(code, 2, "the SDK's own name is refused: {stderr}");
    let (code, _, stderr) = new("9lives");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be a plugin's name"), "{stderr}");
}
