//! Repeats and comparisons against a fake Ollama whose speed answers to
//! the request's options (time to first token grows with `num_ctx`) with
//! seeded jitter, and whose first chat loads the model.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama, Latency};
use common::{chimera, json, run, test_plugin, write};
use std::path::Path;
use std::time::Duration;

fn server(jitter: f64) -> FakeOllama {
    FakeOllama::start(FakeConfig::tokens(["a", "b", "c"]).latency(Latency {
        ttft: Duration::from_millis(20),
        ttft_per_kctx: Duration::from_millis(10),
        ttft_per_temperature: Duration::ZERO,
        per_token: Duration::from_millis(1),
        per_token_per_100_predict: Duration::ZERO,
        jitter,
        seed: 7,
        cold_load: Duration::from_millis(300),
    }))
}

/// One stage that calls the model once, run `plan` (YAML keys) times.
fn workflow(dir: &Path, host: &str, plan: &str) -> std::path::PathBuf {
    write(
        dir,
        "wf.yaml",
        &format!(
            "version: 1
name: timing
model: {{backend: ollama, name: \"gemma3:latest\", host: \"{host}\", options: {{num_ctx: 512}}}}
{plan}
agents:
  - id: agent
    stages:
      - id: asks
        plugin: {plugin}
        with: {{mode: llm}}
",
            plugin = test_plugin("hostile.wasm").display()
        ),
    )
}

fn chimera_run(dir: &Path, flow: &Path, extra: &[&str]) -> (i32, String, String) {
    std::fs::create_dir_all(dir.join("input")).unwrap();
    run(chimera(&dir.join("cache"))
        .arg("run")
        .arg(flow)
        .arg("--input")
        .arg(dir.join("input"))
        .arg("--out")
        .arg(dir.join("out"))
        .arg("-q")
        .args(extra))
}

fn metric<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == name)
        .unwrap_or_else(|| panic!("no {name} in {doc:#}"))
}

const COMPARE: &str = "runs: 8
warmup: 1
compare:
  seed: 3
  baseline: {label: small-ctx}
  candidate:
    label: big-ctx
    set: {model.options.num_ctx: 8192}";

