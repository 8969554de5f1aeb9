//! `chimera runs list` over 10,000 records, as a person runs it: the real
//! binary, a new process each time, output to a pipe.
//!
//! The records are copies of one real record (Agent A against the fake
//! Ollama server): its `metrics.json` under 10,000 directory names, started
//! a minute apart, over five workflow names, every seventh failed, every
//! tenth tagged. Measured side by side in one run, alternating:
//!
//! - `chimera --version` (what any chimera command costs to start);
//! - `runs list` with no index (it reads all 10,000 records; the first
//!   list after an upgrade or a deleted index);
//! - `runs list` (30 newest; every directory's time checked against the
//!   index);
//! - `runs list --workflow … --status ok --since …` (filtered);
//! - `runs list --limit 0 --json` (all 10,000);
//! - `runs list --no-refresh` (the index alone).
//!
//! `cargo bench -p chimera --bench runs_list`; `CHIMERA_BENCH_RUNS` sets the
//! repetitions (default 21; the cold list runs a third as often),
//! `CHIMERA_BENCH_RECORDS` the number of records (default 10,000).

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn chimera(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chimera"));
    cmd.current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("CHIMERA_RUNS_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Milliseconds one command took, start to exit (its output read).
fn time(cwd: &Path, args: &[&str]) -> f64 {
    let start = Instant::now();
    let out = chimera(cwd).args(args).output().expect("run chimera");
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert!(
        out.status.success(),
        "chimera {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ms
}

fn main() {
    let reps: usize = std::env::var("CHIMERA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    let records: usize = std::env::var("CHIMERA_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf();
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tmp.path();

    // One real record.
    let server = FakeOllama::start(FakeConfig::default());
    let out = chimera(cwd)
        .arg("run")
        .arg(repo.join("workflows/chimera-agent-a.yaml"))
        .arg("--input")
        .arg(repo.join("sample-data"))
        .args(["--out", "seed", "-q", "--set"])
        .arg(format!("model.host={}", server.url()))
        .env("CHIMERA_CACHE_DIR", cwd.join("cache"))
        .output()
        .expect("run chimera");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cwd.join("seed/metrics.json")).expect("metrics.json"),
    )
    .expect("json");

    let made = Instant::now();
    let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
    for i in 0..records {
        let at = start + jiff::SignedDuration::from_mins(i64::try_from(i).expect("count"));
        let workflow = format!("agent-{}", i % 5);
        let dir = cwd
            .join("runs")
            .join(format!("{}-{workflow}", at.strftime("%Y%m%dT%H%M%SZ")));
        std::fs::create_dir_all(&dir).expect("record dir");
        let mut m = seed.clone();
        m["workflow"] = workflow.into();
        m["started_at"] = at.to_string().into();
        if i % 7 == 0 {
            m["status"] = "failed".into();
        }
        std::fs::write(dir.join("metrics.json"), m.to_string()).expect("metrics.json");
        if i % 10 == 0 {
            std::fs::write(dir.join("tags.json"), r#"["nightly"]"#).expect("tags.json");
        }
    }
    println!(
        "{records} records written in {:.1} s ({} bytes of metrics.json each)",
        made.elapsed().as_secs_f64(),
        seed.to_string().len()
    );

    let index = cwd.join("runs/.chimera-index.sqlite");
    let since = (start + jiff::SignedDuration::from_hours(24 * 3)).to_string();
    let cases: [(&str, Vec<&str>); 6] = [
        ("chimera --version", vec!["--version"]),
        ("runs list, no index", vec!["runs", "list"]),
        ("runs list", vec!["runs", "list"]),
        (
            "runs list --workflow --status --since",
            vec![
                "runs",
                "list",
                "--workflow",
                "agent-3",
                "--status",
                "ok",
                "--since",
                &since,
            ],
        ),
        (
            "runs list --limit 0 --json",
            vec!["runs", "list", "--limit", "0", "--json"],
        ),
        (
            "runs list --no-refresh",
            vec!["runs", "list", "--no-refresh"],
        ),
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    // One untimed list first: the page cache holds the directories, as it
    // does on a machine where records are looked at.
    time(cwd, &["runs", "list"]);
    for rep in 0..reps {
        for (i, (_, args)) in cases.iter().enumerate() {
            if i == 1 {
                if rep % 3 != 0 {
                    continue;
                }
                chimera::history::Index::remove(&cwd.join("runs"));
                assert!(!index.exists());
            }
            samples[i].push(time(cwd, args));
        }
    }
    println!(
        "\n| command ({records} records) | n | median ms | min ms | max ms |\n|---|---:|---:|---:|---:|"
    );
    for ((name, _), s) in cases.iter().zip(&samples) {
        let min = s.iter().copied().fold(f64::INFINITY, f64::min);
        let max = s.iter().copied().fold(0.0, f64::max);
        println!(
            "| {name} | {} | {:.1} | {min:.1} | {max:.1} |",
            s.len(),
            median(s.clone())
        );
    }
    let base = median(samples[0].clone());
    let list = median(samples[2].clone());
    println!(
        "\nruns list: {list:.1} ms, of which {base:.1} ms is starting chimera ({:.1} ms for the list itself)",
        list - base
    );
}
