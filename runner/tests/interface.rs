//! The plugin interface is versioned: a component says which version it was
//! built for (the SDK's custom section, and its imports), and one built for
//! a version this chimera does not link is refused before linking, with the
//! versions it does support, and before any model call.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use common::{chimera, run, test_plugin, write};
use std::path::Path;

/// A copy of a built-in component whose SDK section claims another version
/// (its imports still say 0.1.0: the section is what the SDK wrote).
fn built_for(version: &str, to: &Path) {
    let bytes = std::fs::read(test_plugin("chimera_ingest.wasm")).unwrap();
    let section = b"chimera:plugin-interface0.1.0";
    let at = bytes
        .windows(section.len())
        .position(|w| w == section)
        .expect("the SDK wrote its section");
    let mut changed = bytes.clone();
    changed[at + section.len() - 5..at + section.len()].copy_from_slice(version.as_bytes());
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::write(to, changed).unwrap();
}

#[test]
fn plugin_check_says_what_a_component_targets_and_describes() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(chimera(&tmp.path().join("cache"))
        .args(["plugin", "check"])
        .arg(test_plugin("chimera_analyze.wasm")));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("chimera:plugin@0.1.0 (read from its sdk section)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("`from`, `persona`, `max_metrics`"),
        "{stdout}"
    );
    assert!(stdout.contains("rendered with `agent`"), "{stdout}");
}

#[test]
fn a_component_built_for_another_interface_version_is_refused_before_any_call() {
    let tmp = tempfile::tempdir().unwrap();
    built_for("9.9.9", &tmp.path().join("plugins/old.wasm"));

    let (code, _, stderr) = run(chimera(&tmp.path().join("cache"))
        .current_dir(tmp.path())
        .args(["plugin", "check", "plugins/old.wasm"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`chimera:plugin@9.9.9`"), "{stderr}");
    assert!(stderr.contains("supports `0.1.0`"), "{stderr}");

    let server = FakeOllama::start(FakeConfig::tokens(["ok"]));
    write(
        tmp.path(),
        "workflow.yaml",
        &format!(
            "version: 1
name: old-plugin
model: {{name: \"gemma3:latest\", host: \"{}\"}}
agents:
  - id: agent
    stages:
      - id: ingest
        plugin: ./plugins/old.wasm
        read: [reports]
      - id: analyze
        plugin: analyze
        prompt: prompts/analyze.md.j2
",
            server.url()
        ),
    );
    write(
        tmp.path(),
        "templates/prompts/analyze.md.j2",
        "Analyze for {{ agent }}.\n",
    );
    let validate = run(chimera(&tmp.path().join("cache"))
        .current_dir(tmp.path())
        .args(["validate", "workflow.yaml"]));
    assert_eq!(validate.0, 2, "{}", validate.2);
    insta::assert_snapshot!(validate.2);

    std::fs::create_dir_all(tmp.path().join("input/reports")).unwrap();
    let (code, _, stderr) = run(chimera(&tmp.path().join("cache"))
        .current_dir(tmp.path())
        .args(["run", "workflow.yaml", "--input", "input", "--out", "run"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        server.requests().iter().all(|r| r.path != "/api/chat"),
        "no model call"
    );
}
