//! Concurrency of many agents: N agents (2, 8, 32), each one stage making
//! one LLM call, against a fake Ollama with a 50 ms time to first token and
//! 200 tokens at 5 ms each (1.05 s a call). Reports the run's own
//! concurrency figures (speedup, efficiency, from `metrics.json`), its wall
//! time next to a plain reqwest client making the same N calls at once,
//! and chimera's peak RSS (`/usr/bin/time -f %M`).
//!
//! `cargo bench -p chimera --bench agents`; `CHIMERA_BENCH_RUNS` sets the
//! repetitions (default 3; medians are printed).

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use futures_util::StreamExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn workflow(dir: &Path, agents: usize, host: &str) -> std::path::PathBuf {
    let plugin = Path::new(chimera::plugin::GUEST_BUILD_DIR).join("hostile.wasm");
    let mut text = format!(
        "version: 1\nname: agents-{agents}\nmodel: {{backend: ollama, name: \"gemma3:latest\", host: \"{host}\"}}\nagents:\n"
    );
    for i in 0..agents {
        text.push_str(&format!(
            "  - id: agent-{i}\n    stages:\n      - id: asks\n        plugin: {}\n        with: {{mode: llm}}\n",
            plugin.display()
        ));
    }
    let path = dir.join(format!("agents-{agents}.yaml"));
    std::fs::write(&path, text).expect("write workflow");
    path
}

/// N streamed chats at once with a plain reqwest client: the floor.
fn plain(url: &str, n: usize) -> f64 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let start = Instant::now();
        let calls = (0..n).map(|_| {
            let client = client.clone();
            async move {
                let response = client
                    .post(format!("{url}/api/chat"))
                    .json(&serde_json::json!({
                        "model": "gemma3:latest",
                        "messages": [{"role": "user", "content": "hello"}],
                        "stream": true
                    }))
                    .send()
                    .await
                    .expect("send");
                let mut body = response.bytes_stream();
                while let Some(chunk) = body.next().await {
                    chunk.expect("chunk");
                }
            }
        });
        futures_util::future::join_all(calls).await;
        start.elapsed().as_secs_f64() * 1000.0
    })
}

fn main() {
    let fake = FakeOllama::start(
        FakeConfig::token_count(200).delays(Duration::from_millis(50), Duration::from_millis(5)),
    );
    let chimera = env!("CARGO_BIN_EXE_chimera");
    let scratch = tempfile::tempdir().expect("temp dir");
    let input = scratch.path().join("input");
    std::fs::create_dir_all(&input).expect("input");
    let reps: usize = std::env::var("CHIMERA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!(
        "agents | wall ms | sequential-equivalent ms | speedup | efficiency | plain reqwest ms | wall / plain | peak RSS MiB"
    );
    for agents in [2usize, 8, 32] {
        let flow = workflow(scratch.path(), agents, &fake.url());
        let (mut walls, mut seqs, mut speedups, mut effs, mut plains, mut rss) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for rep in 0..=reps {
            let out = scratch.path().join(format!("out-{agents}-{rep}"));
            let start = Instant::now();
            let output = Command::new("/usr/bin/time")
                .args(["-f", "%M"])
                .arg(chimera)
                .env("CHIMERA_CACHE_DIR", scratch.path().join("cache"))
                .arg("run")
                .arg(&flow)
                .arg("--input")
                .arg(&input)
                .arg("--out")
                .arg(&out)
                .arg("-q")
                .output()
                .expect("run chimera");
            let wall = start.elapsed().as_secs_f64() * 1000.0;
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let kib: f64 = String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .expect("peak RSS from /usr/bin/time");
            let metrics: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(out.join("metrics.json")).expect("metrics"),
            )
            .expect("json");
            let c = &metrics["concurrency"];
            let plain_ms = plain(&fake.url(), agents);
            // The first repetition warms the component cache.
            if rep > 0 {
                walls.push(wall);
                seqs.push(c["sequential_equivalent_ms"].as_f64().expect("seq"));
                speedups.push(c["speedup"].as_f64().expect("speedup"));
                effs.push(c["efficiency"].as_f64().expect("efficiency"));
                plains.push(plain_ms);
                rss.push(kib / 1024.0);
            }
        }
        let (wall, plain_ms) = (median(walls), median(plains));
        println!(
            "{agents} | {wall:.0} | {:.0} | {:.2} | {:.3} | {plain_ms:.0} | {:.2}x | {:.0}",
            median(seqs),
            median(speedups),
            median(effs),
            wall / plain_ms,
            median(rss)
        );
    }
}
