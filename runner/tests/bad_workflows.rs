//! A corpus of malformed workflows (tests/bad-workflows/*.yaml, plus a 10 MB
//! file made here): each gives a one-screen error with file:line:column (or
//! the file, for whole-file problems) and exit code 2 — never a panic.

mod common;

use common::{chimera, root, run};
use std::path::Path;

fn validate(path: &Path) -> (i32, String) {
    let cache = tempfile::tempdir().unwrap();
    let dir = path.parent().unwrap();
    let (code, _, stderr) = run(chimera(cache.path())
        .env("CHIMERA_TEMPLATE_PATH", root().join("templates"))
        .current_dir(dir)
        .arg("validate")
        .arg(path.file_name().unwrap()));
    (code, stderr)
}

fn assert_one_screen_error(name: &str, code: i32, stderr: &str) {
    assert_eq!(code, 2, "{name}: exit code\n{stderr}");
    assert!(
        stderr.starts_with("error: "),
        "{name}: starts with `error: `\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{name}: panicked\n{stderr}");
    assert!(
        stderr.lines().count() <= 30,
        "{name}: more than one screen\n{stderr}"
    );
    assert!(
        stderr.lines().all(|l| l.chars().count() <= 200),
        "{name}: a line is too wide\n{stderr}"
    );
}

#[test]
fn every_malformed_workflow_fails_with_a_located_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-workflows");
    let mut seen = 0;
    insta::glob!("bad-workflows/*.yaml", |path| {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (code, stderr) = validate(path);
        assert_one_screen_error(&name, code, &stderr);
        let whole_file = ["binary-garbage.yaml"].contains(&name.as_str());
        if !whole_file {
            let located = format!("--> {name}:");
            assert!(
                stderr.contains(&located),
                "{name}: names file:line:col\n{stderr}"
            );
        }
        let home = std::env::var("HOME").unwrap_or_default();
        let stable = stderr
            .replace(&root().display().to_string(), "[repo]")
            .replace(&home, "[home]");
        insta::assert_snapshot!(stable);
        seen += 1;
    });
    assert!(
        seen >= 40,
        "the corpus has at least 40 workflows, found {seen} in {}",
        dir.display()
    );
}

#[test]
fn a_10_mb_workflow_is_refused_before_parsing() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("huge.yaml");
    let mut text = String::from("version: 1\nname: huge\nagents:\n");
    while text.len() < 10 << 20 {
        text.push_str(
            "  # padding padding padding padding padding padding padding padding padding\n",
        );
    }
    std::fs::write(&path, text).unwrap();
    let (code, stderr) = validate(&path);
    assert_one_screen_error("huge.yaml", code, &stderr);
    assert!(stderr.contains("limited to 1048576 bytes"), "{stderr}");
}
