//! The stock templates are built in: a workflow written anywhere uses them
//! with nothing copied, `--eject` copies one out, and a missing template's
//! help lists every place searched.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use common::{chimera, json, root, run, write};

#[test]
fn a_workflow_outside_the_repository_runs_on_the_stock_templates() {
    let server = FakeOllama::start(FakeConfig::default());
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&project).unwrap();
    let text = std::fs::read_to_string(root().join("workflows/chimera-agent-a.yaml")).unwrap();
    let flow = write(&project, "agent.yaml", &text);
    let cache = tmp.path().join("cache");
    let (code, stdout, stderr) = run(chimera(&cache)
        .current_dir(&project)
        .args(["validate", "agent.yaml"]));
    assert_eq!(code, 0, "{stdout}{stderr}");

    let out = tmp.path().join("run");
    let (code, stdout, stderr) = run(chimera(&cache)
        .current_dir(&project)
        .arg("run")
        .arg(&flow)
        .arg("--input")
        .arg(root().join("sample-data"))
        .arg("--out")
        .arg(&out)
        .args(["--set", &format!("model.host={}", server.url()), "-q"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Chimera Agent A"), "{report}");
    let metrics = json(&out.join("metrics.json"));
    let templates = metrics["provenance"]["templates"].as_array().unwrap();
    let stock = templates
        .iter()
        .find(|t| t["name"] == "reports/agent-report.md.j2")
        .unwrap();
    assert_eq!(stock["root"], "(built-in)", "{stock:#}");

    // Ejected, the copy is the stock text and wins from then on.
    let (code, stdout, stderr) = run(chimera(&cache).current_dir(&project).args([
        "templates",
        "--eject",
        "reports/agent-report.md.j2",
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let ejected = project.join("templates/reports/agent-report.md.j2");
    assert_eq!(
        std::fs::read_to_string(&ejected).unwrap(),
        std::fs::read_to_string(root().join("templates/reports/agent-report.md.j2")).unwrap()
    );
    let (code, _, stderr) = run(chimera(&cache).current_dir(&project).args([
        "templates",
        "--eject",
        "reports/agent-report.md.j2",
    ]));
    assert_eq!(code, 2, "an ejected copy is never overwritten: {stderr}");
    let (code, stdout, _) = run(chimera(&cache)
        .current_dir(&project)
        .args(["templates", "agent.yaml"]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("shadows (built-in)/reports/agent-report.md.j2"),
        "{stdout}"
    );

    // A name found nowhere: every place searched is listed.
    let missing = write(
        &project,
        "missing.yaml",
        &text.replace(
            "personas/data-collector-9000.md.j2",
            "personas/nobody.md.j2",
        ),
    );
    let extra = tmp.path().join("team-templates");
    let (code, _, stderr) = run(chimera(&cache)
        .env("CHIMERA_TEMPLATE_PATH", &extra)
        .arg("validate")
        .arg(&missing));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("persona template `personas/nobody.md.j2` not found"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}  (from CHIMERA_TEMPLATE_PATH)",
            extra.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("(built-in)  (the stock templates built into chimera)"),
        "{stderr}"
    );
}
