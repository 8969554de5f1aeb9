//! Sweeps against a fake Ollama whose speed answers to each request's
//! options: the time to first token grows with `num_ctx` and
//! `temperature`, the time per token with `num_predict`, with no jitter, so
//! every cell's figures can be computed by hand from the configured delays.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama, Latency, Refusal};
use common::{chimera, json, run, test_plugin, write};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TOKENS: usize = 4;

fn latency() -> Latency {
    Latency {
        ttft: Duration::from_millis(20),
        ttft_per_kctx: Duration::from_millis(10),
        ttft_per_temperature: Duration::from_millis(50),
        per_token: Duration::from_millis(2),
        per_token_per_100_predict: Duration::from_millis(2),
        jitter: 0.0,
        seed: 1,
        cold_load: Duration::ZERO,
    }
}

fn server(refusal: Refusal) -> FakeOllama {
    FakeOllama::start(
        FakeConfig::token_count(TOKENS)
            .latency(latency())
            .refusing(refusal),
    )
}

/// What the fake makes of a cell: (time to first token in ms, tokens/s).
/// Tokens/s comes from the server's own `eval_count / eval_duration`; the
/// time to first token is measured by chimera, so it is the delay plus
/// the request's own overhead.
fn by_hand(num_ctx: f64, num_predict: f64, temperature: f64) -> (f64, f64) {
    let ttft = 20.0 + 10.0 * num_ctx / 1024.0 + 50.0 * temperature + 1.0;
    let per_token = 2.0 + 2.0 * num_predict / 100.0;
    (ttft, 1000.0 / per_token)
}

