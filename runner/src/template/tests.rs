//! The template environment: search path, limits, static references.

use super::*;
use serde_json::json;

fn templates(files: &[(&str, &str)]) -> (tempfile::TempDir, Templates) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let t = Templates::new(vec![dir.path().to_path_buf()]);
    (dir, t)
}

#[test]
fn the_agent_prints_as_its_id_and_has_a_title() {
    let (_dir, t) = templates(&[
        (
            "p.j2",
            "{{ agent }}|{{ agent.id }}|{{ agent.title }}|{{ agent.description or '-' }}",
        ),
        ("bad.j2", "{{ agent.nickname }}"),
    ]);
    let agent = AgentInfo {
        id: "collector".into(),
        title: "Data Collector".into(),
        description: None,
    };
    let context = json!({"agent": "collector"});
    assert_eq!(
        t.render_for("p.j2", &context, Some(&agent)).unwrap(),
        "collector|collector|Data Collector|-"
    );
    // Without the agent (or for another agent's id) it stays a string.
    assert!(t.render("p.j2", &context).is_err());
    let other = json!({"agent": "insight"});
    assert!(t.render_for("p.j2", &other, Some(&agent)).is_err());
    let err = t
        .render_for("bad.j2", &context, Some(&agent))
        .unwrap_err()
        .to_string();
    assert!(err.contains("agent.nickname"), "{err}");
}

#[test]
fn renders_includes_and_rejects_undefined_variables() {
    let (_d, t) = templates(&[
        ("base.j2", "[{% include 'part.j2' %}]"),
        ("part.j2", "{{ who }}"),
    ]);
    assert_eq!(
        t.render("base.j2", &json!({"who": "agent"})).unwrap(),
        "[agent]"
    );
    let err = t.render("base.j2", &json!({})).unwrap_err().to_string();
    assert!(err.contains("undefined"), "{err}");
    assert!(
        err.contains("part.j2:1"),
        "names the template and line: {err}"
    );
    assert!(
        err.contains("not in the context: `who`"),
        "names the variable: {err}"
    );
}

#[test]
fn refuses_names_that_climb_out_and_symlinks_that_lead_out() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    let (dir, t) = templates(&[("ok.j2", "ok")]);
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        dir.path().join("link.j2"),
    )
    .unwrap();
    assert!(t.render("../secret.txt", &json!({})).is_err());
    assert!(matches!(
        t.render("link.j2", &json!({})),
        Err(TemplateError::NotFound { .. })
    ));
    assert!(t.exists("ok.j2"));
}

#[test]
fn a_runaway_template_runs_out_of_fuel() {
    let (_d, t) = templates(&[(
        "loop.j2",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    )]);
    let err = t.render("loop.j2", &json!({})).unwrap_err().to_string();
    assert!(err.contains("fuel"), "{err}");
    assert!(
        err.contains("loop.j2:1"),
        "names the template and line: {err}"
    );
}

#[test]
fn a_template_that_includes_itself_hits_the_recursion_limit() {
    let (_d, t) = templates(&[
        ("persona.j2", "You are\n{% include 'self.j2' %}"),
        ("self.j2", "me and\n{% include 'self.j2' %}"),
        (
            "macro.j2",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(0) }}",
        ),
    ]);
    let err = t.render("persona.j2", &json!({})).unwrap_err().to_string();
    assert!(err.contains("recursion limit"), "{err}");
    assert!(
        err.contains("self.j2:2"),
        "names the template and line: {err}"
    );
    let err = t.render("macro.j2", &json!({})).unwrap_err().to_string();
    assert!(err.contains("recursion limit"), "{err}");
    assert!(
        err.contains("macro.j2:1"),
        "names the template and line: {err}"
    );
}
