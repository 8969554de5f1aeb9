//! `report.html` in a real browser: Debian's headless Chromium opens it from
//! disk; any console message (a Content-Security-Policy violation is how a
//! blocked request or script shows) fails the test; the figures in the
//! rendered page match `metrics.json`; a screenshot is kept under
//! `target/test-artefacts/`.
//!
//! Without Chromium the test is skipped, unless `CHIMERA_REQUIRE_BROWSER`
//! is set (scripts/test installs it and sets it).

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use common::{chimera, json, root, run, test_plugin, write};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn browser() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|b| which(b));
    if found.is_none() && std::env::var_os("CHIMERA_REQUIRE_BROWSER").is_some() {
        panic!("no chromium on PATH, and CHIMERA_REQUIRE_BROWSER is set");
    }
    found
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Opens `page` headless; returns the DOM as the browser built it, after
/// failing on any console message.
fn open(browser: &Path, page: &Path, screenshot: &Path, profile: &Path) -> String {
    let url = format!("file://{}", page.display());
    let common = |cmd: &mut Command| {
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            // Nothing may leave the machine even if the page asked.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=1200,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    };
    let mut dump = Command::new(browser);
    common(&mut dump);
    let out = dump
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut shot = Command::new(browser);
    common(&mut shot);
    let shot_out = shot
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(&url)
        .output()
        .expect("run chromium");
    for stderr in [&out.stderr, &shot_out.stderr] {
        let log = String::from_utf8_lossy(stderr);
        let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
        assert!(
            console.is_empty(),
            "the page logged to the console (a blocked request or script):\n{}",
            console.join("\n")
        );
    }
    assert!(screenshot.is_file(), "no screenshot");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `flow` (a workflow on the fake server, no input files) into
/// `<dir>/<out>`; the record's directory.
fn run_workflow(dir: &Path, flow: &Path, out: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("input")).unwrap();
    let record = dir.join(out);
    let (code, stdout, stderr) = run(chimera(&dir.join("cache"))
        .arg("run")
        .arg(flow)
        .arg("--input")
        .arg(dir.join("input"))
        .arg("--out")
        .arg(&record)
        .arg("-q"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    record
}

/// The cells of the DOM with `data-metric="key"`, in order: (data-value, text).
fn cells(dom: &str, key: &str) -> Vec<(Option<String>, String)> {
    let needle = format!("data-metric=\"{key}\"");
    let mut found = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find(&needle) {
        let after = &rest[at + needle.len()..];
        let close = after.find('>').unwrap();
        let attrs = &after[..close];
        let value = attrs
            .split("data-value=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .map(str::to_owned);
        let body = &after[close + 1..];
        let text = body[..body.find('<').unwrap()].trim().to_owned();
        found.push((value, text));
        rest = body;
    }
    found
}

#[test]
fn the_run_page_opens_offline_in_a_browser_and_shows_the_records_figures() {
    let Some(browser) = browser() else {
        eprintln!("skipped: no chromium on PATH");
        return;
    };
    let server = FakeOllama::start(FakeConfig::default());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (code, stdout, stderr) = run(chimera(&tmp.path().join("cache"))
        .arg("run")
        .arg(root().join("workflows/chimera-agent-a.yaml"))
        .arg("--input")
        .arg(root().join("sample-data"))
        .arg("--out")
        .arg(&out)
        .args(["--set", &format!("model.host={}", server.url()), "-q"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let page = out.join("report.html");
    assert!(page.is_file(), "report.html beside report.md");

    let artefacts = root().join("target/test-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("report-html-run.png");
    let dom = open(&browser, &page, &shot, &tmp.path().join("profile"));

    let metrics = json(&out.join("metrics.json"));
    let calls = metrics["calls"].as_array().unwrap();
    assert!(!calls.is_empty());
    for key in [
        "ttft_ms",
        "tokens_per_second",
        "prompt_eval_count",
        "eval_count",
    ] {
        let shown = cells(&dom, key);
        assert_eq!(shown.len(), calls.len(), "one `{key}` cell per call");
        for (call, (value, text)) in calls.iter().zip(&shown) {
            match call[key].as_f64() {
                Some(v) => {
                    let shown: f64 = value.as_deref().unwrap().parse().unwrap();
                    assert_eq!(shown, v, "`{key}` as recorded");
                    let printed: f64 = text.split_whitespace().next().unwrap().parse().unwrap();
                    assert!((printed - v).abs() <= 0.05, "`{key}`: {text} for {v}");
                }
                None => assert_eq!(text, "n/a", "`{key}` the server did not give"),
            }
        }
    }
    let total = cells(&dom, "total_ms");
    assert_eq!(
        total[0].0.as_deref().map(|v| v.parse::<f64>().unwrap()),
        metrics["total_ms"].as_f64()
    );
    let walls = cells(&dom, "wall_ms");
    let stages = metrics["stages"].as_array().unwrap();
    assert_eq!(walls.len(), stages.len());
    for (stage, (value, _)) in stages.iter().zip(&walls) {
        assert_eq!(
            value.as_deref().unwrap().parse::<f64>().unwrap(),
            stage["wall_ms"].as_f64().unwrap()
        );
    }
    // The timeline names every stage, and the report is on the page.
    for stage in stages {
        let label = format!(
            "{}/{}",
            stage["agent"].as_str().unwrap(),
            stage["stage"].as_str().unwrap()
        );
        assert!(dom.contains(&label), "{label} on the timeline");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let first_line = report.lines().find(|l| !l.trim().is_empty()).unwrap();
    assert!(
        dom.contains(first_line.trim()),
        "the report's text is shown"
    );
    let _: &Value = &metrics["provenance"];
    assert!(dom.contains("<details>"), "provenance, collapsed");
}

#[test]
fn the_sweep_page_shows_the_ranking_and_its_charts_offline() {
    let Some(browser) = browser() else {
        eprintln!("skipped: no chromium on PATH");
        return;
    };
    let server = FakeOllama::start(FakeConfig::default());
    let tmp = tempfile::tempdir().unwrap();
    let flow = write(
        tmp.path(),
        "sweep.yaml",
        &format!(
            "version: 1
name: sweep
model: {{backend: ollama, name: \"gemma3:latest\", host: \"{}\"}}
runs: 2
objective: max tokens_per_second p50
matrix:
  model.options.temperature: [0.6, 0.8]
  model.options.num_ctx: [256, 512]
agents:
  - id: agent
    stages:
      - id: asks
        plugin: {}
        with: {{mode: llm}}
",
            server.url(),
            test_plugin("hostile.wasm").display()
        ),
    );
    let out = run_workflow(tmp.path(), &flow, "sweep");
    let artefacts = root().join("target/test-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let dom = open(
        &browser,
        &out.join("summary.html"),
        &artefacts.join("report-html-sweep.png"),
        &tmp.path().join("profile"),
    );
    let summary = json(&out.join("summary.json"));
    let cells_json = summary["cells"].as_array().unwrap();
    assert_eq!(cells_json.len(), 4);
    let shown = cells(&dom, "objective");
    assert_eq!(shown.len(), 4, "one row per cell");
    for (cell, (value, _)) in cells_json.iter().zip(&shown) {
        let v = value.as_deref().map(|v| v.parse::<f64>().unwrap());
        assert_eq!(v, cell["objective"].as_f64(), "cell {}", cell["key"]);
        assert!(dom.contains(&format!("data-cell=\"{}\"", cell["key"].as_str().unwrap())));
    }
    for (metric, key) in [
        ("tokens_per_second", "tokens_per_second"),
        ("ttft_ms", "ttft_ms"),
    ] {
        for (cell, (value, _)) in cells_json.iter().zip(cells(&dom, key)) {
            let v = value.as_deref().map(|v| v.parse::<f64>().unwrap());
            assert_eq!(v, cell["metrics"][metric]["p50"].as_f64());
        }
    }
    let best = cells_json.iter().find(|c| c["mark"] == "best").unwrap();
    assert!(
        dom.contains(&format!("Best: <b>{}</b>", best["key"].as_str().unwrap())),
        "the best cell is named"
    );
    assert!(
        dom.contains("over model.options.temperature × model.options.num_ctx"),
        "a heat-map over the two axes"
    );
    assert_eq!(
        dom.matches("<svg").count(),
        2,
        "the heat-map and the tok/s-TTFT chart"
    );
}

#[test]
fn the_comparison_page_shows_each_metrics_verdict_and_interval_offline() {
    let Some(browser) = browser() else {
        eprintln!("skipped: no chromium on PATH");
        return;
    };
    let server = FakeOllama::start(FakeConfig::default());
    let tmp = tempfile::tempdir().unwrap();
    let flow = write(
        tmp.path(),
        "compare.yaml",
        &format!(
            "version: 1
name: compare
model: {{backend: ollama, name: \"gemma3:latest\", host: \"{}\"}}
runs: 3
compare:
  baseline: {{label: a}}
  candidate: {{label: b, set: {{model.options.temperature: 0.2}}}}
agents:
  - id: agent
    stages:
      - id: asks
        plugin: {}
        with: {{mode: llm}}
",
            server.url(),
            test_plugin("hostile.wasm").display()
        ),
    );
    let out = run_workflow(tmp.path(), &flow, "cmp");
    let artefacts = root().join("target/test-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let dom = open(
        &browser,
        &out.join("comparison.html"),
        &artefacts.join("report-html-comparison.png"),
        &tmp.path().join("profile"),
    );
    let comparison = json(&out.join("comparison.json"));
    let metrics = comparison["metrics"].as_array().unwrap();
    assert!(!metrics.is_empty());
    for (key, path) in [("baseline_p50", "baseline"), ("candidate_p50", "candidate")] {
        let shown = cells(&dom, key);
        assert_eq!(shown.len(), metrics.len(), "one row per metric");
        for (m, (value, _)) in metrics.iter().zip(&shown) {
            let v = value.as_deref().map(|v| v.parse::<f64>().unwrap());
            assert_eq!(v, m[path]["p50"].as_f64(), "{key} of {}", m["metric"]);
        }
    }
    for (m, (value, _)) in metrics.iter().zip(cells(&dom, "p_value")) {
        assert_eq!(
            value.map(|v| v.parse::<f64>().unwrap()),
            m["p_value"].as_f64()
        );
        let verdict = m["verdict"].as_str().unwrap().replace('_', " ");
        assert!(dom.contains(&format!(">{verdict}</td>")), "{verdict}");
    }
    assert_eq!(dom.matches("<svg").count(), 1, "the forest chart");

    // The same workflow without `compare:`: repeats, and their page.
    let text = std::fs::read_to_string(&flow).unwrap();
    let cut = text.find("compare:").unwrap();
    let agents = text.find("agents:").unwrap();
    let repeats = write(
        tmp.path(),
        "repeats.yaml",
        &format!("{}{}", &text[..cut], &text[agents..]),
    );
    let out = run_workflow(tmp.path(), &repeats, "rep");
    let dom = open(
        &browser,
        &out.join("summary.html"),
        &artefacts.join("report-html-repeats.png"),
        &tmp.path().join("profile"),
    );
    let summary = json(&out.join("summary.json"));
    let metrics = summary["metrics"].as_object().unwrap();
    let medians = cells(&dom, "p50");
    assert_eq!(medians.len(), metrics.len(), "one row per metric");
    for ((name, m), (value, _)) in metrics.iter().zip(&medians) {
        let v = value.as_deref().map(|v| v.parse::<f64>().unwrap());
        assert_eq!(v, m["p50"].as_f64(), "p50 of {name}");
    }
    assert!(
        dom.contains("3 measured runs"),
        "the page says how many runs"
    );
}