/// Two stages that each call the model once: six call samples a cell.
fn workflow(dir: &Path, host: &str, matrix: &str, extra: &str) -> PathBuf {
    let plugin = test_plugin("hostile.wasm");
    write(
        dir,
        "sweep.yaml",
        &format!(
            "version: 1
name: sweep
model: {{backend: ollama, name: \"gemma3:latest\", host: \"{host}\"}}
runs: 3
objective: min ttft_ms p50
matrix:
{matrix}
agents:
  - id: agent
    stages:
      - id: first
        plugin: {plugin}
        with: {{mode: llm}}
      - id: second
        plugin: {plugin}
        with: {{mode: llm}}
{extra}",
            plugin = plugin.display()
        ),
    )
}

const GRID: &str = "  model.options.num_ctx: [1024, 4096]
  model.options.num_predict: [100, 300]
  model.options.temperature: [0.2, 0.8]";

fn sweep(dir: &Path, flow: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    std::fs::create_dir_all(dir.join("input")).unwrap();
    run(chimera(&dir.join("cache"))
        .arg("run")
        .arg(flow)
        .arg("--input")
        .arg(dir.join("input"))
        .arg("--out")
        .arg(out)
        .arg("-q")
        .args(extra))
}

fn cells(summary: &Value) -> &Vec<Value> {
    summary["cells"].as_array().expect("cells")
}

fn option(cell: &Value, name: &str) -> f64 {
    cell["values"][format!("model.options.{name}")]
        .as_f64()
        .unwrap_or_else(|| panic!("no {name} in {cell}"))
}

/// The `q` quantile of samples, interpolated linearly between the two
/// nearest ranks (type 7, as the summaries document), written out here
/// rather than called from chimera.
fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - h.floor()) * (v[hi] - v[lo])
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// Checks a summarised metric against its raw samples: n, mean, p50, p95.
fn assert_summarises(summary: &Value, raw: &[f64], what: &str) {
    let mean = raw.iter().sum::<f64>() / raw.len() as f64;
    assert_eq!(summary["n"].as_u64(), Some(raw.len() as u64), "{what}");
    for (field, want) in [
        ("mean", mean),
        ("p50", quantile(raw.to_vec(), 0.5)),
        ("p95", quantile(raw.to_vec(), 0.95)),
    ] {
        let got = summary[field].as_f64().unwrap();
        assert!(
            close(got, want),
            "{what} {field}: {got}, from raw samples {want}"
        );
    }
}

/// Every warm call's figure `field` in a cell's measured runs, read from
/// the raw run records.
fn raw_samples(sweep_dir: &Path, key: &str, field: &str) -> Vec<f64> {
    let cell = sweep_dir.join("cells").join(key);
    let record = json(&cell.join("cell.json"));
    let mut out = Vec::new();
    for run in record["runs"].as_array().unwrap() {
        if run["kind"] != "run" || run["status"] != "ok" {
            continue;
        }
        let metrics = json(&cell.join(run["dir"].as_str().unwrap()).join("metrics.json"));
        for call in metrics["calls"].as_array().unwrap() {
            if call["cold"] != true {
                out.push(call[field].as_f64().unwrap());
            }
        }
    }
    out
}

#[test]
fn three_shards_merged_rank_the_cells_the_fake_makes_fastest_from_raw_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = server(Refusal::default());
    let flow = workflow(tmp.path(), &fake.url(), GRID, "");
    let shards: Vec<PathBuf> = (1..=3)
        .map(|k| tmp.path().join(format!("shard-{k}")))
        .collect();
    for (k, dir) in shards.iter().enumerate() {
        let (code, _, err) = sweep(
            tmp.path(),
            &flow,
            dir,
            &["--shard", &format!("{}/3", k + 1)],
        );
        assert_eq!(code, 0, "shard {}: {err}", k + 1);
    }
    // The shards split the plan: together every cell once.
    let mut ran: Vec<String> = shards
        .iter()
        .flat_map(|d| {
            json(&d.join("sweep.json"))["assigned"]
                .as_array()
                .unwrap()
                .clone()
        })
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    ran.sort();
    let (code, plan, err) = run(chimera(&tmp.path().join("cache"))
        .args(["sweep", "plan", "--json"])
        .arg(&flow));
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&plan).unwrap();
    let mut planned: Vec<String> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_owned())
        .collect();
    planned.sort();
    assert_eq!(ran, planned);
    assert_eq!(planned.len(), 8);

    let merged = tmp.path().join("merged");
    let (code, out, err) = run(chimera(&tmp.path().join("cache"))
        .arg("merge")
        .args(&shards)
        .arg("--out")
        .arg(&merged));
    assert_eq!(code, 0, "{out}{err}");
    let summary = json(&merged.join("summary.json"));
    assert_eq!(cells(&summary).len(), 8);
    assert!(summary["missing"].as_array().unwrap().is_empty());
    for cell in cells(&summary) {
        let key = cell["key"].as_str().unwrap();
        let (ttft, tok_s) = by_hand(
            option(cell, "num_ctx"),
            option(cell, "num_predict"),
            option(cell, "temperature"),
        );
        // Every statistic recomputed from the raw samples in the shard that
        // ran the cell (not from the merge's copies, not from summaries).
        let shard = shards
            .iter()
            .find(|d| d.join("cells").join(key).join("cell.json").is_file())
            .unwrap_or_else(|| panic!("no shard ran {key}"));
        let raw_ttft = raw_samples(shard, key, "ttft_ms");
        assert_eq!(raw_ttft.len(), 6, "{key}: 3 runs × 2 calls");
        assert_summarises(&cell["metrics"]["ttft_ms"], &raw_ttft, key);
        let raw_tok_s = raw_samples(shard, key, "tokens_per_second");
        assert_summarises(&cell["metrics"]["tokens_per_second"], &raw_tok_s, key);
        let p50 = cell["objective"].as_f64().unwrap();
        assert!(close(p50, quantile(raw_ttft, 0.5)), "{key}");
        // And by hand from the configured delays: the server's tokens/s
        // exactly, the measured TTFT within the request's overhead.
        let measured_tok_s = cell["metrics"]["tokens_per_second"]["p50"]
            .as_f64()
            .unwrap();
        assert!(
            (measured_tok_s - tok_s).abs() / tok_s < 0.01,
            "{key}: {measured_tok_s} tok/s, by hand {tok_s}"
        );
        // A request's own overhead is a few ms, more on a machine busy
        // compiling; the ranking below tells the levels apart.
        assert!(
            p50 >= ttft - 1.0 && p50 <= ttft * 1.3 + 10.0,
            "{key}: TTFT p50 {p50} ms, by hand {ttft} ms"
        );
    }
    // Fastest first token: num_ctx 1024 at temperature 0.2 (num_predict
    // does not change it), so those two cells rank first and second; every
    // other cell is at least 30 ms slower, which six samples against six
    // detect. The two fastest are the same configuration of the fake, so the
    // second is a tie — except in the 5 % of runs (α) where the test of
    // equal samples says otherwise, more often on a loaded machine: then it
    // is still second, marked `worse` by a small margin.
    let row = |c: &serde_json::Value| {
        (
            option(c, "num_ctx") as u64,
            option(c, "num_predict") as u64,
            (option(c, "temperature") * 10.0) as u64,
        )
    };
    let marks: BTreeMap<(u64, u64, u64), String> = cells(&summary)
        .iter()
        .map(|c| (row(c), c["mark"].as_str().unwrap().to_owned()))
        .collect();
    let ranked = cells(&summary);
    let top: Vec<(u64, u64, u64)> = ranked[..2].iter().map(row).collect();
    assert!(
        top.contains(&(1024, 100, 2)) && top.contains(&(1024, 300, 2)),
        "{marks:?}"
    );
    assert_eq!(ranked[0]["mark"], "best");
    assert_eq!(ranked[0]["rank"], 1);
    assert_eq!(ranked[1]["rank"], 2);
    let second = ranked[1]["mark"].as_str().unwrap();
    assert!(second == "tie" || second == "worse", "{marks:?}");
    let others_worse = ranked[2..].iter().all(|c| c["mark"] == "worse");
    assert!(others_worse, "{marks:?}");
    let md = std::fs::read_to_string(merged.join("summary.md")).unwrap();
    assert!(md.contains("**best**"), "{md}");
    if second == "tie" {
        assert!(md.contains("| tie |"), "{md}");
    }
    let csv = std::fs::read_to_string(merged.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9, "{csv}");
    assert!(
        csv.starts_with("rank,key,status,mark,model.options.num_ctx,"),
        "{csv}"
    );

    // The whole sweep run again in one process, merged with the shards:
    // every cell is in two places, each merged once (the first listed kept),
    // the statistics those of the shards' samples, each duplicate noted.
    let whole = tmp.path().join("whole");
    let (code, _, err) = sweep(tmp.path(), &flow, &whole, &[]);
    assert_eq!(code, 0, "{err}");
    let with_whole = tmp.path().join("with-whole");
    let (code, _, err) = run(chimera(&tmp.path().join("cache"))
        .arg("merge")
        .args(&shards)
        .arg(&whole)
        .arg("--out")
        .arg(&with_whole));
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("; kept one").count(), 8, "{err}");
    let deduplicated = json(&with_whole.join("summary.json"));
    let metrics = |s: &Value| -> BTreeMap<String, Value> {
        cells(s)
            .iter()
            .map(|c| (c["key"].as_str().unwrap().to_owned(), c["metrics"].clone()))
            .collect()
    };
    assert_eq!(metrics(&deduplicated), metrics(&summary));

    // Merging again replaces the earlier merge; merging into a shard is refused.
    let (code, _, err) = run(chimera(&tmp.path().join("cache"))
        .arg("merge")
        .args(&shards)
        .arg("--out")
        .arg(&merged));
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&merged.join("summary.json")), summary);
    let (code, _, err) = run(chimera(&tmp.path().join("cache"))
        .arg("merge")
        .args(&shards)
        .arg("--out")
        .arg(&shards[0]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is one of the shards"), "{err}");

    // A shard of an edited workflow is refused, naming the files.
    let edited = tmp.path().join("edited");
    std::fs::create_dir_all(&edited).unwrap();
    let text = std::fs::read_to_string(&flow).unwrap();
    let edited_flow = write(&edited, "sweep.yaml", &format!("# edited\n{text}"));
    let edited_shard = tmp.path().join("shard-edited");
    let (code, _, err) = sweep(tmp.path(), &edited_flow, &edited_shard, &["--shard", "1/3"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(chimera(&tmp.path().join("cache"))
        .arg("merge")
        .arg(&edited_shard)
        .args(&shards[1..])
        .arg("--out")
        .arg(tmp.path().join("refused")));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot merge") && err.contains(&edited_flow.display().to_string()),
        "{err}"
    );
    // Two shards alone leave cells missing: listed, exit 1.
    let (code, _, err) = run(chimera(&tmp.path().join("cache"))
        .arg("merge")
        .args(&shards[..2])
        .arg("--out")
        .arg(tmp.path().join("partial")));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("have no finished record"), "{err}");
    let partial = json(&tmp.path().join("partial/summary.json"));
    assert_eq!(
        partial["missing"].as_array().unwrap().len(),
        json(&shards[2].join("sweep.json"))["assigned"]
            .as_array()
            .unwrap()
            .len()
    );
}

#[test]
fn a_second_run_keeps_finished_cells_and_runs_the_failed_one_again() {
    let tmp = tempfile::tempdir().unwrap();
    let refusal = Refusal::default();
    let fake = server(refusal.clone());
    let flow = workflow(
        tmp.path(),
        &fake.url(),
        "  model.options.num_ctx: [1024, 2048]",
        "",
    );
    let out = tmp.path().join("out");
    refusal.set("num_ctx", json!(2048));
    let (code, _, err) = sweep(tmp.path(), &flow, &out, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("1 cell had a failed run"), "{err}");
    let first = json(&out.join("summary.json"));
    let status = |s: &Value, ctx: f64| {
        cells(s)
            .iter()
            .find(|c| option(c, "num_ctx") == ctx)
            .map(|c| {
                (
                    c["status"].as_str().unwrap().to_owned(),
                    c["key"].as_str().unwrap().to_owned(),
                )
            })
            .unwrap()
    };
    let (ok_status, ok_key) = status(&first, 1024.0);
    let (failed_status, failed_key) = status(&first, 2048.0);
    assert_eq!(
        (ok_status.as_str(), failed_status.as_str()),
        ("ok", "failed")
    );
    let kept = std::fs::read(out.join("cells").join(&ok_key).join("run-1/metrics.json")).unwrap();
    let chats_before = chats(&fake);

    refusal.clear();
    let (code, _, err) = sweep(tmp.path(), &flow, &out, &[]);
    assert_eq!(code, 0, "{err}");
    // Only the failed cell ran: 3 runs × 2 calls.
    assert_eq!(chats(&fake) - chats_before, 6);
    assert_eq!(
        std::fs::read(out.join("cells").join(&ok_key).join("run-1/metrics.json")).unwrap(),
        kept,
        "the finished cell's record is untouched"
    );
    let second = json(&out.join("summary.json"));
    assert_eq!(status(&second, 2048.0), ("ok".to_owned(), failed_key));
    assert_eq!(status(&second, 1024.0).0, "ok");

    // An option outside the matrix changes every cell's provenance, so
    // every cell runs again.
    let (code, _, err) = sweep(
        tmp.path(),
        &flow,
        &out,
        &["--set", "model.options.top_k=20"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(chats(&fake) - chats_before, 18);
    // So does asking for more runs than the cells have.
    let (code, _, err) = sweep(
        tmp.path(),
        &flow,
        &out,
        &["--set", "model.options.top_k=20", "--runs", "4"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(chats(&fake) - chats_before, 18 + 16);
}

fn chats(fake: &FakeOllama) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path == "/api/chat")
        .count()
}

#[test]
fn include_and_exclude_give_the_planned_cells_and_a_bad_axis_is_located() {
    let tmp = tempfile::tempdir().unwrap();
    let flow = workflow(
        tmp.path(),
        "http://127.0.0.1:9",
        "  model.options.num_ctx: [1024, 2048]
  model.options.temperature: [0.2, 0.8]
  exclude:
    - {model.options.num_ctx: 2048, model.options.temperature: 0.8}
  include:
    - {model.options.temperature: 0.2, model.options.top_k: 20}
    - {model.options.num_ctx: 8192}",
        "",
    );
    let (code, out, err) = run(chimera(&tmp.path().join("cache"))
        .args(["sweep", "plan", "--json"])
        .arg(&flow));
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let sets: Vec<Vec<String>> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["set"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    s.as_str()
                        .unwrap()
                        .trim_start_matches("model.options.")
                        .to_owned()
                })
                .collect()
        })
        .collect();
    assert_eq!(
        sets,
        [
            vec!["num_ctx=1024", "temperature=0.2", "top_k=20"],
            vec!["num_ctx=1024", "temperature=0.8"],
            vec!["num_ctx=2048", "temperature=0.2", "top_k=20"],
            vec!["num_ctx=8192"],
        ]
    );

    let bad = workflow(
        tmp.path(),
        "http://127.0.0.1:9",
        "  model.options.num_ctx: [1024, -1]\n  nobody/first:model.options.top_k: [1]\n  model.options.temprature: [0.2]",
        "",
    );
    let (code, _, err) = run(chimera(&tmp.path().join("cache")).arg("validate").arg(&bad));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sweep.yaml:7:"), "{err}");
    assert!(err.contains("did you mean `temperature`"), "{err}");
    assert!(err.contains("the workflow has no agent `nobody`"), "{err}");

    // Every cell is checked whole: a persona axis naming a missing template.
    write(tmp.path(), "templates/personas/a.md.j2", "You are terse.");
    let personas = workflow(
        tmp.path(),
        "http://127.0.0.1:9",
        "  persona: [personas/a.md.j2, personas/missing.md.j2]",
        "",
    );
    let (code, out, err) = run(chimera(&tmp.path().join("cache"))
        .arg("validate")
        .arg(&personas));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("personas/missing.md.j2") && err.contains("sweep.yaml:7:3"),
        "{err}"
    );
    assert!(err.contains("in cell `"), "{err}");
    write(
        tmp.path(),
        "templates/personas/missing.md.j2",
        "You are verbose.",
    );
    let (code, out, err) = run(chimera(&tmp.path().join("cache"))
        .arg("validate")
        .arg(&personas));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 cells"), "{out}");
}

