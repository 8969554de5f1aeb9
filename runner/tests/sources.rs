//! `sources:` from real git repositories (made here with `git init`, reached
//! by `file://` URLs) and local directories; `chimera lock` and
//! `chimera run --locked`.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use common::{chimera, root, run};
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A team repository whose persona says `v1` at tag `v1`, then `v2` on main.
fn team_repo(at: &Path) -> PathBuf {
    let repo = at.join("team");
    std::fs::create_dir_all(repo.join("templates/personas")).unwrap();
    git(&repo, &["init", "-q"]);
    let persona = repo.join("templates/personas/skeptic.md.j2");
    std::fs::write(&persona, "You are the skeptic, version one.\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "v1"]);
    git(&repo, &["tag", "v1"]);
    std::fs::write(&persona, "You are the skeptic, version two.\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "v2"]);
    repo
}

/// Agent A, its persona from `team` at `rev`, written into `dir`.
fn workflow(dir: &Path, url: &str, rev: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("workflows/chimera-agent-a.yaml"))
        .unwrap()
        .replace(
            "persona: personas/data-collector-9000.md.j2",
            "persona: team:personas/skeptic.md.j2",
        )
        .replace(
            "agents:\n",
            &format!("sources:\n  team:\n    git: {url}\n    rev: {rev}\nagents:\n"),
        );
    let path = dir.join("agent.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn chimera_in(tmp: &Path) -> Command {
    let mut cmd = chimera(&tmp.join("cache"));
    cmd.env("CHIMERA_SOURCE_CACHE", tmp.join("sources"))
        .current_dir(tmp);
    cmd
}

fn run_flow(tmp: &Path, flow: &Path, server: &FakeOllama, extra: &[&str]) -> (i32, String, String) {
    run(chimera_in(tmp)
        .arg("run")
        .arg(flow)
        .arg("--input")
        .arg(root().join("sample-data"))
        .args(["--set", &format!("model.host={}", server.url()), "-q"])
        .args(extra))
}

/// The first message of the first chat request the server got (the persona).
fn first_system(server: &FakeOllama) -> String {
    let requests = server.requests();
    let chat = requests
        .iter()
        .find(|r| r.path == "/api/chat")
        .expect("a chat request");
    chat.body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_persona_from_a_pinned_revision_stays_that_revision_and_works_offline_once_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = team_repo(tmp.path());
    let url = format!("file://{}", repo.display());
    let flow = workflow(tmp.path(), &url, "v1");
    let server = FakeOllama::start(FakeConfig::default());
    let (code, stdout, stderr) = run_flow(tmp.path(), &flow, &server, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let system = first_system(&server);
    assert!(system.contains("version one"), "{system}");
    assert!(!system.contains("version two"), "{system}");

    // The record says which commit ran.
    let record = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run record: "))
        .unwrap();
    let metrics = common::json(&tmp.path().join(record).join("metrics.json"));
    let source = &metrics["provenance"]["sources"]["team"];
    assert_eq!(source["rev"], "v1");
    assert_eq!(source["commit"].as_str().unwrap().len(), 40, "{source}");

    // The repository moves on, then goes away: the pinned revision still
    // runs, from the cache.
    std::fs::write(
        repo.join("templates/personas/skeptic.md.j2"),
        "version three\n",
    )
    .unwrap();
    git(&repo, &["commit", "-q", "-am", "v3"]);
    std::fs::rename(&repo, tmp.path().join("gone")).unwrap();
    let server = FakeOllama::start(FakeConfig::default());
    let (code, stdout, stderr) = run_flow(tmp.path(), &flow, &server, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(first_system(&server).contains("version one"));
}

#[test]
fn lock_then_locked_passes_and_an_edit_in_the_cache_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = team_repo(tmp.path());
    let flow = workflow(tmp.path(), &format!("file://{}", repo.display()), "v1");
    let (code, stdout, stderr) = run(chimera_in(tmp.path()).arg("lock").arg(&flow));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("1 source"), "{stdout}");
    let lock = std::fs::read_to_string(tmp.path().join("chimera.lock")).unwrap();
    assert!(
        lock.contains("\"team:personas/skeptic.md.j2\" = "),
        "{lock}"
    );
    assert!(lock.contains("commit = "), "{lock}");

    let server = FakeOllama::start(FakeConfig::default());
    let (code, stdout, stderr) = run_flow(tmp.path(), &flow, &server, &["--locked"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let record = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run record: "))
        .unwrap();
    let metrics = common::json(&tmp.path().join(record).join("metrics.json"));
    assert!(
        metrics["provenance"]["lock"]["file"]
            .as_str()
            .unwrap()
            .ends_with("chimera.lock")
    );

    // Someone edits the cached persona in place: refused, by name.
    let cached: Vec<PathBuf> = walk(&tmp.path().join("sources"))
        .into_iter()
        .filter(|p| p.ends_with("templates/personas/skeptic.md.j2"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    std::fs::write(&cached[0], "You are someone else.\n").unwrap();
    let (code, stdout, stderr) = run_flow(tmp.path(), &flow, &server, &["--locked"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("source `team`: the cached files of commit")
            && stderr.contains("were changed after they were fetched"),
        "{stderr}"
    );
    // Deleting the cached tree brings it back from the cached repository.
    let tree = cached[0].ancestors().nth(3).unwrap().to_path_buf();
    std::fs::remove_dir_all(&tree).unwrap();
    let (code, stdout, stderr) = run_flow(tmp.path(), &flow, &server, &["--locked"]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    // The workflow pins another revision: the lock names the source.
    let moved = std::fs::read_to_string(&flow)
        .unwrap()
        .replace("rev: v1", "rev: main");
    std::fs::write(&flow, moved).unwrap();
    let (code, stdout, stderr) = run_flow(tmp.path(), &flow, &server, &["--locked"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("source `team` resolves to commit"),
        "{stderr}"
    );
    assert!(
        stderr.contains("template `team:personas/skeptic.md.j2` changed"),
        "{stderr}"
    );

    // A lock that does not parse says where.
    std::fs::write(
        tmp.path().join("chimera.lock"),
        "version = 1\n[[workflow]]\nfile =\n",
    )
    .unwrap();
    let (code, _, stderr) = run_flow(tmp.path(), &flow, &server, &["--locked"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("chimera.lock:3:"), "{stderr}");
}

#[test]
fn an_unreachable_repository_and_an_unknown_revision_are_exit_2_at_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = team_repo(tmp.path());
    let flow = workflow(tmp.path(), "file:///no/such/repository.git", "v1");
    let (code, stdout, stderr) = run(chimera_in(tmp.path()).arg("validate").arg(&flow));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("source `team`: cannot fetch `file:///no/such/repository.git`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("agent.yaml:21:10"),
        "the `git:` line: {stderr}"
    );

    let flow = workflow(tmp.path(), &format!("file://{}", repo.display()), "v9");
    let (code, stdout, stderr) = run(chimera_in(tmp.path()).arg("validate").arg(&flow));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("`v9` is not a commit or tag of"),
        "{stderr}"
    );
    assert!(
        stderr.contains("agent.yaml:22:10"),
        "the `rev:` line: {stderr}"
    );
    // Nothing half-made is left in the cache.
    assert!(
        walk(&tmp.path().join("sources"))
            .iter()
            .all(|p| !p.to_string_lossy().contains("/.tmp-")),
        "no scratch directory left behind"
    );

    // A name the source does not have.
    let flow = workflow(tmp.path(), &format!("file://{}", repo.display()), "v1");
    let text = std::fs::read_to_string(&flow)
        .unwrap()
        .replace("team:personas/skeptic.md.j2", "team:personas/nobody.md.j2");
    std::fs::write(&flow, text).unwrap();
    let (code, stdout, stderr) = run(chimera_in(tmp.path()).arg("validate").arg(&flow));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("looked in source `team`"), "{stderr}");
}

#[test]
fn a_local_directory_source_gives_its_templates_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared/templates/personas");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("skeptic.md.j2"), "You are the local skeptic.\n").unwrap();
    let flow = workflow(tmp.path(), "unused", "v1");
    let text = std::fs::read_to_string(&flow).unwrap().replace(
        "  team:\n    git: unused\n    rev: v1\n",
        "  team:\n    dir: shared\n",
    );
    std::fs::write(&flow, text).unwrap();
    let server = FakeOllama::start(FakeConfig::default());
    let (code, stdout, stderr) = run_flow(tmp.path(), &flow, &server, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(first_system(&server).contains("local skeptic"));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.push(path.clone());
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
