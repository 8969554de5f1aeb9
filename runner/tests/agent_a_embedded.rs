//! Chimera Agent A end to end on the embedded backend: llama.cpp in-process
//! with the default SmolLM2 model (fetched by `scripts/fetch-model`), over the
//! project's own sample data. Metrics must be real, not placeholders.

mod common;

use common::{chimera, json, root, run};
use std::path::PathBuf;

/// Runs `workflow` (under `workflows/`) on the embedded default model over
/// the sample data, with `extra` arguments; the record lands in `<tmp>/out`.
fn run_embedded(
    workflow: &str,
    extra: &[&str],
) -> (tempfile::TempDir, PathBuf, i32, String, String) {
    chimera::llm::models::resolve("smollm2-135m")
        .unwrap_or_else(|e| panic!("{e}\nrun scripts/fetch-model first"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (code, stdout, stderr) = run(chimera(&tmp.path().join("cache"))
        .arg("run")
        .arg(root().join("workflows").join(workflow))
        .arg("--input")
        .arg(root().join("sample-data"))
        .arg("--out")
        .arg(&out)
        .args(["--backend", "embedded", "--model", "smollm2-135m"])
        .args(extra));
    (tmp, out, code, stdout, stderr)
}

#[test]
fn agent_a_runs_on_the_embedded_model_with_real_metrics() {
    let (_tmp, out, code, stdout, stderr) = run_embedded(
        "chimera-agent-a.yaml",
        &[
            "--set",
            "model.options.num_ctx=2048",
            "--set",
            "model.options.num_predict=32",
            "--set",
            "model.options.temperature=0",
            "--set",
            "model.options.seed=1",
        ],
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("report: "), "{stdout}");

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for section in [
        "# Technical Report: Chimera Agent A Analysis",
        "**Model:** smollm2-135m",
        "**Configuration:** num_gpu=80, num_ctx=2048, temp=0, top_p=default",
        "## Workflow Summary",
        "- Files analyzed: 7",
        "## Metrics",
        "## Key Findings",
        "## Recommendations",
        "## Persona Prompt",
    ] {
        assert!(
            report.contains(section),
            "missing {section:?} in:\n{report}"
        );
    }

    let metrics = json(&out.join("metrics.json"));
    let calls = metrics["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "analyze and report");
    let mut loads = 0;
    for call in calls {
        assert_eq!(call["backend"], "embedded");
        assert!(call["eval_count"].as_u64().unwrap() > 0, "{call}");
        assert!(
            call["eval_count"].as_u64().unwrap() <= 32,
            "num_predict bounds the answer: {call}"
        );
        assert!(call["prompt_eval_count"].as_u64().unwrap() > 0, "{call}");
        assert!(call["tokens_per_second"].as_f64().unwrap() > 0.0, "{call}");
        let ttft = call["ttft_ms"].as_f64().unwrap();
        assert!(
            ttft > 0.0 && ttft <= call["total_duration_ms"].as_f64().unwrap(),
            "{call}"
        );
        if call["load_duration_ms"].as_f64().unwrap_or(0.0) > 0.0 {
            loads += 1;
        }
    }
    assert_eq!(
        loads, 1,
        "the model is loaded once and shared by both stages"
    );
    let tokens: u64 = calls
        .iter()
        .map(|c| c["eval_count"].as_u64().unwrap())
        .sum();
    assert!(
        report.contains(&format!("- Tokens Generated: {tokens}\n")),
        "{report}"
    );
}

/// The seed's sweep on the embedded model (one sixth of its cells, one run
/// each, short answers): every cell ends ok with real figures, and the
/// model is loaded once for the whole process, not once a cell.
#[test]
fn the_seeds_sweep_runs_on_the_embedded_model_with_one_model_load() {
    let (_tmp, out, code, stdout, stderr) = run_embedded(
        "chimera-agent-a-sweep.yaml",
        &[
            "--runs",
            "1",
            "--warmup",
            "0",
            "--shard",
            "1/6",
            "-q",
            "--set",
            "model.options.num_predict=16",
            "--set",
            "model.options.seed=1",
        ],
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let summary = json(&out.join("summary.json"));
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3, "{summary:#}");
    let mut loads = 0;
    for cell in cells {
        assert_eq!(cell["status"], "ok");
        let dir = out.join(cell["dir"].as_str().unwrap());
        let metrics = json(&dir.join("run-1/metrics.json"));
        for call in metrics["calls"].as_array().unwrap() {
            assert!(call["tokens_per_second"].as_f64().unwrap() > 0.0);
            assert_eq!(
                call["options"]["num_ctx"],
                cell["values"]["model.options.num_ctx"]
            );
            if call["cold"] == true {
                loads += 1;
                assert!(call["load_duration_ms"].as_f64().unwrap() > 0.0);
            }
        }
    }
    assert_eq!(loads, 1, "one model load for the sweep");
    assert_eq!(cells[0]["mark"], "best");
}

/// The multi-agent study on the embedded model: both agents' calls are
/// decoded together in one llama.cpp context, and each call's figures stay
/// its own — its tokens add up to its agent's report, its share of the
/// decode time is no more than the call took.
#[test]
fn the_multi_agent_study_shares_the_embedded_model_and_keeps_each_calls_counts() {
    let (_tmp, out, code, stdout, stderr) = run_embedded(
        "chimera-multi-agent.yaml",
        &["--set", "model.options.num_predict=24"],
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");

    let metrics = json(&out.join("metrics.json"));
    let calls = metrics["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 4, "analyze and report of each agent");
    let mut together = 0;
    for call in calls {
        let tokens = call["eval_count"]
            .as_u64()
            .expect("the engine counts its tokens");
        assert!((1..=24).contains(&tokens), "{call:#}");
        let batch = &call["batch"];
        let share = batch["compute_ms"].as_f64().unwrap();
        assert!(
            share > 0.0 && share <= call["wall_ms"].as_f64().unwrap(),
            "{call:#}"
        );
        if batch["peak_sequences"].as_u64() == Some(2) {
            together += 1;
        }
    }
    assert!(
        together >= 2,
        "the agents' calls were decoded together: {calls:#?}"
    );
    for agent in ["collector", "insight"] {
        let sum: u64 = calls
            .iter()
            .filter(|c| c["agent"] == agent)
            .map(|c| c["eval_count"].as_u64().unwrap())
            .sum();
        let report = std::fs::read_to_string(out.join(format!("report-{agent}.md"))).unwrap();
        assert!(
            report.contains(&format!("- Tokens Generated: {sum}\n")),
            "{agent}: {sum} tokens in its calls; its report:\n{report}"
        );
    }
    let combined = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(combined.contains("**speedup "), "{combined}");
}
