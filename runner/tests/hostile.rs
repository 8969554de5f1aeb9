//! Hostile plugins fail only their own stage, with a clear message; agents
//! that do not depend on them still complete and the record keeps everything.

mod common;

use common::{chimera, json, run, run_workflow, test_plugin, write};

/// Runs a workflow with a `victim` agent (hostile stage, then a stage that
/// depends on it) and a `bystander` agent that runs an ordinary ingest.
fn run_hostile(
    with: &str,
    stage_extra: &str,
) -> (i32, serde_json::Value, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = test_plugin("hostile.wasm");
    write(
        tmp.path(),
        "input/reports/a.json",
        r#"{"tokens_per_second": 1.0}"#,
    );
    let workflow = write(
        tmp.path(),
        "hostile.yaml",
        &format!(
            "version: 1
name: hostile
agents:
  - id: victim
    stages:
      - id: bad
        plugin: {plugin}
        with: {with}
{stage_extra}
      - id: after
        plugin: {plugin}
        with: {{mode: ok}}
  - id: bystander
    stages:
      - id: ingest
        plugin: ingest
        read: [reports]
",
            plugin = plugin.display()
        ),
    );
    let out = tmp.path().join("run");
    let (code, _, stderr) = run_workflow(
        &tmp.path().join("cache"),
        &workflow,
        &tmp.path().join("input"),
        &out,
    );
    let metrics = json(&out.join("metrics.json"));
    (code, metrics, stderr, tmp)
}

fn assert_contained(metrics: &serde_json::Value, code: i32, stderr: &str) -> String {
    assert_eq!(code, 1, "{stderr}");
    let stages = metrics["stages"].as_array().unwrap();
    assert_eq!(stages[0]["status"], "failed", "{metrics}");
    assert_eq!(
        stages[1]["status"], "skipped",
        "the dependent stage does not run"
    );
    assert_eq!(stages[2]["agent"], "bystander");
    assert_eq!(
        stages[2]["status"], "ok",
        "the other agent completes: {metrics}"
    );
    stages[0]["error"]["message"].as_str().unwrap().to_owned()
}

#[test]
fn an_infinite_loop_times_out() {
    let (code, metrics, stderr, _tmp) = run_hostile("{mode: loop}", "        timeout: 1s");
    let message = assert_contained(&metrics, code, &stderr);
    assert_eq!(metrics["stages"][0]["error"]["kind"], "timed_out");
    assert!(message.contains('1'), "{message}");
    assert!(
        stderr.contains("stage `victim/bad` failed: timed out after 1 s"),
        "{stderr}"
    );
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let (code, metrics, stderr, _tmp) = run_hostile("{mode: memory}", "        memory: 64MiB");
    let message = assert_contained(&metrics, code, &stderr);
    assert!(
        message.contains("exceeded its memory limit of 64 MiB"),
        "{message}"
    );
}

#[test]
fn deep_recursion_is_a_stack_overflow_not_a_crash() {
    let (code, metrics, stderr, _tmp) = run_hostile("{mode: recursion}", "");
    let message = assert_contained(&metrics, code, &stderr);
    assert!(message.contains("stack overflow"), "{message}");
}

#[test]
fn a_panic_fails_the_stage_with_the_plugins_own_message() {
    let (code, metrics, stderr, _tmp) = run_hostile("{mode: panic}", "");
    let message = assert_contained(&metrics, code, &stderr);
    assert!(
        message.contains("hostile plugin panicked on purpose"),
        "{message}"
    );
}

#[test]
fn a_200_mb_output_is_refused() {
    let (code, metrics, stderr, _tmp) = run_hostile("{mode: output}", "");
    let message = assert_contained(&metrics, code, &stderr);
    assert!(!message.is_empty());
}

#[test]
fn an_oversized_output_within_memory_is_refused_by_the_output_cap() {
    let (code, metrics, stderr, _tmp) =
        run_hostile("{mode: output, bytes: 70000000}", "        memory: 512MiB");
    let message = assert_contained(&metrics, code, &stderr);
    assert!(
        message.contains("more than the limit of 67108864 bytes"),
        "{message}"
    );
}

