//! Ctrl-C stops a run and keeps the record of what completed; `--resume`
//! continues from the first incomplete stage with the same inputs.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use common::{chimera, json, run, run_workflow, test_plugin, write};
use std::time::{Duration, Instant};

fn workflow(dir: &std::path::Path, second: &str, timeout: &str) -> std::path::PathBuf {
    write(
        dir,
        "resume.yaml",
        &format!(
            "version: 1
name: resume
agents:
  - id: agent
    stages:
      - id: ingest
        plugin: ingest
        read: [reports]
      - id: second
        plugin: {plugin}
        timeout: {timeout}
        with: {second}
",
            plugin = test_plugin("hostile.wasm").display()
        ),
    )
}

/// `chimera run --resume <out>`: exit code, stdout, stderr.
fn resume(cache: &std::path::Path, out: &std::path::Path) -> (i32, String, String) {
    run(chimera(cache).arg("run").arg("--resume").arg(out))
}

/// `chimera run --resume <out> --force`: for a workflow fixed since the run
/// began (a plain resume refuses it).
fn resume_fixed(cache: &std::path::Path, out: &std::path::Path) -> (i32, String, String) {
    let (code, stdout, stderr) = run(chimera(cache)
        .arg("run")
        .arg("--resume")
        .arg(out)
        .arg("--force"));
    assert!(
        code != 0 || stderr.contains("warning: resuming although the workflow"),
        "the change is named: {stderr}"
    );
    (code, stdout, stderr)
}

/// Starts `chimera run` in the background, its stdout discarded.
fn spawn_run(
    cache: &std::path::Path,
    flow: &std::path::Path,
    input: &std::path::Path,
    out: &std::path::Path,
    stderr: std::process::Stdio,
) -> std::process::Child {
    chimera(cache)
        .arg("run")
        .arg(flow)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

fn input(dir: &std::path::Path) -> std::path::PathBuf {
    write(dir, "input/reports/a.json", r#"{"tokens_per_second": 3.5}"#);
    dir.join("input")
}

#[test]
fn ctrl_c_marks_the_run_interrupted_and_keeps_completed_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let flow = workflow(tmp.path(), "{mode: loop}", "120s");
    let out = tmp.path().join("run");
    let child = spawn_run(
        &tmp.path().join("cache"),
        &flow,
        &input(tmp.path()),
        &out,
        std::process::Stdio::piped(),
    );
    // Wait until the first stage's output is written, then press Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.join("outputs/agent/ingest.json").is_file() {
        assert!(Instant::now() < deadline, "the first stage never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "Ctrl-C stops the looping stage promptly"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("chimera run --resume"), "{stderr}");
    let metrics = json(&out.join("metrics.json"));
    assert_eq!(metrics["status"], "interrupted");
    assert_eq!(metrics["stages"][0]["status"], "ok");
    assert_eq!(metrics["stages"][1]["error"]["kind"], "interrupted");
    assert!(
        out.join("outputs/agent/ingest.json").is_file(),
        "the completed stage's output is kept"
    );
}

#[test]
fn resume_continues_from_the_first_incomplete_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let flow = workflow(tmp.path(), "{mode: loop}", "1s");
    let out = tmp.path().join("run");
    let cache = tmp.path().join("cache");
    let (code, _, stderr) = run_workflow(&cache, &flow, &input(tmp.path()), &out);
    assert_eq!(code, 1, "the looping stage times out: {stderr}");
    assert_eq!(
        stderr.matches("error: stage `agent/").count(),
        1,
        "the failure is printed once: {stderr}"
    );
    assert!(!stderr.contains("ERROR"), "and not logged again: {stderr}");
    let first = json(&out.join("metrics.json"));
    let ingest_wall = first["stages"][0]["wall_ms"].clone();

    // Fix the workflow: a plain resume refuses the changed file, naming it;
    // `--force` resumes in the same directory.
    workflow(tmp.path(), "{mode: ok}", "1s");
    let (code, _, stderr) = resume(&cache, &out);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the workflow") && stderr.contains("resume.yaml changed"),
        "{stderr}"
    );
    let (code, _, stderr) = resume_fixed(&cache, &out);
    assert_eq!(code, 0, "{stderr}");
    let metrics = json(&out.join("metrics.json"));
    assert_eq!(metrics["status"], "ok");
    assert_eq!(
        metrics["stages"][0]["resumed"], true,
        "ingest is not run again"
    );
    assert_eq!(metrics["stages"][0]["wall_ms"], ingest_wall);
    assert_eq!(metrics["stages"][1]["status"], "ok");
    assert!(metrics["stages"][1].get("resumed").is_none());
    assert_eq!(json(&out.join("outputs/agent/second.json"))["ok"], true);
}

#[test]
fn resume_of_a_directory_without_a_record_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(chimera(tmp.path())
        .arg("run")
        .arg("--resume")
        .arg(tmp.path()));
    assert_eq!(code, 2);
    assert!(stderr.contains("no readable run.json"), "{stderr}");
}

