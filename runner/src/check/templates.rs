//! Every template a run will render, compiled before it starts: the
//! personas, prompts and reports a workflow names and every template they
//! name literally (`include`, `extends`, `import`, `from`). A syntax error is
//! reported with the template's file:line and the line itself; a variable a
//! template reads that its context never provides is reported with the
//! context's names.

use crate::template::{CompileError, Templates};
use crate::workflow::{Diagnostic, Located};
use std::collections::BTreeSet;

/// Who renders a template, and with which top-level variables.
pub struct Use<'a> {
    /// `the persona of agent `a``, `the prompt of stage `s``, …
    pub role: String,
    /// Where the workflow names it.
    pub name: &'a Located<String>,
    /// (renderer, the variables it provides): one per stage that renders it.
    pub contexts: Vec<(String, Vec<String>)>,
}

/// Checks one use of a template; diagnostics point at the workflow's reference.
pub fn check(templates: &Templates, usage: &Use<'_>) -> Vec<Diagnostic> {
    let at = usage.name.pos;
    let name = &usage.name.value;
    let compiled = match templates.compile(name) {
        Ok(compiled) => compiled,
        // Reported by the reference check.
        Err(e) if matches!(*e, CompileError::NotFound(_)) => return Vec::new(),
        Err(e) => return vec![syntax(&e, name, &usage.role, at)],
    };
    let mut problems = Vec::new();
    for (renderer, provided) in &usage.contexts {
        let missing: Vec<&String> = compiled
            .variables
            .iter()
            .filter(|v| !provided.contains(v))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let list = |names: &mut dyn Iterator<Item = &String>| {
            names
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        problems.push(
            Diagnostic::new(
                format!(
                    "template `{name}` ({}) uses {}, which {renderer} does not provide",
                    usage.role,
                    list(&mut missing.iter().copied())
                ),
                at,
            )
            .help(format!(
                "{renderer} renders it with: {}",
                list(&mut provided.iter())
            )),
        );
    }
    // What it names literally is compiled too (it renders as part of it).
    let mut seen = BTreeSet::from([name.clone()]);
    let mut queue = compiled.references;
    while let Some(next) = queue.pop() {
        if !seen.insert(next.clone()) {
            continue;
        }
        match templates.compile(&next) {
            Ok(inner) => queue.extend(inner.references),
            Err(e) => {
                let role = format!("named by `{name}`, {}", usage.role);
                problems.push(match *e {
                    CompileError::NotFound(_) => Diagnostic::new(
                        format!(
                            "template `{name}` ({}) names template `{next}`, which is not found",
                            usage.role
                        ),
                        at,
                    )
                    .help(templates.not_found_help_for(&next)),
                    CompileError::Syntax(_) => syntax(&e, &next, &role, at),
                });
            }
        }
    }
    problems
}

/// A syntax error, quoted from the template where minijinja found it.
fn syntax(e: &CompileError, name: &str, role: &str, at: crate::workflow::Pos) -> Diagnostic {
    let CompileError::Syntax(s) = e else {
        return Diagnostic::new(format!("template `{name}` ({role}) is not found"), at);
    };
    let place = s
        .line
        .map_or_else(|| s.name.clone(), |line| format!("{}:{line}", s.name));
    let mut d = Diagnostic::new(
        format!("template `{name}` ({role}) does not compile: {} (at {place})", s.detail),
        at,
    )
    .help("fix the template; `{% if %}`, `{% for %}`, `{% macro %}` and `{% block %}` each need their `{% end… %}`");
    if let (Some(line), Some(source)) = (s.line, &s.source)
        && let Some(text) = source.lines().nth(line.saturating_sub(1))
    {
        let width = line.to_string().len();
        d = d.excerpt(format!(
            "= note: {} line {line}:\n{:width$} |\n{line} | {}",
            s.name,
            "",
            text.trim_end()
        ));
    }
    d
}