#[test]
fn reading_etc_passwd_gets_an_error_not_the_bytes() {
    let (code, metrics, stderr, tmp) = run_hostile("{mode: read, path: /etc/passwd}", "");
    let message = assert_contained(&metrics, code, &stderr);
    assert!(message.contains("cannot read /etc/passwd"), "{message}");
    assert!(!tmp.path().join("run/outputs/victim/bad.json").exists());
}

#[test]
fn a_model_call_without_a_model_is_refused() {
    let (code, metrics, stderr, _tmp) = run_hostile("{mode: llm}", "");
    let message = assert_contained(&metrics, code, &stderr);
    assert!(message.contains("no model backend configured"), "{message}");
}

#[test]
fn a_model_outside_the_stages_allowlist_is_refused() {
    let (code, metrics, stderr, _tmp) = run_hostile(
        "{mode: llm}",
        "        model: {name: gemma3:latest, host: \"http://127.0.0.1:9\"}\n        models: [\"llama3:8b\"]",
    );
    let message = assert_contained(&metrics, code, &stderr);
    assert!(
        message.contains(
            "model `gemma3:latest` is not allowed for stage `victim/bad`; allowed: `llama3:8b`"
        ),
        "{message}"
    );
    assert!(
        metrics["calls"].as_array().unwrap().is_empty(),
        "no request was made"
    );
}

#[test]
fn the_llm_call_cap_is_enforced() {
    let (code, metrics, stderr, _tmp) = run_hostile(
        "{mode: llm}",
        "        model: {name: gemma3:latest, host: \"http://127.0.0.1:9\"}\n        max_llm_calls: 0",
    );
    let message = assert_contained(&metrics, code, &stderr);
    assert!(
        message.contains("reached its limit of 0 LLM calls"),
        "{message}"
    );
}

#[test]
fn a_plugin_sees_no_environment_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = test_plugin("hostile.wasm");
    let workflow = write(
        tmp.path(),
        "env.yaml",
        &format!(
            "version: 1\nname: env\nagents:\n  - id: a\n    stages:\n      - id: env\n        plugin: {}\n        with: {{mode: env}}\n",
            plugin.display()
        ),
    );
    let out = tmp.path().join("run");
    let (code, _, stderr) = run(chimera(&tmp.path().join("cache"))
        .env("CHIMERA_TEST_SECRET", "hunter2")
        .arg("run")
        .arg(&workflow)
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    let vars = json(&out.join("outputs/a/env.json"))["vars"].clone();
    assert_eq!(
        vars,
        serde_json::json!([]),
        "the host's environment is not passed on"
    );
}

#[test]
fn a_plugin_cannot_open_sockets() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (code, metrics, stderr, _tmp) =
        run_hostile(&format!("{{mode: connect, path: \"{addr}\"}}"), "");
    let message = assert_contained(&metrics, code, &stderr);
    assert!(
        message.contains(&format!("cannot connect to {addr}")),
        "{message}"
    );
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "no connection reached the listener"
    );
}

/// Bytes of the regular files under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn a_disk_bomb_is_stopped_soon_after_its_write_limit() {
    let (code, metrics, stderr, tmp) = run_hostile(
        "{mode: disk, bytes: 209715200}",
        "        write: out\n        write_limit: 8MiB",
    );
    let message = assert_contained(&metrics, code, &stderr);
    assert!(
        message.contains("wrote more than its limit of 8 MiB into `out`"),
        "{message}"
    );
    let written = bytes_under(&tmp.path().join("run/files/victim/bad"));
    assert!(
        written > 8 << 20,
        "stopped for passing the limit: {written}"
    );
    assert!(
        written < 150 << 20,
        "stopped while running, not after writing all 200 MiB: {written}"
    );
}

#[test]
fn a_stage_that_ends_over_its_write_limit_fails_and_one_under_it_does_not() {
    // 9 MiB is written faster than the periodic check: the check at the end catches it.
    let (code, metrics, stderr, _tmp) = run_hostile(
        "{mode: disk, bytes: 9437184}",
        "        write: out\n        write_limit: 8MiB",
    );
    let message = assert_contained(&metrics, code, &stderr);
    assert!(message.contains("limit of 8 MiB"), "{message}");

    let (code, metrics, stderr, _tmp) = run_hostile(
        "{mode: disk, bytes: 4194304}",
        "        write: out\n        write_limit: 8MiB",
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(metrics["stages"][0]["files"].as_array().unwrap().len(), 4);
}
