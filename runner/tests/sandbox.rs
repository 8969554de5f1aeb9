//! A stage sees only what its workflow grants: reads outside the grant fail,
//! through `..`, absolute paths or symlinks. Uses the external `fs-probe`
//! test plugin, loaded by path and by name.

mod common;

use common::{chimera, json as read_json, run, run_workflow, test_plugin, write};
use serde_json::{Value, json};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("input");
        write(&input, "reports/granted.txt", "granted bytes");
        write(&input, "not-granted.txt", "input root, not granted");
        write(tmp.path(), "outside/secret.txt", "outside secret");
        symlink(
            tmp.path().join("outside/secret.txt"),
            input.join("reports/escape.txt"),
        )
        .unwrap();
        symlink(tmp.path().join("outside"), input.join("reports/escape-dir")).unwrap();
        symlink(tmp.path().join("outside"), input.join("linked")).unwrap();
        Self { tmp }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Runs fs-probe with `plugin:` = `plugin`, grant `grant`, reading `paths`.
    fn probe(&self, plugin: &str, grant: &str, paths: &[&str]) -> (i32, Value, String) {
        self.run_probe(
            plugin,
            &[&format!("read: [{grant}]")],
            json!({ "paths": paths }),
        )
    }

    /// Runs fs-probe (`plugin:` = `plugin`) with the stage lines `grants`
    /// (`read: [reports]`, `write: out`) and `with:` = `with`; returns the exit
    /// code, metrics.json and stderr.
    fn run_probe(&self, plugin: &str, grants: &[&str], with: Value) -> (i32, Value, String) {
        let grants: String = grants.iter().map(|g| format!("        {g}\n")).collect();
        let workflow = write(
            self.path(),
            "probe.yaml",
            &format!(
                "version: 1\nname: probe\nagents:\n  - id: prober\n    stages:\n      - id: probe\n        plugin: {plugin}\n{grants}        with: {with}\n"
            ),
        );
        let out = self.path().join("run");
        let _ = std::fs::remove_dir_all(&out);
        let (code, _, stderr) = run_workflow(
            &self.path().join("cache"),
            &workflow,
            &self.path().join("input"),
            &out,
        );
        (code, read_json(&out.join("metrics.json")), stderr)
    }

    /// Runs fs-probe with `read: [reports]`, `write: out` and `ops`; fails
    /// the test unless the stage succeeds. Returns each op's result.
    fn run_ops(&self, ops: Value) -> Vec<Value> {
        let plugin = test_plugin("fs_probe.wasm");
        let (code, _, stderr) = self.run_probe(
            plugin.to_str().unwrap(),
            &["read: [reports]", "write: out"],
            json!({ "ops": ops }),
        );
        assert_eq!(code, 0, "{stderr}");
        self.results()
    }

    /// The stage's writable directory on the host.
    fn written(&self) -> PathBuf {
        self.path().join("run/files/prober/probe")
    }

    fn results(&self) -> Vec<Value> {
        let output = read_json(&self.path().join("run/outputs/prober/probe.json"));
        output["results"].as_array().unwrap().clone()
    }
}

#[test]
fn reads_outside_the_grant_get_an_error_not_the_bytes() {
    let sandbox = Sandbox::new();
    let plugin = test_plugin("fs_probe.wasm");
    let outside = sandbox.path().join("outside/secret.txt");
    let probes = [
        "reports/granted.txt",
        "reports/../not-granted.txt",
        "../not-granted.txt",
        "not-granted.txt",
        "/etc/passwd",
        outside.to_str().unwrap(),
        "reports/escape.txt",
        "reports/escape-dir/secret.txt",
    ];
    let (code, _, stderr) = sandbox.probe(plugin.to_str().unwrap(), "reports", &probes);
    assert_eq!(code, 0, "{stderr}");
    let results = sandbox.results();
    assert_eq!(
        results[0]["ok"], true,
        "the granted file is readable: {:?}",
        results[0]
    );
    assert_eq!(results[0]["text"], "granted bytes");
    for r in &results[1..] {
        assert_eq!(r["ok"], false, "must be refused: {r}");
        assert!(r.get("text").is_none(), "no bytes leak: {r}");
    }
}

#[test]
fn a_grant_that_is_a_symlink_out_of_the_input_fails_the_stage() {
    let sandbox = Sandbox::new();
    let plugin = test_plugin("fs_probe.wasm");
    let (code, metrics, stderr) =
        sandbox.probe(plugin.to_str().unwrap(), "linked", &["linked/secret.txt"]);
    assert_eq!(code, 1, "{stderr}");
    let error = &metrics["stages"][0]["error"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("outside the input directory"),
        "{error}"
    );
    assert!(stderr.contains("stage `prober/probe` failed"), "{stderr}");
}

