//! Runner overhead of the three-stage Chimera Agent A workflow against a
//! zero-latency fake Ollama: process wall time minus time inside LLM calls,
//! next to a plain reqwest client sending the same two requests.
//!
//! `cargo bench -p chimera --bench overhead` (release build of `chimera`);
//! `CHIMERA_BENCH_BIN=/path/to/chimera` measures another build instead, and
//! `CHIMERA_BENCH_COMPARE=/path/to/other` a second one side by side (their
//! runs alternate, and the median of the per-pair differences is printed);
//! `CHIMERA_BENCH_RUNS` sets the runs per build (default 30).

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use futures_util::StreamExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const DEFAULT_RUNS: usize = 30;

/// Per stage: name, then load, instantiate and guest-outside-LLM samples (ms).
type StageSamples = (String, Vec<f64>, Vec<f64>, Vec<f64>);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What one build's runs measured.
#[derive(Default)]
struct Samples {
    walls: Vec<f64>,
    llm: Vec<f64>,
    overhead: Vec<f64>,
    stages: Vec<StageSamples>,
}

impl Samples {
    /// Adds one run: its wall time and what its metrics.json says.
    fn add(&mut self, wall: f64, metrics: &serde_json::Value) {
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
            if self.stages.len() <= j {
                self.stages.push((
                    stage["stage"].as_str().unwrap_or("?").to_owned(),
                    Vec::new(),
                    Vec::new(),
                    Vec::new(),
                ));
            }
            let f = |k: &str| stage[k].as_f64().unwrap_or(0.0);
            self.stages[j].1.push(f("load_ms"));
            self.stages[j].2.push(f("instantiate_ms"));
            self.stages[j].3.push(f("guest_ms") - f("llm_ms"));
        }
        self.walls.push(wall);
        self.llm.push(in_llm);
        self.overhead.push(wall - in_llm);
    }

    fn print(self, plain: f64) {
        let (wall, llm, overhead) = (median(self.walls), median(self.llm), median(self.overhead));
        println!("chimera process wall (3 stages, 2 LLM calls): median {wall:.2} ms");
        println!("  of which inside LLM calls:                   median {llm:.2} ms");
        println!("  runner overhead (wall - LLM):                median {overhead:.2} ms");
        println!(
            "ratio chimera wall / plain reqwest:            {:.1}x",
            wall / plain
        );
        for (stage, load, inst, guest) in self.stages {
            println!(
                "  stage {stage:8} load {:.2} ms, instantiate {:.2} ms, guest outside LLM {:.2} ms (medians)",
                median(load),
                median(inst),
                median(guest)
            );
        }
    }
}

fn main() {
    let server = FakeOllama::start(FakeConfig::token_count(64));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf();
    let fixtures = root.join("tests/fixtures/benchmark-artifacts");
    let scratch = tempfile::tempdir().expect("temp dir");
    // Another build of chimera can be measured by the same harness, and two
    // builds side by side: their runs alternate, so both see the same noise.
    let mut binaries = vec![
        std::env::var_os("CHIMERA_BENCH_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_chimera").into()),
    ];
    binaries.extend(std::env::var_os("CHIMERA_BENCH_COMPARE"));
    let run = |binary: &std::ffi::OsStr, cache: &Path, out: &Path| {
        let start = Instant::now();
        let status = Command::new(binary)
            .env("CHIMERA_CACHE_DIR", cache)
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
    let caches: Vec<_> = (0..binaries.len())
        .map(|b| scratch.path().join(format!("cache{b}")))
        .collect();
    for (b, binary) in binaries.iter().enumerate() {
        // Compiles and caches the components.
        run(binary, &caches[b], &scratch.path().join(format!("warm{b}")));
    }

    let runs: usize = std::env::var("CHIMERA_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_RUNS);
    let mut samples: Vec<Samples> = binaries.iter().map(|_| Samples::default()).collect();
    for i in 0..runs {
        for (b, binary) in binaries.iter().enumerate() {
            let out = scratch.path().join(format!("run{i}-{b}"));
            let wall = run(binary, &caches[b], &out).as_secs_f64() * 1e3;
            let text = std::fs::read_to_string(out.join("metrics.json")).expect("metrics.json");
            samples[b].add(wall, &serde_json::from_str(&text).expect("json"));
        }
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
    for _ in 0..runs {
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

    let plain = median(plain);
    println!("runs: {runs} each; fake Ollama on 127.0.0.1 with zero latency, 64 tokens per answer");
    if let [a, b] = samples.as_slice() {
        let paired = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(a, b)| b - a).collect());
        println!(
            "second build minus first, median of {runs} pairs: runner overhead {:+.2} ms, wall {:+.2} ms",
            paired(&a.overhead, &b.overhead),
            paired(&a.walls, &b.walls)
        );
    }
    println!("plain reqwest, same two requests (in-process): median {plain:.2} ms");
    for (binary, samples) in binaries.iter().zip(samples) {
        if binaries.len() > 1 {
            println!("== {}", binary.to_string_lossy());
        }
        samples.print(plain);
    }
}