#[test]
fn ctrl_c_keeps_every_finished_cell_and_the_next_run_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeOllama::start(FakeConfig::token_count(TOKENS).latency(Latency {
        ttft: Duration::from_millis(300),
        ..latency()
    }));
    let flow = workflow(
        tmp.path(),
        &fake.url(),
        "  model.options.num_ctx: [1024, 2048, 4096, 8192]",
        "",
    );
    let out = tmp.path().join("out");
    std::fs::create_dir_all(tmp.path().join("input")).unwrap();
    let child = chimera(&tmp.path().join("cache"))
        .arg("run")
        .arg(&flow)
        .arg("--input")
        .arg(tmp.path().join("input"))
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let finished = |out: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(out.join("cells"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.join("cell.json").is_file())
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while finished(&out).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no cell finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("finished cells are kept"), "{stderr}");
    let kept = finished(&out);
    let summary = json(&out.join("summary.json"));
    let ok: Vec<&Value> = cells(&summary)
        .iter()
        .filter(|c| c["status"] == "ok")
        .collect();
    assert!(!ok.is_empty(), "{summary:#}");
    assert!(
        !summary["missing"].as_array().unwrap().is_empty(),
        "{summary:#}"
    );
    let first = kept
        .iter()
        .find(|d| json(&d.join("cell.json"))["status"] == "ok")
        .expect("a finished cell");
    let before = std::fs::read(first.join("run-1/metrics.json")).unwrap();

    let (code, _, err) = run(chimera(&tmp.path().join("cache"))
        .arg("run")
        .arg("--resume")
        .arg(&out));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("a sweep continues by running it again"),
        "{err}"
    );
    let (code, _, err) = sweep(tmp.path(), &flow, &out, &[]);
    assert_eq!(code, 0, "{err}");
    let summary = json(&out.join("summary.json"));
    assert_eq!(cells(&summary).len(), 4);
    assert!(cells(&summary).iter().all(|c| c["status"] == "ok"));
    assert_eq!(
        std::fs::read(first.join("run-1/metrics.json")).unwrap(),
        before
    );
}