#[test]
fn an_external_plugin_loads_by_name_from_the_plugins_dir_beside_the_workflow() {
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.path().join("plugins")).unwrap();
    std::fs::copy(
        test_plugin("fs_probe.wasm"),
        sandbox.path().join("plugins/fs-probe.wasm"),
    )
    .unwrap();
    let (code, metrics, stderr) = sandbox.probe("fs-probe", "reports", &["reports/granted.txt"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        metrics["stages"][0]["plugin_origin"]
            .as_str()
            .unwrap()
            .ends_with("plugins/fs-probe.wasm")
    );
    assert_eq!(sandbox.results()[0]["text"], "granted bytes");
}

#[test]
fn chimera_plugins_lists_built_ins_and_plugins_on_the_search_path() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        test_plugin("fs_probe.wasm"),
        tmp.path().join("fs-probe.wasm"),
    )
    .unwrap();
    let (code, stdout, stderr) = run(chimera(&tmp.path().join("cache"))
        .env("CHIMERA_PLUGIN_PATH", tmp.path())
        .args(["plugins", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"fs-probe") && names.contains(&"ingest"),
        "{names:?}"
    );
    let ingest = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ingest")
        .unwrap();
    assert_eq!(ingest["origin"], "built-in");
    assert!(
        ingest["config_schema"]["properties"]["extensions"].is_object(),
        "describe() carries the config schema"
    );
}

#[test]
fn a_stage_without_a_grant_sees_no_directories_at_all() {
    let sandbox = Sandbox::new();
    let plugin = test_plugin("fs_probe.wasm");
    let (code, _, stderr) = sandbox.run_probe(
        plugin.to_str().unwrap(),
        &[],
        json!({ "paths": ["reports/granted.txt", ".", "/"] }),
    );
    assert_eq!(code, 0, "{stderr}");
    let output = read_json(&sandbox.path().join("run/outputs/prober/probe.json"));
    assert_eq!(output["read_dirs"], json!([]));
    assert_eq!(output["write_dir"], Value::Null);
    for r in output["results"].as_array().unwrap() {
        assert_eq!(r["ok"], false, "nothing is readable without a grant: {r}");
    }
}

#[test]
fn what_a_stage_writes_in_its_write_grant_is_kept_in_the_run_record() {
    let sandbox = Sandbox::new();
    let results = sandbox.run_ops(json!([
        {"op": "write", "path": "out/summary.txt", "text": "five bytes"},
        {"op": "mkdir", "path": "out/charts"},
        {"op": "write", "path": "out/charts/tps.csv", "text": "a,b\n"},
        {"op": "read", "path": "out/summary.txt"},
    ]));
    for r in &results {
        assert_eq!(r["ok"], true, "inside the write grant: {r}");
    }
    assert_eq!(results[3]["text"], "five bytes");
    assert_eq!(
        std::fs::read_to_string(sandbox.written().join("charts/tps.csv")).unwrap(),
        "a,b\n"
    );
    let metrics = read_json(&sandbox.path().join("run/metrics.json"));
    assert_eq!(
        metrics["stages"][0]["files"],
        json!([
            {"path": "files/prober/probe/charts/tps.csv", "bytes": 4},
            {"path": "files/prober/probe/summary.txt", "bytes": 10},
        ])
    );
    let output = read_json(&sandbox.path().join("run/outputs/prober/probe.json"));
    assert_eq!(output["write_dir"], "out");
}

