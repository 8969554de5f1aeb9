//! A stage sees only what its workflow grants: reads outside the grant fail,
//! through `..`, absolute paths or symlinks. Uses the external `fs-probe`
//! test plugin, loaded by path and by name.

mod common;

use common::{chimera, json, run, run_workflow, test_plugin, write};
use std::os::unix::fs::symlink;
use std::path::Path;

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
    fn probe(&self, plugin: &str, grant: &str, paths: &[&str]) -> (i32, serde_json::Value, String) {
        let list = paths
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let workflow = write(
            self.path(),
            "probe.yaml",
            &format!(
                "version: 1\nname: probe\nagents:\n  - id: prober\n    stages:\n      - id: probe\n        plugin: {plugin}\n        read: [{grant}]\n        with:\n          paths: [{list}]\n"
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
        (code, json(&out.join("metrics.json")), stderr)
    }

    fn results(&self) -> Vec<serde_json::Value> {
        let output = json(&self.path().join("run/outputs/prober/probe.json"));
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
    let workflow = write(
        sandbox.path(),
        "nogrant.yaml",
        &format!(
            "version: 1\nname: nogrant\nagents:\n  - id: prober\n    stages:\n      - id: probe\n        plugin: {}\n        with:\n          paths: [\"reports/granted.txt\", \".\", \"/\"]\n",
            plugin.display()
        ),
    );
    let out = sandbox.path().join("run");
    let (code, _, stderr) = run_workflow(
        &sandbox.path().join("cache"),
        &workflow,
        &sandbox.path().join("input"),
        &out,
    );
    assert_eq!(code, 0, "{stderr}");
    let output = json(&out.join("outputs/prober/probe.json"));
    assert_eq!(output["read_dirs"], serde_json::json!([]));
    for r in output["results"].as_array().unwrap() {
        assert_eq!(r["ok"], false, "nothing is readable without a grant: {r}");
    }
}
