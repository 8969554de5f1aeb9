//! The Chimera Agent A workflow end to end against an in-test fake Ollama
//! (real HTTP on 127.0.0.1, chunked NDJSON): request bodies, the report a
//! person reads, and that its numbers agree with metrics.json.

mod common;

use chimera_tests::fake_ollama::{Chunking, FakeConfig, FakeOllama, Fault};
use common::{chimera, fixtures, json, root, run};
use std::path::Path;
use std::time::Duration;

/// A model answer with the headings the analyze prompt asks for.
const ANSWER: &str = "## Executive Summary\nThe inventory holds 83 artifacts from gemma3 and llama3 sweeps.\n\n## Key Findings\n- Throughput averages 14.1 tok/s across runs.\n- TTFT p99 is 15.6 ms.\n\n## Recommendations\n- Automate the benchmarking pipeline.\n- Capture memory telemetry.\n";

const TTFT_DELAY: Duration = Duration::from_millis(40);

fn answer_tokens() -> Vec<String> {
    ANSWER.split_inclusive(' ').map(str::to_owned).collect()
}

struct Run {
    code: i32,
    stderr: String,
    dir: tempfile::TempDir,
}

impl Run {
    fn out(&self) -> std::path::PathBuf {
        self.dir.path().join("run")
    }
    fn report(&self) -> String {
        std::fs::read_to_string(self.out().join("report.md")).unwrap()
    }
    fn metrics(&self) -> serde_json::Value {
        json(&self.out().join("metrics.json"))
    }
    fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.out().join("calls.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn run_agent_a(host: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = chimera(&dir.path().join("cache"));
    cmd.arg("run")
        .arg(root().join("workflows/chimera-agent-a.yaml"))
        .arg("--input")
        .arg(fixtures())
        .arg("--out")
        .arg(dir.path().join("run"))
        .arg("--set")
        .arg(format!("model.host={host}"))
        .args(["--read-timeout", "2s", "--connect-timeout", "2s"])
        .args(extra);
    let (code, _, stderr) = run(&mut cmd);
    Run { code, stderr, dir }
}

fn fake() -> FakeOllama {
    FakeOllama::start(
        FakeConfig::tokens(answer_tokens())
            .delays(TTFT_DELAY, Duration::from_millis(1))
            .chunking(Chunking::LinesPerChunk(3)),
    )
}

#[test]
fn requests_carry_the_declared_options() {
    let server = fake();
    let run = run_agent_a(&server.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let chats: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/chat")
        .collect();
    assert_eq!(
        chats.len(),
        2,
        "analyze and report each call the model once"
    );
    for chat in &chats {
        assert_eq!(chat.method, "POST");
        assert_eq!(chat.body["model"], "gemma3:latest");
        assert_eq!(
            chat.body["options"],
            serde_json::json!({"num_gpu": 80, "num_ctx": 512, "temperature": 0.8})
        );
        assert_eq!(chat.body["stream"], true);
    }
    let analyze = &chats[0].body["messages"];
    assert_eq!(analyze[0]["role"], "system");
    assert!(
        analyze[0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You are DataCollector-9000")
    );
    assert!(
        analyze[1]["content"]
            .as_str()
            .unwrap()
            .contains("Total files analyzed: 83")
    );
}

#[test]
fn the_report_has_every_section_and_its_numbers_agree_with_metrics_json() {
    let server = fake();
    let run = run_agent_a(&server.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report();
    for section in [
        "# Chimera Agent A",
        "# Technical Report: Chimera Agent A Analysis",
        "**Date:** ",
        "**Agent Type:** Chimera Agent A",
        "**Model:** gemma3:latest",
        "**Configuration:** num_gpu=80, num_ctx=512, temp=0.8, top_p=default, top_k=default, repeat_penalty=default",
        "## Workflow Summary",
        "- Files analyzed: 83",
        "- Execution time: ",
        "Total files analyzed: 83",
        "## Metrics",
        "## Key Findings",
        "- Throughput averages 14.1 tok/s across runs.",
        "## Recommendations",
        "- Capture memory telemetry.",
        "## Persona Prompt",
        "You are DataCollector-9000",
    ] {
        assert!(
            report.contains(section),
            "missing {section:?} in:\n{report}"
        );
    }

    let metrics = run.metrics();
    assert_eq!(metrics["status"], "ok");
    let stage_ms: f64 = metrics["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["wall_ms"].as_f64().unwrap())
        .sum();
    assert!(
        stage_ms <= metrics["total_ms"].as_f64().unwrap(),
        "stage times fit in the total"
    );

    let calls = metrics["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    let mut eval_count = 0;
    for call in calls {
        let tps = call["tokens_per_second"].as_f64().unwrap();
        let expected = call["eval_count"].as_f64().unwrap()
            / (call["eval_duration_ms"].as_f64().unwrap() / 1000.0);
        assert!(
            (tps - expected).abs() < 1e-6 * expected,
            "throughput = eval_count / eval_duration"
        );
        let ttft = call["ttft_ms"].as_f64().unwrap();
        assert!(
            ttft >= ms(TTFT_DELAY),
            "ttft {ttft} ms at least the fake's first-token delay"
        );
        assert!(ttft <= call["wall_ms"].as_f64().unwrap());
        eval_count += call["eval_count"].as_u64().unwrap();
    }
    assert!(
        report.contains(&format!("- Tokens Generated: {eval_count}\n")),
        "{report}"
    );
    let total_s = metrics["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["wall_ms"].as_f64().unwrap())
        .sum::<f64>()
        / 1000.0;
    let line = report
        .lines()
        .find(|l| l.starts_with("- Execution time: "))
        .unwrap();
    let shown: f64 = line["- Execution time: ".len()..]
        .split('s')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        shown + 0.01 >= total_s,
        "the agent's time ({shown}s) covers its stages ({total_s}s)"
    );
    for stage in ["ingest", "analyze", "report"] {
        assert!(line.contains(&format!("{stage} ")), "{line}");
    }

    let jsonl = run.calls();
    assert_eq!(jsonl.len(), 2, "one line per call");
    assert_eq!(jsonl[1]["stage"], "report");
    assert_eq!(jsonl[0]["stage"], "analyze");
    assert_eq!(jsonl[0]["text"], ANSWER, "calls.jsonl keeps the response");
    assert_eq!(jsonl[0]["messages"][0]["role"], "system", "and the prompt");
}

#[test]
fn a_second_run_into_the_same_out_directory_replaces_its_record() {
    let server = fake();
    let first = run_agent_a(&server.url(), &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let mut again = chimera(&first.dir.path().join("cache"));
    again
        .arg("run")
        .arg(root().join("workflows/chimera-agent-a.yaml"))
        .arg("--input")
        .arg(fixtures())
        .arg("--out")
        .arg(first.out())
        .arg("--set")
        .arg(format!("model.host={}", server.url()))
        .args(["--set", "model.options.num_ctx=1024"]);
    let (code, _, stderr) = run(&mut again);
    assert_eq!(code, 0, "{stderr}");
    let calls = first.calls();
    assert_eq!(calls.len(), 2, "the earlier run's calls are not kept");
    for call in &calls {
        assert_eq!(call["options"]["num_ctx"], 1024, "{call}");
    }
    assert_eq!(first.metrics()["calls"][0]["options"]["num_ctx"], 1024);
}

#[test]
fn the_report_reads_as_pinned() {
    let server = fake();
    let run = run_agent_a(&server.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    insta::with_settings!({filters => vec![
        (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "[time]"),
        (r"\*\*Date:\*\* \d{4}-\d\d-\d\d", "**Date:** [date]"),
        (r"\d+\.\d\ds", "[s]"),
        (r"\d+\.\d\d ms", "[ms]"),
        (r"\d+\.\d\d tok/s", "[tok/s]"),
    ]}, {
        insta::assert_snapshot!(run.report());
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn assert_failed_run(run: &Run, phrases: &[&str]) {
    assert_eq!(
        run.code, 1,
        "a failed LLM call fails the run:\n{}",
        run.stderr
    );
    for phrase in phrases {
        assert!(
            run.stderr.contains(phrase),
            "stderr lacks {phrase:?}:\n{}",
            run.stderr
        );
    }
    let metrics = run.metrics();
    assert_eq!(metrics["status"], "failed");
    assert_eq!(
        metrics["stages"][0]["status"], "ok",
        "ingest completed and is recorded"
    );
    assert_eq!(metrics["stages"][1]["status"], "failed");
    assert_eq!(metrics["stages"][2]["status"], "skipped");
    assert!(Path::new(&run.out().join("outputs/chimera-agent-a/ingest.json")).is_file());
    let report = run.report();
    assert!(
        report.contains("**Status:** failed"),
        "the report says the run failed:\n{report}"
    );
}

#[test]
fn connection_refused_says_to_start_ollama() {
    let url = chimera_tests::fake_ollama::refused_url();
    let run = run_agent_a(&url, &[]);
    assert_failed_run(&run, &[&url, "gemma3:latest", "ollama serve"]);
}

#[test]
fn an_unknown_model_says_to_pull_it() {
    let server = FakeOllama::start(FakeConfig::default().fault(Fault::Status(404)));
    let run = run_agent_a(&server.url(), &[]);
    assert_failed_run(&run, &["ollama pull gemma3:latest", &server.url()]);
}

#[test]
fn http_400_and_500_name_the_status() {
    for status in [400, 500] {
        let server = FakeOllama::start(FakeConfig::default().fault(Fault::Status(status)));
        let run = run_agent_a(&server.url(), &[]);
        assert_failed_run(&run, &[&status.to_string(), "gemma3:latest"]);
    }
}

#[test]
fn stream_faults_keep_the_partial_output() {
    for fault in [
        Fault::ErrorLineAfter(3),
        Fault::CutAfter(3),
        Fault::StallAfter(3),
    ] {
        let server = FakeOllama::start(FakeConfig::tokens(answer_tokens()).fault(fault));
        let run = run_agent_a(&server.url(), &[]);
        assert_failed_run(&run, &["gemma3:latest"]);
        let calls = run.calls();
        assert_eq!(calls.len(), 1, "{fault:?}");
        let partial: String = answer_tokens()[..3].concat();
        assert_eq!(
            calls[0]["text"], partial,
            "{fault:?}: the partial text is kept"
        );
        assert!(calls[0]["error"].is_string(), "{fault:?}");
    }
}