#[test]
fn a_slower_candidate_is_worse_with_p_below_001_and_the_record_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = server(0.05);
    let flow = workflow(tmp.path(), &fake.url(), COMPARE);
    let (code, stdout, stderr) = chimera_run(tmp.path(), &flow, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("| agent/asks ttft_ms |"),
        "the table is printed: {stdout}"
    );
    let out = tmp.path().join("out");
    let doc = json(&out.join("comparison.json"));

    let ttft = metric(&doc, "agent/asks ttft_ms");
    assert_eq!(ttft["verdict"], "worse", "{ttft:#}");
    assert!(ttft["p_value"].as_f64().unwrap() < 0.01, "{ttft:#}");
    assert!(ttft["ratio_ci95"][0].as_f64().unwrap() > 1.0, "{ttft:#}");
    // The fake's configured delays: 20 ms + 10 ms per 1024 of num_ctx, ±5 %.
    // Warm-ups are left out: 8 samples a side. The client adds the HTTP
    // round trip, so the tolerance is one-sided and a few ms wide.
    let (base, cand) = (&ttft["baseline"], &ttft["candidate"]);
    assert_eq!((base["n"].as_u64(), cand["n"].as_u64()), (Some(8), Some(8)));
    let base_mean = base["mean"].as_f64().unwrap();
    let cand_mean = cand["mean"].as_f64().unwrap();
    assert!(
        (25.0 * 0.95..25.0 * 1.05 + 15.0).contains(&base_mean),
        "{base_mean}"
    );
    assert!(
        (100.0 * 0.95..100.0 * 1.05 + 15.0).contains(&cand_mean),
        "{cand_mean}"
    );

    // Every run is a record of its own; the order alternates and is recorded.
    let order = doc["order"].as_array().unwrap();
    assert_eq!(order.len(), 18);
    let seq: Vec<String> = order
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["side"].as_str().unwrap(),
                r["kind"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        seq[..4],
        [
            "small-ctx warmup",
            "big-ctx warmup",
            "small-ctx run",
            "big-ctx run"
        ]
    );
    for r in order {
        assert!(
            out.join(r["dir"].as_str().unwrap())
                .join("metrics.json")
                .is_file()
        );
    }
    // The first chat loaded the model: its call is flagged cold (it is a
    // warm-up, so it is left out twice over).
    let first = json(&out.join("small-ctx/warmup-1/metrics.json"));
    assert_eq!(first["calls"][0]["cold"], true, "{first:#}");
    let later = json(&out.join("small-ctx/run-1/metrics.json"));
    assert_eq!(later["calls"][0]["cold"], false);
    assert!(out.join("comparison.md").is_file());

    // `chimera compare` on the two sides' records agrees.
    let (code, stdout, stderr) = run(chimera(&tmp.path().join("cache"))
        .arg("compare")
        .arg(out.join("small-ctx"))
        .arg(out.join("big-ctx"))
        .args(["--seed", "3", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let again: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let same = metric(&again, "agent/asks ttft_ms");
    for key in ["verdict", "p_value", "ratio_ci95", "baseline", "candidate"] {
        assert_eq!(same[key], ttft[key], "{key}");
    }
}

#[test]
fn identical_sides_show_no_detectable_difference() {
    let tmp = tempfile::tempdir().unwrap();
    // Wide jitter: the seeded draws, not the machine's noise, decide.
    let fake = server(0.3);
    let flow = workflow(
        tmp.path(),
        &fake.url(),
        "runs: 6\ncompare:\n  baseline: {label: a}\n  candidate: {label: b}",
    );
    let (code, _, stderr) = chimera_run(tmp.path(), &flow, &[]);
    assert_eq!(code, 0, "{stderr}");
    let doc = json(&tmp.path().join("out/comparison.json"));
    let ttft = metric(&doc, "agent/asks ttft_ms");
    assert_eq!(ttft["verdict"], "no_detectable_difference", "{ttft:#}");
    assert!(
        ttft["runs_to_detect_5_percent"]
            .as_u64()
            .is_some_and(|n| n > 6),
        "{ttft:#}"
    );
}

#[test]
fn repeats_summarise_every_metric_and_leave_cold_calls_out_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = server(0.05);
    let flow = workflow(tmp.path(), &fake.url(), "runs: 4");
    let (code, stdout, stderr) = chimera_run(tmp.path(), &flow, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("| run total_ms | 4 |"), "{stdout}");
    let summary = json(&tmp.path().join("out/summary.json"));
    assert_eq!(summary["cold_calls_left_out"], 1);
    assert_eq!(
        summary["metrics"]["agent/asks ttft_ms"]["n"], 3,
        "{summary:#}"
    );
    assert_eq!(summary["metrics"]["run total_ms"]["n"], 4);
    for key in ["mean", "sd", "cv", "min", "p50", "p95", "max", "ci95"] {
        assert!(
            !summary["metrics"]["agent/asks ttft_ms"][key].is_null(),
            "{key}: {summary:#}"
        );
    }

    // --include-cold counts the first call; --runs overrides the workflow.
    let tmp2 = tempfile::tempdir().unwrap();
    let fake2 = server(0.05);
    let flow2 = workflow(tmp2.path(), &fake2.url(), "runs: 4");
    let (code, _, stderr) = chimera_run(tmp2.path(), &flow2, &["--include-cold", "--runs", "3"]);
    assert_eq!(code, 0, "{stderr}");
    let summary = json(&tmp2.path().join("out/summary.json"));
    assert_eq!(summary["runs"], 3);
    assert_eq!(summary["metrics"]["agent/asks ttft_ms"]["n"], 3);
    assert!(
        summary["metrics"]["agent/asks ttft_ms"]["max"]
            .as_f64()
            .unwrap()
            > 300.0,
        "the cold call's load is in: {summary:#}"
    );
}

#[test]
fn compare_refuses_records_that_differ_in_more_than_options() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = server(0.05);
    let flow = workflow(tmp.path(), &fake.url(), "");
    let (code, _, stderr) = chimera_run(tmp.path(), &flow, &[]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::rename(tmp.path().join("out"), tmp.path().join("one")).unwrap();
    // The same workflow with another model name: not an option.
    let other = std::fs::read_to_string(&flow)
        .unwrap()
        .replace("gemma3:latest", "llama3:latest");
    std::fs::write(&flow, other).unwrap();
    let (code, _, stderr) = chimera_run(tmp.path(), &flow, &[]);
    assert_eq!(code, 0, "{stderr}");
    let compare = |force: bool| {
        let mut cmd = chimera(&tmp.path().join("cache"));
        cmd.arg("compare")
            .arg(tmp.path().join("one"))
            .arg(tmp.path().join("out"));
        if force {
            cmd.arg("--force");
        }
        run(&mut cmd)
    };
    let (code, _, stderr) = compare(false);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the model of `agent/asks`"), "{stderr}");
    let (code, _, stderr) = compare(true);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("warning: the records differ"), "{stderr}");
}
