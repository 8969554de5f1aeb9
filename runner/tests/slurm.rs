//! A sweep submitted to a real Slurm (a single node, started by
//! `scripts/slurm-up`, which `scripts/test` runs as root): the cells as a
//! job array with `--shard auto`, the merge as a job that waits for the
//! array (`--dependency=afterok`), against a fake Ollama on 127.0.0.1.
//!
//! Skipped when Slurm is not up, unless `CHIMERA_REQUIRE_SLURM` is set
//! (`scripts/test` sets it once Slurm started), which makes it fail instead.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama, Latency};
use common::{json, root, test_plugin, write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn slurm_is_up() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l == "idle")
        })
}

fn sbatch(args: &[&str], dir: &Path, env: &[(String, String)]) -> String {
    let out = Command::new("sbatch")
        .envs(env.iter().cloned())
        .arg("--parsable")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run sbatch");
    assert!(
        out.status.success(),
        "sbatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Waits until Slurm no longer lists the job (done, failed or cancelled).
fn wait_for(job: &str, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        let out = Command::new("squeue")
            .args(["-h", "-j", job])
            .output()
            .expect("run squeue");
        if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("job {job} still queued or running after {limit:?}");
}

#[test]
fn a_sweep_runs_as_a_slurm_job_array_and_a_dependent_job_merges_it() {
    if !slurm_is_up() {
        assert!(
            std::env::var_os("CHIMERA_REQUIRE_SLURM").is_none(),
            "CHIMERA_REQUIRE_SLURM is set but `sinfo` shows no idle node; start Slurm with scripts/slurm-up"
        );
        eprintln!("skipped: no Slurm here (run scripts/slurm-up as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fake = FakeOllama::start(FakeConfig::token_count(4).latency(Latency {
        ttft: Duration::from_millis(10),
        ttft_per_kctx: Duration::from_millis(10),
        ttft_per_temperature: Duration::ZERO,
        per_token: Duration::from_millis(1),
        per_token_per_100_predict: Duration::ZERO,
        jitter: 0.0,
        seed: 1,
        cold_load: Duration::ZERO,
    }));
    let flow = write(
        dir,
        "sweep.yaml",
        &format!(
            "version: 1
name: slurm-sweep
model: {{backend: ollama, name: \"gemma3:latest\", host: \"{}\"}}
runs: 2
objective: min ttft_ms
matrix:
  model.options.num_ctx: [1024, 2048, 4096]
  model.options.temperature: [0.2, 0.8]
agents:
  - id: agent
    stages:
      - id: asks
        plugin: {}
        with: {{mode: llm}}
",
            fake.url(),
            test_plugin("hostile.wasm").display()
        ),
    );
    std::fs::create_dir_all(dir.join("input")).unwrap();
    // The documented job script, as a user submits it, with this build's
    // chimera first on PATH (sbatch passes the environment on).
    let chimera = Path::new(env!("CARGO_BIN_EXE_chimera"));
    let path = format!(
        "{}:{}",
        chimera.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [
        ("PATH", path.as_str()),
        (
            "CHIMERA_CACHE_DIR",
            &dir.join("cache").display().to_string(),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let script = root().join("docs/examples/sweep.sbatch");
    let d = dir.display();
    let array = sbatch(
        &[
            "--array=0-2",
            &format!("--output={d}/slurm-%A_%a.out"),
            script.to_str().unwrap(),
            flow.to_str().unwrap(),
            &format!("{d}/input"),
            &format!("{d}/shards"),
        ],
        dir,
        &env,
    );
    let merge = sbatch(
        &[
            &format!("--dependency=afterok:{array}"),
            &format!("--output={d}/merge-%j.out"),
            "--wrap",
            &format!("chimera merge {d}/shards/shard-* --out {d}/merged"),
        ],
        dir,
        &env,
    );
    wait_for(&merge, Duration::from_secs(300));
    let logs: String = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".out"))
        .map(|e| {
            format!(
                "== {}\n{}",
                e.path().display(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            )
        })
        .collect();
    let summary_file = dir.join("merged/summary.json");
    assert!(
        summary_file.is_file(),
        "no merged summary; job logs:\n{logs}"
    );
    let summary = json(&summary_file);
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6, "{logs}");
    assert!(summary["missing"].as_array().unwrap().is_empty());
    assert!(cells.iter().all(|c| c["status"] == "ok" && c["runs"] == 2));
    // Each array task took its own shard from Slurm's variables.
    for task in 0..3 {
        let manifest = json(&dir.join(format!("shards/shard-{task}/sweep.json")));
        assert_eq!(manifest["shard"]["index"], task + 1);
        assert_eq!(manifest["shard"]["count"], 3);
        assert_eq!(manifest["assigned"].as_array().unwrap().len(), 2);
    }
    // The best cell is the smallest context (time to first token grows with it).
    assert_eq!(cells[0]["mark"], "best");
    assert_eq!(cells[0]["values"]["model.options.num_ctx"], 1024);
}