#[test]
fn each_shard_calls_its_own_model_host() {
    let tmp = tempfile::tempdir().unwrap();
    let hosts = [server(Refusal::default()), server(Refusal::default())];
    let flow = workflow(
        tmp.path(),
        "http://127.0.0.1:9",
        "  model.options.num_ctx: [1024, 2048, 4096, 8192]",
        "",
    );
    for k in 1..=2 {
        let (code, _, err) = sweep(
            tmp.path(),
            &flow,
            &tmp.path().join(format!("shard-{k}")),
            &[
                "--shard",
                &format!("{k}/2"),
                "--shard-host",
                &hosts[0].url(),
                "--shard-host",
                &hosts[1].url(),
            ],
        );
        assert_eq!(code, 0, "{err}");
        // Shard k's 2 cells × 3 runs × 2 calls went to host k alone.
        assert_eq!(chats(&hosts[k - 1]), 12, "shard {k}");
        assert_eq!(chats(&hosts[2 - k]), if k == 1 { 0 } else { 12 });
        let manifest = json(&tmp.path().join(format!("shard-{k}/sweep.json")));
        for key in manifest["assigned"].as_array().unwrap() {
            let cell = json(&tmp.path().join(format!(
                "shard-{k}/cells/{}/cell.json",
                key.as_str().unwrap()
            )));
            assert_eq!(
                cell["fingerprint"]["models"][0]["host"],
                hosts[k - 1].url(),
                "the record says which host"
            );
        }
    }
}