/// Every file under the input and outside directories, with its contents
/// (lossy text, so a failure reads well).
fn snapshot_outside(sandbox: &Sandbox) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut pending = vec![sandbox.path().join("input"), sandbox.path().join("outside")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
                files.push((path, text));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn writes_outside_the_write_grant_are_refused() {
    let sandbox = Sandbox::new();
    let before = snapshot_outside(&sandbox);
    let results = sandbox.run_ops(json!([
        {"op": "write", "path": "reports/granted.txt", "text": "overwritten"},
        {"op": "write", "path": "reports/new.txt", "text": "x"},
        {"op": "write", "path": "out/../escape.txt", "text": "x"},
        {"op": "write", "path": "out/../../../escape.txt", "text": "x"},
        {"op": "write", "path": sandbox.path().join("outside/new.txt"), "text": "x"},
        {"op": "write", "path": "new.txt", "text": "x"},
        {"op": "mkdir", "path": "out/../../made"},
    ]));
    for r in &results {
        assert_eq!(r["ok"], false, "must be refused: {r}");
    }
    assert_eq!(
        snapshot_outside(&sandbox),
        before,
        "nothing outside the grant changed"
    );
    assert!(!sandbox.path().join("run/files/prober/escape.txt").exists());
    assert!(!sandbox.path().join("run/files/made").exists());
}

#[test]
fn hard_links_across_the_write_grant_are_refused() {
    let sandbox = Sandbox::new();
    let granted = sandbox.path().join("input/reports/granted.txt");
    let results = sandbox.run_ops(json!([
        {"op": "write", "path": "out/mine.txt", "text": "mine"},
        // out of the writable grant: into the read-only one, or up with `..`
        {"op": "link", "from": "out/mine.txt", "to": "reports/mine.txt"},
        {"op": "link", "from": "out/mine.txt", "to": "out/../mine.txt"},
        // into it: a writable name for a read-only input file
        {"op": "link", "from": "reports/granted.txt", "to": "out/granted.txt"},
        {"op": "link", "from": "out/../../../input/reports/granted.txt", "to": "out/granted.txt"},
    ]));
    assert_eq!(results[0]["ok"], true, "{}", results[0]);
    for r in &results[1..] {
        assert_eq!(r["ok"], false, "must be refused: {r}");
    }
    assert!(!sandbox.path().join("input/reports/mine.txt").exists());
    assert!(!sandbox.path().join("run/files/prober/mine.txt").exists());
    assert!(!sandbox.written().join("granted.txt").exists());
    assert_eq!(
        std::fs::metadata(&granted).unwrap().nlink(),
        1,
        "no new name for the input"
    );
    assert_eq!(
        std::fs::metadata(sandbox.written().join("mine.txt"))
            .unwrap()
            .nlink(),
        1
    );
}

#[test]
fn renames_across_the_write_grant_are_refused() {
    let sandbox = Sandbox::new();
    let before = snapshot_outside(&sandbox);
    let results = sandbox.run_ops(json!([
        {"op": "write", "path": "out/mine.txt", "text": "mine"},
        {"op": "rename", "from": "out/mine.txt", "to": "reports/mine.txt"},
        {"op": "rename", "from": "out/mine.txt", "to": "out/../mine.txt"},
        {"op": "rename", "from": "reports/granted.txt", "to": "out/stolen.txt"},
        {"op": "rename", "from": "out/../../../input/reports/granted.txt", "to": "out/stolen.txt"},
        {"op": "rename", "from": "out/mine.txt", "to": "out/kept.txt"},
    ]));
    assert_eq!(results[0]["ok"], true, "{}", results[0]);
    for r in &results[1..5] {
        assert_eq!(r["ok"], false, "must be refused: {r}");
    }
    assert_eq!(
        results[5]["ok"], true,
        "a rename within the grant works: {}",
        results[5]
    );
    assert_eq!(
        snapshot_outside(&sandbox),
        before,
        "nothing outside the grant changed"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.written().join("kept.txt")).unwrap(),
        "mine"
    );
    assert!(!sandbox.written().join("stolen.txt").exists());
}

#[test]
fn symlinks_made_in_the_write_grant_cannot_lead_out() {
    let sandbox = Sandbox::new();
    let before = snapshot_outside(&sandbox);
    let outside = sandbox.path().join("outside");
    let results = sandbox.run_ops(json!([
        {"op": "symlink", "target": outside, "link": "out/abs"},
        {"op": "symlink", "target": "../../../../outside", "link": "out/up"},
        {"op": "read", "path": "out/abs/secret.txt"},
        {"op": "read", "path": "out/up/secret.txt"},
        {"op": "write", "path": "out/abs/planted.txt", "text": "x"},
        {"op": "write", "path": "out/up/planted.txt", "text": "x"},
        {"op": "write", "path": "out/up/secret.txt", "text": "overwritten"},
    ]));
    // Making a link may or may not be allowed; following one out never is.
    for r in &results[2..] {
        assert_eq!(r["ok"], false, "must be refused: {r}");
        assert!(r.get("bytes").is_none(), "no bytes leak: {r}");
    }
    assert_eq!(
        snapshot_outside(&sandbox),
        before,
        "nothing outside the grant changed"
    );
    assert!(!outside.join("planted.txt").exists());
}

#[test]
fn a_write_grant_reached_through_a_planted_link_fails_the_stage() {
    let sandbox = Sandbox::new();
    let run = sandbox.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    symlink(sandbox.path().join("outside"), run.join("files")).unwrap();
    let plugin = test_plugin("fs_probe.wasm");
    let workflow = write(
        sandbox.path(),
        "planted.yaml",
        &format!(
            "version: 1\nname: planted\nagents:\n  - id: prober\n    stages:\n      - id: probe\n        plugin: {}\n        write: out\n        with: {{ops: [{{op: write, path: out/x.txt, text: x}}]}}\n",
            plugin.display()
        ),
    );
    let (code, _, stderr) = run_workflow(
        &sandbox.path().join("cache"),
        &workflow,
        &sandbox.path().join("input"),
        &run,
    );
    assert_eq!(code, 1, "{stderr}");
    let metrics = read_json(&run.join("metrics.json"));
    let message = metrics["stages"][0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("is a link"), "{message}");
    assert!(
        !sandbox.path().join("outside/prober").exists(),
        "nothing made through the link"
    );
}
