//! A record says what produced it: hashes of the workflow, every template
//! rendered (and where on the search path it came from) and every plugin;
//! the model's identity as the server gives it; the effective options; the
//! build and the machine. `--resume` refuses a workflow or template that
//! changed since the run began, and `chimera templates` shows what shadows
//! what.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use common::{chimera, fixtures, json, root, run, write};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// A project: `workflows/agent.yaml` (Agent A) and `templates/` (the stock
/// ones), plus a team template directory for `CHIMERA_TEMPLATE_PATH`.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let yaml = std::fs::read_to_string(root().join("workflows/chimera-agent-a.yaml")).unwrap();
        write(dir.path(), "workflows/agent.yaml", &yaml);
        for name in [
            "personas/data-collector-9000.md.j2",
            "prompts/analyze.md.j2",
            "prompts/report.md.j2",
            "macros/benchmark.j2",
            "reports/agent-report.md.j2",
        ] {
            let text = std::fs::read_to_string(root().join("templates").join(name)).unwrap();
            write(&dir.path().join("templates"), name, &text);
        }
        Self { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn team(&self) -> PathBuf {
        self.path("team")
    }

    fn command(&self) -> std::process::Command {
        let mut cmd = chimera(&self.path("cache"));
        cmd.current_dir(self.dir.path())
            .env("CHIMERA_TEMPLATE_PATH", self.team());
        cmd
    }

    fn run(&self, server: &FakeOllama) -> (i32, String) {
        let (code, _, stderr) = run(self
            .command()
            .arg("run")
            .arg("workflows/agent.yaml")
            .arg("--input")
            .arg(fixtures())
            .arg("--out")
            .arg(self.path("run"))
            .arg("--set")
            .arg(format!("model.host={}", server.url()))
            .args(["--set", "model.options.num_ctx=1024"]));
        (code, stderr)
    }
}

fn server() -> FakeOllama {
    FakeOllama::start(FakeConfig::tokens(["## Key Findings\n", "- fine\n"]))
}

