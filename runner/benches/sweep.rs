//! The throughput of a sweep itself: `workflows/chimera-agent-a-sweep.yaml`
//! (18 cells × 1 warm-up + 3 measured runs of the three-stage Agent A, two
//! LLM calls a run) against a zero-latency fake Ollama, so what is measured
//! is chimera's own per-cell cost (plugin load, runs, records, summaries).
//! Side by side, alternating: the sweep in one process, and the same 18
//! cells as 18 `chimera run --runs 3 --warmup 1 --set …` processes (what a
//! shell loop over the grid does).
//!
//! `cargo bench -p chimera --bench sweep`; `CHIMERA_BENCH_RUNS` sets the
//! repetitions of each (default 5).

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Milliseconds spent inside LLM calls by every run under `dir`.
fn llm_ms(dir: &Path) -> f64 {
    let mut total = 0.0;
    for entry in walk(dir) {
        if entry.file_name().is_some_and(|n| n == "metrics.json") {
            let text = std::fs::read_to_string(&entry).expect("metrics.json");
            let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
            total += doc["calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c["wall_ms"].as_f64().unwrap_or(0.0))
                .sum::<f64>();
        }
    }
    total
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn main() {
    let server = FakeOllama::start(FakeConfig::token_count(64));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf();
    let fixtures = root.join("tests/fixtures/benchmark-artifacts");
    let sweep = root.join("workflows/chimera-agent-a-sweep.yaml");
    let single = root.join("workflows/chimera-agent-a.yaml");
    let chimera = env!("CARGO_BIN_EXE_chimera");
    let scratch = tempfile::tempdir().expect("temp dir");
    let cache = scratch.path().join("cache");
    let host = format!("model.host={}", server.url());
    let reps: usize = std::env::var("CHIMERA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);

    let plan = Command::new(chimera)
        .args(["sweep", "plan", "--json"])
        .arg(&sweep)
        .output()
        .expect("sweep plan");
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    let cells: Vec<Vec<String>> = plan
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| {
            c["set"]
                .as_array()
                .expect("set")
                .iter()
                .map(|s| s.as_str().expect("str").to_owned())
                .collect()
        })
        .collect();
    let n = cells.len() as f64;

    let (mut one, mut one_over, mut many, mut many_over) = (vec![], vec![], vec![], vec![]);
    for rep in 0..=reps {
        let out = scratch.path().join(format!("sweep-{rep}"));
        let start = Instant::now();
        let status = Command::new(chimera)
            .env("CHIMERA_CACHE_DIR", &cache)
            .arg("run")
            .arg(&sweep)
            .arg("--input")
            .arg(&fixtures)
            .arg("--out")
            .arg(&out)
            .args(["--set", &host, "-q"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run the sweep");
        assert!(status.success(), "the sweep failed");
        let wall = start.elapsed().as_secs_f64() * 1000.0;
        let llm = llm_ms(&out);

        let loop_out = scratch.path().join(format!("loop-{rep}"));
        let start = Instant::now();
        for (i, set) in cells.iter().enumerate() {
            let mut cmd = Command::new(chimera);
            cmd.env("CHIMERA_CACHE_DIR", &cache)
                .arg("run")
                .arg(&single)
                .arg("--input")
                .arg(&fixtures)
                .arg("--out")
                .arg(loop_out.join(i.to_string()))
                .args(["--runs", "3", "--warmup", "1", "--set", &host, "-q"]);
            for s in set {
                cmd.args(["--set", s]);
            }
            let status = cmd
                .stdout(std::process::Stdio::null())
                .status()
                .expect("run a cell");
            assert!(status.success(), "a cell failed");
        }
        let loop_wall = start.elapsed().as_secs_f64() * 1000.0;
        let loop_llm = llm_ms(&loop_out);
        // The first repetition warms the component cache and the page cache.
        if rep > 0 {
            one.push(wall);
            one_over.push(wall - llm);
            many.push(loop_wall);
            many_over.push(loop_wall - loop_llm);
        }
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(&loop_out);
    }
    let (one, one_over, many, many_over) = (
        median(one),
        median(one_over),
        median(many),
        median(many_over),
    );
    println!(
        "{} cells × (1 warm-up + 3 runs) of Agent A, 2 LLM calls a run, zero-latency fake; medians of {reps}:",
        cells.len()
    );
    println!(
        "  one sweep process:       wall {one:.0} ms, {:.1} cells/s, {:.2} ms a run; outside LLM calls {one_over:.0} ms ({:.1} ms a cell)",
        n / one * 1000.0,
        one / (n * 4.0),
        one_over / n
    );
    println!(
        "  18 processes (a loop):   wall {many:.0} ms, {:.1} cells/s, {:.2} ms a run; outside LLM calls {many_over:.0} ms ({:.1} ms a cell)",
        n / many * 1000.0,
        many / (n * 4.0),
        many_over / n
    );
    println!("  ratio loop / sweep (wall): {:.2}x", many / one);
}
