//! Everything knowable before the first model call is checked before it:
//! `with:` against the plugin's schema, templates compiled, template
//! variables against what their context provides. Each class of error fails
//! `chimera validate` and `chimera run` with exit 2, and the run makes no
//! model call (the fake server counts requests). Snapshots pin what people
//! read.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use common::{chimera, fixtures, root, run, write};
use std::path::Path;

/// A project with Agent A's workflow and a copy of the stock templates,
/// edited by `edit_workflow` and `edit_templates`.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(edit_workflow: impl FnOnce(String) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let yaml = std::fs::read_to_string(root().join("workflows/chimera-agent-a.yaml")).unwrap();
        write(dir.path(), "workflows/agent.yaml", &edit_workflow(yaml));
        copy_dir(&root().join("templates"), &dir.path().join("templates"));
        Self { dir }
    }

    fn template(&self, name: &str, text: &str) -> &Self {
        write(&self.dir.path().join("templates"), name, text);
        self
    }

    /// `chimera validate`, run from the project (paths in messages are relative).
    fn validate(&self) -> (i32, String) {
        let (code, _, stderr) = run(chimera(&self.dir.path().join("cache"))
            .current_dir(self.dir.path())
            .arg("validate")
            .arg("workflows/agent.yaml"));
        (code, stderr)
    }

    /// `chimera run` against `server`; (exit code, stderr, chat requests made).
    fn run(&self, server: &FakeOllama) -> (i32, String, usize) {
        let (code, _, stderr) = run(chimera(&self.dir.path().join("cache"))
            .current_dir(self.dir.path())
            .arg("run")
            .arg("workflows/agent.yaml")
            .arg("--input")
            .arg(fixtures())
            .arg("--out")
            .arg(self.dir.path().join("run"))
            .arg("--set")
            .arg(format!("model.host={}", server.url())));
        let chats = server
            .requests()
            .iter()
            .filter(|r| r.path == "/api/chat")
            .count();
        (code, stderr, chats)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Validation fails with exit 2, and so does a run, before any model call.
fn refused_before_any_call(project: &Project) -> String {
    let (code, stderr) = project.validate();
    assert_eq!(code, 2, "validate must refuse: {stderr}");
    let server = FakeOllama::start(FakeConfig::tokens(["ok"]));
    let (run_code, run_stderr, chats) = project.run(&server);
    assert_eq!(run_code, 2, "run must refuse: {run_stderr}");
    assert_eq!(chats, 0, "no model call may be made: {run_stderr}");
    assert!(
        !project.dir.path().join("run").exists(),
        "no run record is started"
    );
    stderr
}

const REPORT_STAGE: &str = "        plugin: report\n        prompt: prompts/report.md.j2\n";

#[test]
fn the_stock_workflow_passes() {
    let (code, stderr) = Project::new(|y| y).validate();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_with_value_naming_no_earlier_stage_is_refused_with_a_suggestion() {
    let project = Project::new(|y| {
        y.replace(
            REPORT_STAGE,
            &format!("{REPORT_STAGE}        with: {{from: analyse}}\n"),
        )
    });
    let stderr = refused_before_any_call(&project);
    assert!(stderr.contains("workflows/agent.yaml:37:22"), "{stderr}");
    assert!(stderr.contains("did you mean `analyze`?"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn an_unknown_with_key_is_refused_with_the_plugins_keys() {
    let project = Project::new(|y| {
        y.replace(
            REPORT_STAGE,
            &format!(
                "{REPORT_STAGE}        with:\n          persona: true\n          data_frm: ingest\n"
            ),
        )
    });
    let stderr = refused_before_any_call(&project);
    assert!(stderr.contains("did you mean `data_from`?"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_with_value_of_the_wrong_type_is_refused() {
    let project = Project::new(|y| {
        y.replace(
            "          extensions: [csv, json, md]\n",
            "          extensions: [csv, json, md]\n          list: many\n",
        )
    });
    let stderr = refused_before_any_call(&project);
    assert!(stderr.contains("`list`"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_persona_that_does_not_compile_is_refused_with_its_line() {
    let project = Project::new(|y| y);
    project.template(
        "personas/data-collector-9000.md.j2",
        "You are {{ agent }}.\n{% if total_files %}\nYou see files.\n",
    );
    let stderr = refused_before_any_call(&project);
    assert!(
        stderr.contains("personas/data-collector-9000.md.j2:2"),
        "{stderr}"
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn an_included_template_that_does_not_compile_is_refused() {
    let project = Project::new(|y| y);
    project.template(
        "macros/benchmark.j2",
        "{% macro directories(roots) %}{% for r in roots %}{{ r.name }}{% endmacro %}\n",
    );
    let stderr = refused_before_any_call(&project);
    assert!(stderr.contains("macros/benchmark.j2"), "{stderr}");
    assert!(
        stderr.contains("named by `prompts/analyze.md.j2`"),
        "{stderr}"
    );
}

#[test]
fn a_template_variable_its_context_never_provides_is_refused() {
    let project = Project::new(|y| y);
    project.template(
        "prompts/analyze.md.j2",
        "Analyze {{ total_files }} files for {{ project_name }}.\n",
    );
    let stderr = refused_before_any_call(&project);
    assert!(stderr.contains("uses `project_name`"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_report_template_variable_the_report_context_lacks_is_refused() {
    let project = Project::new(|y| y);
    project.template(
        "reports/agent-report.md.j2",
        "# {{ title }}\n{{ throughput }}\n",
    );
    let stderr = refused_before_any_call(&project);
    assert!(stderr.contains("uses `throughput`"), "{stderr}");
    assert!(stderr.contains("the report context"), "{stderr}");
}

#[test]
fn a_duplicate_stage_id_points_at_the_first_definition() {
    let project = Project::new(|y| y.replace("      - id: report\n", "      - id: analyze\n"));
    let (code, stderr) = project.validate();
    assert_eq!(code, 2);
    assert!(stderr.contains("= note: first defined here"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_comparison_side_is_checked_like_the_workflow() {
    let project = Project::new(|y| {
        y.replace(
            "agents:\n",
            "runs: 2\ncompare:\n  baseline: {label: stock}\n  candidate:\n    label: terse\n    prompt: {analyze: prompts/terse.md.j2, analyse: prompts/terse.md.j2}\nagents:\n",
        )
    });
    let (code, stderr) = project.validate();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`prompt:` names stage `analyse`")
            && stderr.contains("did you mean `analyze`?"),
        "{stderr}"
    );
    // Fixed, the side's own template must still exist and compile.
    let project = Project::new(|y| {
        y.replace(
            "agents:\n",
            "runs: 2\ncompare:\n  baseline: {label: stock}\n  candidate:\n    label: terse\n    prompt: {analyze: prompts/terse.md.j2}\nagents:\n",
        )
    });
    let stderr = refused_before_any_call(&project);
    assert!(
        stderr.contains("prompt template `prompts/terse.md.j2` not found"),
        "{stderr}"
    );
    project.template(
        "prompts/terse.md.j2",
        "Summarise {{ total_files }} files.\n",
    );
    let (code, stderr) = project.validate();
    assert_eq!(code, 0, "{stderr}");
}