#[test]
fn the_record_names_every_file_plugin_and_model_that_produced_it() {
    let project = Project::new();
    let server = server();
    let (code, stderr) = project.run(&server);
    assert_eq!(code, 0, "{stderr}");
    let metrics = json(&project.path("run/metrics.json"));
    let p = &metrics["provenance"];

    let workflow = project.path("workflows/agent.yaml");
    assert_eq!(p["workflow"]["sha256"], sha256(&workflow));
    assert_eq!(
        Path::new(p["workflow"]["file"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        workflow.canonicalize().unwrap()
    );

    // Every template rendered, included or imported, with its file and hash.
    let templates = p["templates"].as_array().unwrap();
    let mut names: Vec<&str> = templates
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "macros/benchmark.j2",
            "personas/data-collector-9000.md.j2",
            "prompts/analyze.md.j2",
            "prompts/report.md.j2",
            "reports/agent-report.md.j2"
        ]
    );
    let project_templates = project.path("templates").canonicalize().unwrap();
    for t in templates {
        let file = Path::new(t["file"].as_str().unwrap());
        assert_eq!(t["sha256"], sha256(file), "{t}");
        assert!(file.starts_with(&project_templates), "{t}");
    }

    // Every plugin, with the component's hash.
    let plugins = p["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 3);
    for plugin in plugins {
        let builtin = chimera::plugin::builtins()
            .iter()
            .find(|b| b.name == plugin["reference"])
            .expect("a built-in");
        assert_eq!(plugin["origin"], "built-in");
        assert_eq!(plugin["sha256"], hex::encode(Sha256::digest(builtin.wasm)));
    }

    // The effective options after the override, and the model's digest as
    // the server lists it.
    let models = p["models"].as_array().unwrap();
    assert_eq!(models.len(), 3, "every stage has the workflow's model");
    for m in models {
        assert_eq!(m["backend"], "ollama");
        assert_eq!(m["options"]["num_ctx"], 1024);
        assert_eq!(m["options"]["num_gpu"], 80);
        assert_eq!(
            m["identity"],
            "digest:a2af6cc3eb7fa8be8504abaf9b04e88f17a119ec3f04a3addf55f92841195f5a"
        );
    }

    assert_eq!(p["chimera"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        p["chimera"]["git_commit"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert!(
        p["machine"]["cores"].as_u64().is_some_and(|c| c >= 1),
        "{p}"
    );
    assert!(
        p["machine"]["memory_bytes"].as_u64().is_some_and(|m| m > 0),
        "{p}"
    );

    // run.json keeps the search paths a resumed run must use.
    let invocation = json(&project.path("run/run.json"));
    assert_eq!(invocation["search"]["templates"], p["template_path"]);
    assert_eq!(invocation["workflow_sha256"], p["workflow"]["sha256"]);
}

#[test]
fn a_template_from_chimera_template_path_shows_where_it_came_from() {
    let project = Project::new();
    let persona = "personas/data-collector-9000.md.j2";
    write(
        &project.team(),
        persona,
        "You are the team's collector, {{ agent }}.\n",
    );

    // The project's own copy comes first on the search path and shadows the team's.
    let (code, stdout, stderr) = run(project
        .command()
        .args(["templates", "workflows/agent.yaml"]));
    assert_eq!(code, 0, "{stderr}");
    let line = stdout
        .lines()
        .position(|l| l.starts_with(persona))
        .expect(&stdout);
    let next = stdout.lines().nth(line + 1).unwrap_or_default();
    assert!(
        next.contains("shadows")
            && next.contains(&project.team().join(persona).display().to_string()),
        "{stdout}"
    );

    // Without the project's copy the team's wins, and the record says so.
    std::fs::remove_file(project.path("templates").join(persona)).unwrap();
    let (code, stdout, _) =
        run(project
            .command()
            .args(["templates", "workflows/agent.yaml", "--json"]));
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let entry = listed["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == persona)
        .unwrap();
    assert_eq!(entry["from"], project.team().display().to_string());
    // The team's copy shadows only the stock one built into chimera.
    assert_eq!(
        entry["shadows"],
        serde_json::json!([format!("(built-in)/{persona}")])
    );

    let server = server();
    let (code, stderr) = project.run(&server);
    assert_eq!(code, 0, "{stderr}");
    let metrics = json(&project.path("run/metrics.json"));
    let recorded = metrics["provenance"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == persona)
        .cloned()
        .unwrap();
    assert_eq!(recorded["root"], project.team().display().to_string());
    assert_eq!(recorded["sha256"], sha256(&project.team().join(persona)));
}

#[test]
fn resume_refuses_a_template_or_workflow_that_changed() {
    let project = Project::new();
    let server = server();
    let (code, stderr) = project.run(&server);
    assert_eq!(code, 0, "{stderr}");
    let resume = || {
        run(project
            .command()
            .arg("run")
            .arg("--resume")
            .arg(project.path("run")))
    };
    let (code, _, stderr) = resume();
    assert_eq!(code, 0, "an unchanged run resumes: {stderr}");

    let prompt = project.path("templates/prompts/report.md.j2");
    let text = std::fs::read_to_string(&prompt).unwrap();
    std::fs::write(&prompt, format!("{text}\nBe brief.\n")).unwrap();
    let (code, _, stderr) = resume();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("template `prompts/report.md.j2`"),
        "{stderr}"
    );
    assert!(stderr.contains("changed"), "{stderr}");
    let real = regex_escape(
        &project
            .dir
            .path()
            .canonicalize()
            .unwrap()
            .display()
            .to_string(),
    );
    let given = regex_escape(&project.dir.path().display().to_string());
    insta::with_settings!({filters => vec![
        (real.as_str(), "[project]"),
        (given.as_str(), "[project]"),
    ]}, {
        insta::assert_snapshot!(stderr);
    });
    std::fs::write(&prompt, text).unwrap();

    let workflow = project.path("workflows/agent.yaml");
    let yaml = std::fs::read_to_string(&workflow).unwrap();
    std::fs::write(&workflow, yaml.replace("timeout: 600s", "timeout: 500s")).unwrap();
    let (code, _, stderr) = resume();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the workflow"), "{stderr}");
    let chats = server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/chat")
        .count();
    assert_eq!(chats, 2, "the refused resumes made no model call");
}

/// `text` as a regular expression that matches it literally.
fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-') {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}
