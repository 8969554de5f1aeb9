//! `chimera report <run-dir>` after a report template is edited: the
//! report changes, no model is called, and the provenance says so.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use common::{chimera, json, root, run};
use sha2::{Digest, Sha256};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
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

#[test]
fn a_template_edit_shows_after_chimera_report_with_no_model_call() {
    let server = FakeOllama::start(FakeConfig::default());
    let tmp = tempfile::tempdir().unwrap();
    // A project of its own, so the template can be edited.
    copy_dir(&root().join("templates"), &tmp.path().join("templates"));
    std::fs::create_dir_all(tmp.path().join("workflows")).unwrap();
    let flow = tmp.path().join("workflows/agent-a.yaml");
    std::fs::copy(root().join("workflows/chimera-agent-a.yaml"), &flow).unwrap();
    let out = tmp.path().join("run");
    let cache = tmp.path().join("cache");
    let (code, stdout, stderr) = run(chimera(&cache)
        .arg("run")
        .arg(&flow)
        .arg("--input")
        .arg(root().join("sample-data"))
        .arg("--out")
        .arg(&out)
        .args(["--set", &format!("model.host={}", server.url()), "-q"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let before = std::fs::read_to_string(out.join("report.md")).unwrap();
    let calls = server.requests().len();

    let template = tmp.path().join("templates/reports/agent-report.md.j2");
    let mut text = std::fs::read_to_string(&template).unwrap();
    text.push_str("\nRe-rendered for {{ agent.title }} with {{ metrics.eval_count }} tokens.\n");
    std::fs::write(&template, text).unwrap();

    let (code, stdout, stderr) = run(chimera(&cache).arg("report").arg(&out));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(server.requests().len(), calls, "no model call");
    let after = std::fs::read_to_string(out.join("report.md")).unwrap();
    let metrics = json(&out.join("metrics.json"));
    let tokens = metrics["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["eval_count"].as_u64().unwrap())
        .sum::<u64>();
    assert!(
        after.contains(&format!(
            "Re-rendered for Chimera Agent A with {tokens} tokens."
        )),
        "{after}"
    );
    assert!(
        after.starts_with(before.trim_end()),
        "the rest of the report is as it was"
    );
    let note = &metrics["provenance"]["rerendered"][0];
    assert_eq!(note["files"], serde_json::json!(["report.md"]));
    let sha = hex::encode(Sha256::digest(std::fs::read(&template).unwrap()));
    assert!(
        note["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "reports/agent-report.md.j2" && t["sha256"] == sha.as_str()),
        "{note:#}"
    );
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("re-rendered from the record"));
    assert!(page.contains("Re-rendered for Chimera Agent A"));
}
