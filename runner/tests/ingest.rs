//! The built-in ingest stage over the real fixture, through the real binary.

mod common;

use common::{fixtures, json, run_workflow, write};

fn ingest_workflow(dir: &std::path::Path, extensions: &str) -> std::path::PathBuf {
    write(
        dir,
        "ingest.yaml",
        &format!(
            "version: 1\nname: ingest-test\nagents:\n  - id: inventory\n    stages:\n      - id: ingest\n        plugin: ingest\n        read: [reports, csv_data]\n        with:\n          extensions: {extensions}\n"
        ),
    )
}

fn ingest(extensions: &str) -> (serde_json::Value, serde_json::Value) {
    let tmp = tempfile::tempdir().unwrap();
    let workflow = ingest_workflow(tmp.path(), extensions);
    let out = tmp.path().join("run");
    let (code, stdout, stderr) =
        run_workflow(&tmp.path().join("cache"), &workflow, &fixtures(), &out);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("inventory/ingest"),
        "timing table names the stage:\n{stdout}"
    );
    (
        json(&out.join("outputs/inventory/ingest.json")),
        json(&out.join("metrics.json")),
    )
}

fn count(output: &serde_json::Value, ext: &str) -> u64 {
    output["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == ext)
        .unwrap()["count"]
        .as_u64()
        .unwrap()
}

#[test]
fn counts_83_files_by_default_types_and_86_with_txt() {
    let (output, _) = ingest("[csv, json, md]");
    assert_eq!(output["total_files"], 83);
    assert_eq!(
        (
            count(&output, "csv"),
            count(&output, "json"),
            count(&output, "md")
        ),
        (24, 30, 29)
    );
    assert_eq!(
        output["roots"][1],
        serde_json::json!({"path": "csv_data", "found": false}),
        "a missing root is reported"
    );

    let (with_txt, _) = ingest("[csv, json, md, txt]");
    assert_eq!(with_txt["total_files"], 86);
    assert_eq!(count(&with_txt, "txt"), 3);
}

#[test]
fn summary_has_the_seed_reports_shape() {
    let (output, _) = ingest("[csv, json, md]");
    let summary = output["summary"].as_str().unwrap();
    insta::with_settings!({filters => vec![(r"Latest modified: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "Latest modified: [time] UTC")]}, {
        insta::assert_snapshot!(summary);
    });
}

#[test]
fn harvests_token_throughput_latency_and_ttft_metrics() {
    let (output, _) = ingest("[csv, json, md]");
    let metrics = output["metrics"].as_array().unwrap();
    assert!(metrics.len() > 5, "several metric fields: {metrics:?}");
    for m in metrics {
        let name = m["name"].as_str().unwrap().to_lowercase();
        assert!(
            ["tokens", "throughput", "latency", "ttft"]
                .iter()
                .any(|k| name.contains(k)),
            "{name}"
        );
        assert!(m["min"].as_f64().unwrap() <= m["mean"].as_f64().unwrap());
        assert!(m["mean"].as_f64().unwrap() <= m["max"].as_f64().unwrap());
    }
}

#[test]
fn metrics_json_records_every_timing() {
    let (_, metrics) = ingest("[csv, json, md]");
    assert_eq!(metrics["schema_version"], 1);
    assert_eq!(metrics["status"], "ok");
    let stage = &metrics["stages"][0];
    assert_eq!(stage["stage"], "ingest");
    assert_eq!(stage["load_kind"], "compiled", "a fresh cache compiles");
    for key in ["wall_ms", "load_ms", "instantiate_ms", "guest_ms"] {
        assert!(stage[key].as_f64().unwrap() > 0.0, "{key} recorded");
    }
    let parts = stage["load_ms"].as_f64().unwrap()
        + stage["instantiate_ms"].as_f64().unwrap()
        + stage["guest_ms"].as_f64().unwrap();
    assert!(
        parts <= stage["wall_ms"].as_f64().unwrap() + 0.01,
        "parts fit in the stage's wall time"
    );
    assert!(stage["wall_ms"].as_f64().unwrap() <= metrics["total_ms"].as_f64().unwrap());
}

#[test]
fn an_unparseable_file_is_reported_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    write(
        &input,
        "reports/good.json",
        r#"{"tokens_per_second": 12.5}"#,
    );
    write(&input, "reports/broken.json", "{not json");
    let workflow = ingest_workflow(tmp.path(), "[csv, json, md]");
    let out = tmp.path().join("run");
    let (code, _, stderr) = run_workflow(&tmp.path().join("cache"), &workflow, &input, &out);
    assert_eq!(code, 0, "{stderr}");
    let output = json(&out.join("outputs/inventory/ingest.json"));
    assert_eq!(output["total_files"], 2);
    assert_eq!(output["errors"][0]["path"], "reports/broken.json");
    assert!(
        output["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    assert_eq!(output["metrics"][0]["name"], "tokens_per_second");
    assert_eq!(output["metrics"][0]["mean"], 12.5);
}

#[test]
fn a_warm_cache_is_used_on_the_second_run() {
    let tmp = tempfile::tempdir().unwrap();
    let workflow = ingest_workflow(tmp.path(), "[csv]");
    let cache = tmp.path().join("cache");
    for expected in ["compiled", "cache"] {
        let out = tmp.path().join(format!("run-{expected}"));
        let (code, _, stderr) = run_workflow(&cache, &workflow, &fixtures(), &out);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            json(&out.join("metrics.json"))["stages"][0]["load_kind"],
            expected
        );
    }
}

#[test]
fn a_tampered_or_foreign_cache_file_is_recompiled_not_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let workflow = ingest_workflow(tmp.path(), "[csv]");
    let run_with = |cache: &std::path::Path, name: &str| {
        let out = tmp.path().join(name);
        let (code, _, stderr) = run_workflow(cache, &workflow, &fixtures(), &out);
        assert_eq!(code, 0, "{stderr}");
        json(&out.join("metrics.json"))["stages"][0]["load_kind"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let cache = tmp.path().join("cache");
    assert_eq!(run_with(&cache, "first"), "compiled");
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&entry, &bytes).unwrap();
    assert_eq!(
        run_with(&cache, "tampered"),
        "compiled",
        "a tampered entry is never loaded"
    );
    assert_eq!(
        run_with(&cache, "rewritten"),
        "cache",
        "the recompiled entry is sealed again"
    );

    // The same file name with a valid seal from another cache directory (another secret).
    let other = tmp.path().join("other-cache");
    assert_eq!(run_with(&other, "other"), "compiled");
    std::fs::copy(&entry, other.join(entry.file_name().unwrap())).unwrap();
    let foreign_ok = std::fs::read(other.join(entry.file_name().unwrap())).unwrap()
        == std::fs::read(&entry).unwrap();
    assert!(foreign_ok);
    assert_eq!(
        run_with(&other, "foreign"),
        "compiled",
        "a file sealed by another cache is not trusted"
    );
}

#[test]
fn large_and_nested_files_are_read_whole_and_symlinks_are_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    // 40,000 values: about 300 KB, several of the host's 64 KiB reads.
    let values: Vec<String> = (0..40_000).map(|i| format!("{}.5", i % 100)).collect();
    write(
        &input,
        "reports/big/run.json",
        &format!(r#"{{"tokens_per_second": [{}]}}"#, values.join(", ")),
    );
    write(&input, "reports/a.json", r#"{"ttft_ms": 100}"#);
    write(&input, "reports/a/b.json", r#"{"ttft_ms": 300}"#);
    write(&input, "reports/z.csv", "name,latency_ms\nx,2\ny,4\n");
    write(&input, "outside/secret.json", r#"{"ttft_ms": 9999}"#);
    std::os::unix::fs::symlink(
        input.join("outside/secret.json"),
        input.join("reports/link.json"),
    )
    .unwrap();
    std::os::unix::fs::symlink(input.join("outside"), input.join("reports/linked-dir")).unwrap();
    let workflow = ingest_workflow(tmp.path(), "[csv, json]");
    let out = tmp.path().join("run");
    let (code, _, stderr) = run_workflow(&tmp.path().join("cache"), &workflow, &input, &out);
    assert_eq!(code, 0, "{stderr}");
    let output = json(&out.join("outputs/inventory/ingest.json"));
    assert_eq!(output["errors"], serde_json::json!([]), "{output:#}");
    let paths: Vec<&str> = output["types"][1]["first_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["reports/a.json", "reports/a/b.json", "reports/big/run.json"],
        "nested files found, symlinks not followed"
    );
    assert_eq!(count(&output, "csv"), 1);
    let metric = |name: &str| {
        output["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no metric {name}: {output:#}"))
            .clone()
    };
    let big = metric("tokens_per_second");
    assert_eq!(big["count"], 40_000, "the whole 300 KB file was parsed");
    assert_eq!(big["max"], 99.5);
    let ttft = metric("ttft_ms");
    assert_eq!(ttft["count"], 2, "the symlinked secret is not read");
    assert_eq!(ttft["max"], 300.0);
    assert_eq!(metric("latency_ms")["mean"], 3.0);
}