#[test]
fn interleaved_cells_run_round_after_round() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = server(Refusal::default());
    let flow = workflow(
        tmp.path(),
        &fake.url(),
        "  model.options.num_ctx: [1024, 2048]\n  order: interleave",
        "warmup: 1\n",
    );
    let out = tmp.path().join("out");
    let (code, _, err) = sweep(tmp.path(), &flow, &out, &[]);
    assert_eq!(code, 0, "{err}");
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["order"], "interleave");
    // Every run's start, in the order they ran.
    let mut starts: Vec<(String, String)> = Vec::new();
    for cell in cells(&summary) {
        assert_eq!(cell["status"], "ok");
        assert_eq!(cell["runs"], 3);
        let dir = out.join(cell["dir"].as_str().unwrap());
        for run in json(&dir.join("cell.json"))["runs"].as_array().unwrap() {
            let metrics = json(&dir.join(run["dir"].as_str().unwrap()).join("metrics.json"));
            starts.push((
                metrics["started_at"].as_str().unwrap().to_owned(),
                format!(
                    "{} {}",
                    cell["key"].as_str().unwrap(),
                    run["dir"].as_str().unwrap()
                ),
            ));
        }
    }
    starts.sort();
    let kinds: Vec<String> = starts
        .iter()
        .map(|(_, what)| what.split(' ').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "warmup-1", "warmup-1", "run-1", "run-1", "run-2", "run-2", "run-3", "run-3"
        ],
        "{starts:?}"
    );
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("round after round"), "{md}");

    // Run again with the server gone: every cell finished with the same
    // provenance (a model identity the server cannot give now is no
    // difference), so nothing runs, nothing is lost, nothing fails.
    drop(fake);
    let (code, _, err) = sweep(tmp.path(), &flow, &out, &[]);
    assert_eq!(code, 0, "{err}");
    let again = json(&out.join("summary.json"));
    assert_eq!(cells(&again).len(), 2);
    assert!(
        cells(&again)
            .iter()
            .all(|c| c["status"] == "ok" && c["runs"] == 3)
    );
}

