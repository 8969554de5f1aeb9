//! Runner overhead of the three-stage Chimera Agent A workflow against a
//! zero-latency fake Ollama: process wall time minus time inside LLM calls,
//! next to a plain reqwest client sending the same two requests.
//!
//! `cargo bench -p chimera --bench overhead` (release build of `chimera`);
//! `CHIMERA_BENCH_BIN=/path/to/chimera` measures another build instead.

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use futures_util::StreamExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const RUNS: usize = 30;

/// Per stage: name, then load, instantiate and guest-outside-LLM samples (ms).
type StageSamples = (String, Vec<f64>, Vec<f64>, Vec<f64>);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let server = FakeOllama::start(FakeConfig::token_count(64));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf();
    let fixtures = root.join("../shared/fixtures/benchmark-artifacts");
    let scratch = tempfile::tempdir().expect("temp dir");
    let cache = scratch.path().join("cache");
    // Another build of chimera can be measured by the same harness (A/B runs).
    let binary = std::env::var_os("CHIMERA_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_chimera").into());
    let run = |out: &Path| {
        let start = Instant::now();
        let status = Command::new(&binary)
            .env("CHIMERA_CACHE_DIR", &cache)
            .arg("run")
            .arg(root.join("workflows/chimera-agent-a.yaml"))
            .arg("--input")
            .arg(&fixtures)
            .arg("--out")
            .arg(out)
            .arg("--set")
            .arg(format!("model.host={}", server.url()))
            .arg("-q")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run chimera");
        assert!(status.success(), "chimera failed");
        start.elapsed()
    };
    run(&scratch.path().join("warm")); // compiles and caches the components

    let mut walls = Vec::new();
    let mut llm = Vec::new();
    let mut overhead = Vec::new();
    let mut stage_parts: Vec<StageSamples> = Vec::new();
    for i in 0..RUNS {
        let out = scratch.path().join(format!("run{i}"));
        let wall = run(&out).as_secs_f64() * 1e3;
        let text = std::fs::read_to_string(out.join("metrics.json")).expect("metrics.json");
        let metrics: serde_json::Value = serde_json::from_str(&text).expect("json");
        let in_llm: f64 = metrics["calls"]
            .as_array()
            .expect("calls")
            .iter()
            .map(|c| c["wall_ms"].as_f64().unwrap_or(0.0))
            .sum();
        for (j, stage) in metrics["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .enumerate()
        {
            if stage_parts.len() <= j {
                stage_parts.push((
                    stage["stage"].as_str().unwrap_or("?").to_owned(),
                    Vec::new(),
                    Vec::new(),
                    Vec::new(),
                ));
            }
            let f = |k: &str| stage[k].as_f64().unwrap_or(0.0);
            stage_parts[j].1.push(f("load_ms"));
            stage_parts[j].2.push(f("instantiate_ms"));
            stage_parts[j].3.push(f("guest_ms") - f("llm_ms"));
        }
        walls.push(wall);
        llm.push(in_llm);
        overhead.push(wall - in_llm);
    }

    // The same two requests the workflow sent, through a plain reqwest client.
    let bodies: Vec<serde_json::Value> = server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/chat")
        .take(2)
        .map(|r| r.body.clone())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let url = format!("{}/api/chat", server.url());
    let mut plain = Vec::new();
    for _ in 0..RUNS {
        let elapsed = runtime.block_on(async {
            let start = Instant::now();
            let client = reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client");
            for body in &bodies {
                let mut stream = client
                    .post(&url)
                    .json(body)
                    .send()
                    .await
                    .expect("send")
                    .bytes_stream();
                while let Some(chunk) = stream.next().await {
                    chunk.expect("chunk");
                }
            }
            start.elapsed()
        });
        plain.push(elapsed.as_secs_f64() * 1e3);
    }

    let (wall, llm, overhead, plain) =
        (median(walls), median(llm), median(overhead), median(plain));
    println!("runs: {RUNS} each; fake Ollama on 127.0.0.1 with zero latency, 64 tokens per answer");
    println!("chimera process wall (3 stages, 2 LLM calls): median {wall:.2} ms");
    println!("  of which inside LLM calls:                   median {llm:.2} ms");
    println!("  runner overhead (wall - LLM):                median {overhead:.2} ms");
    println!("plain reqwest, same two requests (in-process): median {plain:.2} ms");
    println!(
        "ratio chimera wall / plain reqwest:            {:.1}x",
        wall / plain
    );
    for (stage, load, inst, guest) in stage_parts {
        println!(
            "  stage {stage:8} load {:.2} ms, instantiate {:.2} ms, guest outside LLM {:.2} ms (medians)",
            median(load),
            median(inst),
            median(guest)
        );
    }
}