#[test]
fn a_killed_run_keeps_the_stages_that_ended_a_second_before_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let hostile = test_plugin("hostile.wasm");
    let flow = |second: &str| {
        write(
            tmp.path(),
            "slow.yaml",
            &format!(
                "version: 1
name: slow
agents:
  - id: agent
    stages:
      - id: slow
        plugin: {plugin}
        with: {{mode: sleep, ms: 1200}}
      - id: second
        plugin: {plugin}
        timeout: 120s
        with: {second}
",
                plugin = hostile.display()
            ),
        )
    };
    let out = tmp.path().join("run");
    let cache = tmp.path().join("cache");
    let mut child = spawn_run(
        &cache,
        &flow("{mode: loop}"),
        &input(tmp.path()),
        &out,
        std::process::Stdio::null(),
    );
    // The first stage took over a second, so metrics.json is brought up to
    // date when it ends; a SIGKILL (no chance to write anything) keeps it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(out.join("metrics.json")).is_ok_and(|m| m.contains("\"slow\"")) {
        assert!(
            Instant::now() < deadline,
            "metrics.json never recorded the first stage"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let metrics = json(&out.join("metrics.json"));
    assert_eq!(metrics["stages"][0]["status"], "ok");
    assert!(metrics["finished_at"].is_null(), "the run never finished");

    // A torn line, as a write cut short would leave, is not a complete call.
    let mut calls = std::fs::OpenOptions::new()
        .append(true)
        .open(out.join("calls.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut calls, br#"{"agent": "agent", "sta"#).unwrap();
    flow("{mode: ok}");
    let (code, _, stderr) = resume_fixed(&cache, &out);
    assert_eq!(code, 0, "{stderr}");
    let metrics = json(&out.join("metrics.json"));
    assert_eq!(
        metrics["stages"][0]["resumed"], true,
        "the slow stage is kept"
    );
    assert_eq!(metrics["stages"][1]["status"], "ok");
    assert_eq!(
        std::fs::read_to_string(out.join("calls.jsonl")).unwrap(),
        "",
        "the resumed record keeps only complete calls"
    );
}

#[test]
fn resume_without_metrics_json_runs_every_stage_and_a_corrupt_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let flow = workflow(tmp.path(), "{mode: ok}", "10s");
    let out = tmp.path().join("run");
    let cache = tmp.path().join("cache");
    let (code, _, stderr) = run_workflow(&cache, &flow, &input(tmp.path()), &out);
    assert_eq!(code, 0, "{stderr}");

    // As a run killed before its first checkpoint leaves it: run.json and
    // outputs, no metrics.json. Nothing counts as completed.
    std::fs::remove_file(out.join("metrics.json")).unwrap();
    let (code, _, stderr) = resume(&cache, &out);
    assert_eq!(code, 0, "{stderr}");
    let metrics = json(&out.join("metrics.json"));
    for stage in metrics["stages"].as_array().unwrap() {
        assert_eq!(stage["status"], "ok");
        assert!(stage.get("resumed").is_none(), "{stage}");
    }

    std::fs::write(out.join("metrics.json"), "{\"stages\": [").unwrap();
    let (code, _, stderr) = resume(&cache, &out);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot resume from"), "{stderr}");
    assert!(stderr.contains("metrics.json"), "{stderr}");
    assert!(stderr.contains("without `--resume`"), "{stderr}");
}

#[test]
fn a_resumed_run_keeps_the_model_calls_of_the_stages_it_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let server = FakeOllama::start(FakeConfig::tokens(["an ", "answer"]));
    let hostile = test_plugin("hostile.wasm");
    let flow = |second: &str| {
        write(
            tmp.path(),
            "calls.yaml",
            &format!(
                "version: 1
name: calls
model: {{backend: ollama, name: \"gemma3:latest\", host: \"{host}\"}}
agents:
  - id: agent
    stages:
      - id: asks
        plugin: {plugin}
        with: {{mode: llm}}
      - id: second
        plugin: {plugin}
        timeout: 1s
        with: {second}
",
                host = server.url(),
                plugin = hostile.display()
            ),
        )
    };
    let out = tmp.path().join("run");
    let cache = tmp.path().join("cache");
    let (code, _, stderr) = run_workflow(&cache, &flow("{mode: loop}"), &input(tmp.path()), &out);
    assert_eq!(code, 1, "the looping stage times out: {stderr}");

    // The stage left to run calls no model: the kept call is all there is.
    flow("{mode: ok}");
    let (code, _, stderr) = resume_fixed(&cache, &out);
    assert_eq!(code, 0, "{stderr}");
    let metrics = json(&out.join("metrics.json"));
    assert_eq!(metrics["stages"][0]["resumed"], true);
    let calls = metrics["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{metrics:#}");
    assert_eq!(calls[0]["stage"], "asks");
    let lines = std::fs::read_to_string(out.join("calls.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(lines.contains("an answer"), "{lines}");
}
