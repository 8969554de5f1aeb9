//! `chimera runs list|show|diff|tag` over real records (written by
//! `chimera run` against the fake Ollama server), and the index behind them:
//! rebuilt when deleted or truncated, and correct with four processes
//! writing it at once.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use common::{chimera, root, run};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `chimera run` of Agent A in `cwd` (so into `cwd/runs/`); the record's
/// directory.
fn agent_a(cwd: &Path, cache: &Path, server: &FakeOllama, set: &[&str]) -> PathBuf {
    agent_a_at(cwd, cache, &server.url(), set)
}

fn agent_a_at(cwd: &Path, cache: &Path, url: &str, set: &[&str]) -> PathBuf {
    let mut cmd = chimera(cache);
    cmd.current_dir(cwd)
        .arg("run")
        .arg(root().join("workflows/chimera-agent-a.yaml"))
        .arg("--input")
        .arg(root().join("sample-data"))
        .args(["--set", &format!("model.host={url}"), "-q"]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run record: "))
        .unwrap_or_else(|| panic!("no record printed: {stdout}"));
    cwd.join(dir)
}

fn runs(cwd: &Path, cache: &Path, args: &[&str]) -> (i32, String, String) {
    run(chimera(cache).current_dir(cwd).arg("runs").args(args))
}

fn listed(cwd: &Path, cache: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["list", "--json"];
    args.extend(extra);
    let (code, stdout, stderr) = runs(cwd, cache, &args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    serde_json::from_str::<Vec<Value>>(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn records_are_listed_shown_tagged_and_diffed() {
    let server = FakeOllama::start(FakeConfig::default());
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let first = agent_a(tmp.path(), &cache, &server, &[]);
    let second = agent_a(
        tmp.path(),
        &cache,
        &server,
        &["model.options.temperature=0.2"],
    );
    let name = |d: &Path| d.file_name().unwrap().to_string_lossy().into_owned();

    let list = listed(tmp.path(), &cache, &[]);
    assert_eq!(ids(&list), [name(&second), name(&first)], "newest first");
    assert_eq!(list[0]["kind"], "run");
    assert_eq!(list[0]["status"], "ok");
    assert_eq!(list[0]["workflow"], "chimera-agent-a");
    assert_eq!(
        list[0]["models"],
        serde_json::json!(["gemma3:latest (ollama)"])
    );

    let (code, stdout, stderr) = runs(tmp.path(), &cache, &["diff", "latest~1", "latest"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let first_change = stdout
        .lines()
        .find(|l| l.starts_with("- "))
        .unwrap_or_else(|| panic!("no change listed: {stdout}"));
    assert_eq!(
        first_change, "- option `temperature`: `0.8` → `0.2` (every stage)",
        "{stdout}"
    );
    assert!(stdout.contains("| run total_ms |"), "{stdout}");
    assert!(
        stdout.contains("no verdict"),
        "single runs get no statistics: {stdout}"
    );

    let (code, stdout, stderr) = runs(tmp.path(), &cache, &["tag", "latest~1", "baseline"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let tags: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(first.join("tags.json")).unwrap()).unwrap();
    assert_eq!(tags, ["baseline"], "the tag is kept in the record");
    assert_eq!(
        ids(&listed(tmp.path(), &cache, &["--tag", "baseline"])),
        [name(&first)]
    );
    let (code, stdout, stderr) = runs(tmp.path(), &cache, &["show", "baseline"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("{} (run, ok)", name(&first))),
        "{stdout}"
    );
    assert!(stdout.contains("tags      baseline"), "{stdout}");
    assert!(
        stdout.contains("chimera-agent-a/analyze  ok"),
        "the stage table: {stdout}"
    );
    assert!(stdout.contains("temperature=0.8"), "{stdout}");

    assert!(listed(tmp.path(), &cache, &["--status", "failed"]).is_empty());
    assert_eq!(listed(tmp.path(), &cache, &["--since", "1h"]).len(), 2);
    assert!(listed(tmp.path(), &cache, &["--until", "2000-01-01"]).is_empty());
    assert_eq!(
        listed(tmp.path(), &cache, &["--workflow", "chimera-agent-a"]).len(),
        2
    );
    assert!(listed(tmp.path(), &cache, &["--workflow", "other"]).is_empty());

    let elsewhere = tempfile::tempdir().unwrap();
    let (code, _, stderr) = runs(elsewhere.path(), &cache, &["list"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no runs directory `runs`"), "{stderr}");
    assert!(
        !elsewhere.path().join("runs").exists(),
        "looking creates nothing"
    );

    let (code, _, stderr) = runs(tmp.path(), &cache, &["show", "nothing-like-it"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no record `nothing-like-it`"), "{stderr}");
    let (code, _, stderr) = runs(tmp.path(), &cache, &["tag", "latest", "two words"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is not a tag"), "{stderr}");
}

/// One real record, copied `n` times into `runs` under new names, each
/// started a minute after the one before.
fn seed(runs: &Path, record: &Path, n: usize) -> Vec<String> {
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(record.join("metrics.json")).unwrap())
            .unwrap();
    let start: jiff::Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
    (0..n)
        .map(|i| {
            let at = start + jiff::SignedDuration::from_mins(i as i64);
            let id = format!("{}-copy-{i}", at.strftime("%Y%m%dT%H%M%SZ"));
            let dir = runs.join(&id);
            std::fs::create_dir_all(&dir).unwrap();
            let mut m = metrics.clone();
            m["started_at"] = at.to_string().into();
            std::fs::write(dir.join("metrics.json"), m.to_string()).unwrap();
            id
        })
        .collect()
}

#[test]
fn the_index_is_rebuilt_when_deleted_or_truncated_and_follows_the_directories() {
    let server = FakeOllama::start(FakeConfig::default());
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let made = agent_a(tmp.path(), &cache, &server, &[]);
    let runs_dir = tmp.path().join("runs");
    let copies = seed(&runs_dir, &made, 40);
    for id in copies.iter().step_by(3) {
        let (code, stdout, stderr) = runs(tmp.path(), &cache, &["tag", id, "kept"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
    }
    let before = listed(tmp.path(), &cache, &[]);
    assert_eq!(before.len(), 41);
    let index = runs_dir.join(".chimera-index.sqlite");
    assert!(index.is_file());

    std::fs::remove_file(&index).unwrap();
    assert_eq!(
        listed(tmp.path(), &cache, &[]),
        before,
        "rebuilt after deletion"
    );
    assert_eq!(listed(tmp.path(), &cache, &["--tag", "kept"]).len(), 14);

    for keep in [std::fs::metadata(&index).unwrap().len() / 2, 100] {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&index)
            .unwrap();
        file.set_len(keep).unwrap();
        drop(file);
        let (code, stdout, stderr) = runs(tmp.path(), &cache, &["list", "--json"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(
            stderr.contains("was damaged"),
            "truncated to {keep} bytes: {stderr}"
        );
        let after: Vec<Value> = serde_json::from_str(&stdout).unwrap();
        assert_eq!(after, before, "rebuilt after truncation to {keep} bytes");
    }

    // A record removed and one added show in the next list.
    std::fs::remove_dir_all(runs_dir.join(&copies[0])).unwrap();
    let added = seed(&tmp.path().join("more"), &made, 1).remove(0);
    std::fs::rename(
        tmp.path().join("more").join(&added),
        runs_dir.join("added-later"),
    )
    .unwrap();
    let now = ids(&listed(tmp.path(), &cache, &[]));
    assert!(!now.contains(&copies[0]));
    assert!(now.contains(&"added-later".to_owned()));
    assert_eq!(now.len(), 41);
}

#[test]
fn four_processes_writing_the_index_at_once_lose_nothing() {
    let server = FakeOllama::start(FakeConfig::default());
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let made = agent_a(tmp.path(), &cache, &server, &[]);
    let runs_dir = tmp.path().join("runs");
    // No index yet: the four processes race to create it, too.
    std::fs::remove_file(runs_dir.join(".chimera-index.sqlite")).unwrap();
    let copies = seed(&runs_dir, &made, 40);
    let lanes: Vec<std::thread::JoinHandle<Vec<String>>> = (0..4)
        .map(|lane| {
            let (cwd, cache) = (tmp.path().to_path_buf(), cache.clone());
            let url = server.url();
            let mine: Vec<String> = copies.iter().skip(lane).step_by(4).cloned().collect();
            std::thread::spawn(move || {
                let tag = format!("lane-{lane}");
                let mut tagged = Vec::new();
                for id in &mine {
                    let (code, stdout, stderr) = runs(&cwd, &cache, &["tag", id, &tag]);
                    assert_eq!(code, 0, "{stdout}{stderr}");
                    assert!(stderr.is_empty(), "{stderr}");
                    tagged.push(id.clone());
                }
                // A run of its own, noted in the index as it ends.
                let made = agent_a_at(&cwd, &cache, &url, &[]);
                let dir = made.file_name().unwrap().to_string_lossy().into_owned();
                let (code, stdout, stderr) = runs(&cwd, &cache, &["tag", &dir, &tag]);
                assert_eq!(code, 0, "{stdout}{stderr}");
                tagged.push(dir);
                tagged
            })
        })
        .collect();
    let tagged: Vec<Vec<String>> = lanes.into_iter().map(|l| l.join().unwrap()).collect();

    // What the index alone holds, without looking at the directories.
    let held = listed(tmp.path(), &cache, &["--no-refresh"]);
    assert_eq!(held.len(), 1 + 40 + 4, "{:?}", ids(&held));
    for (lane, ids) in tagged.iter().enumerate() {
        for id in ids {
            let entry = held
                .iter()
                .find(|e| e["id"] == id.as_str())
                .unwrap_or_else(|| panic!("`{id}` lost from the index"));
            assert_eq!(
                entry["tags"],
                serde_json::json!([format!("lane-{lane}")]),
                "{id}"
            );
            assert_eq!(entry["status"], "ok", "{id}");
        }
    }
    assert_eq!(
        listed(tmp.path(), &cache, &[]),
        held,
        "the index agrees with the directories"
    );
}