/// Axes over the persona and the model name run: each cell's calls carry
/// its own persona (as the system message) and its own model.
#[test]
fn persona_and_model_name_axes_reach_each_cells_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeOllama::start(FakeConfig::token_count(4));
    let flow = write(
        tmp.path(),
        "axes.yaml",
        &format!(
            "version: 1
name: axes
model: {{backend: ollama, name: \"gemma3:latest\", host: \"{}\"}}
objective: min ttft_ms p50
matrix:
  persona: [personas/data-collector-9000.md.j2, personas/insight-analyst.md.j2]
  model.name: [\"gemma3:latest\", \"llama3.2:3b\"]
agents:
  - id: agent
    persona: personas/data-collector-9000.md.j2
    stages:
      - id: ingest
        plugin: ingest
        read: [reports]
      - id: analyze
        plugin: analyze
        prompt: prompts/analyze.md.j2
",
            fake.url()
        ),
    );
    let out = tmp.path().join("out");
    let (code, _, err) = sweep(tmp.path(), &flow, &out, &["--runs", "1", "--warmup", "0"]);
    assert_eq!(code, 0, "{err}");
    let summary = json(&out.join("summary.json"));
    let mut ran: Vec<(String, String)> = cells(&summary)
        .iter()
        .map(|c| {
            assert_eq!(c["status"], "ok", "{c:#}");
            (
                c["values"]["model.name"].as_str().unwrap().to_owned(),
                c["values"]["persona"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    ran.sort();
    assert_eq!(ran.len(), 4, "{summary:#}");
    let mut called: Vec<(String, String)> = fake
        .requests()
        .iter()
        .filter(|r| r.path == "/api/chat")
        .map(|r| {
            let system = r.body["messages"][0]["content"]
                .as_str()
                .unwrap_or_default();
            let persona = if system.starts_with("You are DataCollector-9000") {
                "personas/data-collector-9000.md.j2"
            } else if system.starts_with("You are InsightAnalyst") {
                "personas/insight-analyst.md.j2"
            } else {
                panic!("a system message from no persona of the axis: {system:?}")
            };
            (
                r.body["model"].as_str().unwrap().to_owned(),
                persona.to_owned(),
            )
        })
        .collect();
    called.sort();
    assert_eq!(
        called, ran,
        "one call per cell, with the cell's model and persona"
    );
}
