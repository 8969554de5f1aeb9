//! Bad workflows fail with exit code 2 and an error that points at the file,
//! line and column and says what to do. Snapshots pin what people read.

mod common;

use common::{chimera, run, write};

fn validate(yaml: &str) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "workflow.yaml", yaml);
    let (code, _, stderr) = run(chimera(&tmp.path().join("cache"))
        .current_dir(tmp.path())
        .arg("validate")
        .arg(path.file_name().unwrap()));
    // Searched directories name the temporary directory's parent.
    let parent = tmp.path().canonicalize().unwrap();
    let parent = parent.parent().unwrap().display().to_string();
    (code, stderr.replace(&parent, "[tmp]"))
}

const GOOD: &str = "version: 1
name: demo
agents:
  - id: agent
    stages:
      - id: ingest
        plugin: ingest
        read: [reports]
";

#[test]
fn a_valid_workflow_passes() {
    let (code, stderr) = validate(GOOD);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_misspelled_key_names_the_place_and_the_fix() {
    let (code, stderr) = validate(&GOOD.replace("plugin: ingest", "plugn: ingest"));
    assert_eq!(code, 2);
    assert!(stderr.contains("workflow.yaml:7:9"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_misspelled_model_option_suggests_the_known_one() {
    let yaml = GOOD.replace(
        "agents:",
        "model:\n  name: gemma3:latest\n  options:\n    num_gpu: 80\n    temprature: 0.8\nagents:",
    );
    let (code, stderr) = validate(&yaml);
    assert_eq!(code, 2);
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_wrongly_typed_option_says_what_was_expected() {
    let yaml = GOOD.replace(
        "agents:",
        "model:\n  name: gemma3:latest\n  options:\n    temperature: hot\n    num_ctx: -1\nagents:",
    );
    let (code, stderr) = validate(&yaml);
    assert_eq!(code, 2);
    insta::assert_snapshot!(stderr);
}

#[test]
fn duplicate_ids_and_a_bad_grant_are_all_reported() {
    let yaml =
        format!("{GOOD}      - id: ingest\n        plugin: ingest\n        read: [../etc]\n");
    let (code, stderr) = validate(&yaml);
    assert_eq!(code, 2);
    insta::assert_snapshot!(stderr);
}

#[test]
fn an_unknown_plugin_suggests_the_nearest_one() {
    let (code, stderr) = validate(&GOOD.replace("plugin: ingest", "plugin: ingset"));
    assert_eq!(code, 2);
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_yaml_syntax_error_points_at_the_line() {
    let (code, stderr) = validate("version: 1\nname: demo\nagents:\n  - id: [unclosed\n");
    assert_eq!(code, 2);
    assert!(stderr.contains("workflow.yaml:"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn an_empty_file_and_a_missing_template_are_explained() {
    let (code, stderr) = validate("");
    assert_eq!(code, 2);
    assert!(stderr.contains("the workflow file is empty"), "{stderr}");
    let (code, stderr) = validate(&GOOD.replace(
        "  - id: agent\n",
        "  - id: agent\n    persona: personas/nobody.md.j2\n",
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("persona template `personas/nobody.md.j2` not found"),
        "{stderr}"
    );
    assert!(stderr.contains("workflow.yaml:5:14"), "{stderr}");
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(chimera(tmp.path()).args(["validate", "nope.yaml"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read workflow nope.yaml"),
        "{stderr}"
    );
}
