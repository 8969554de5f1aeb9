//! From YAML text to the raw schema: the parser's errors turned into
//! diagnostics with positions, and a suggestion for a misspelt key.

use super::schema::RawWorkflow;
use super::{Diagnostic, Pos};

/// Parses YAML into the raw schema; errors carry the parser's position.
pub fn parse(source: &str) -> Result<RawWorkflow, Vec<Diagnostic>> {
    let blank = source
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        return Err(vec![
            Diagnostic::new("the workflow file is empty", Pos::at(1, 1))
                .help("a workflow starts with `version: 1`, a `name:` and a list of `agents:`; see workflows/chimera-agent-a.yaml"),
        ]);
    }
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    serde_saphyr::from_str_with_options(source, options).map_err(|e| vec![yaml_diagnostic(&e)])
}

/// Turns a serde-saphyr error into a diagnostic, with a suggestion for unknown keys.
fn yaml_diagnostic(error: &serde_saphyr::Error) -> Diagnostic {
    let pos = error.location().map(Pos::from).filter(|p| p.line > 0);
    let text = match error {
        serde_saphyr::Error::Message { msg, .. } => msg.clone(),
        other => {
            let full = other.without_snippet().to_string();
            full.split(" at line ").next().unwrap_or(&full).to_owned()
        }
    };
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        // serde says "expected one of a, b, c" or "expected `a` or `b`"; backticks vary.
        let list = expected
            .split_once("expected")
            .map_or("", |(_, l)| l)
            .trim_start_matches(" one of");
        let valid: Vec<&str> = list
            .split([',', ' '])
            .map(|v| v.trim().trim_matches('`'))
            .filter(|v| !v.is_empty() && *v != "or")
            .collect();
        let help = crate::suggest::help(field, valid.iter().copied(), "valid keys here", "");
        return Diagnostic::new(format!("unknown key `{field}`"), pos).help(help);
    }
    if let Some(field) = text
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        return Diagnostic::new(format!("missing key `{field}`"), pos).help(format!(
            "add `{field}:` here; see workflows/chimera-agent-a.yaml for a complete workflow"
        ));
    }
    if text.starts_with("budget breached") {
        let nodes: String = text.chars().filter(char::is_ascii_digit).collect();
        let size = nodes.parse::<u64>().map_or_else(
            |_| String::new(),
            |n| format!(" (over {})", n.saturating_sub(1)),
        );
        return Diagnostic::new(format!("the workflow expands into too many YAML nodes{size}"), pos)
            .help("anchors and aliases (`&a`, `*a`) here expand into too many nodes; write the values out, or use fewer aliases");
    }
    if let Some(key) = text
        .strip_prefix("duplicate mapping key: ")
        .and_then(|r| r.split(',').next())
    {
        return Diagnostic::new(
            format!("the key `{key}` appears twice in this mapping"),
            pos,
        )
        .help("keep one of the two; a later one would silently replace the first");
    }
    if text.starts_with("multiple YAML documents") {
        return Diagnostic::new("the file holds more than one YAML document", pos)
            .help("a workflow is one document: remove the `---` line and what follows, or split it into two files");
    }
    // The parser's words, in terms of what to change.
    let (message, help) = match text.as_str() {
        "expected sequence start" => (
            "this must be a list",
            Some("write `- item` lines, or `[a, b]`"),
        ),
        "expected mapping start" => (
            "this must be a mapping",
            Some("write indented `key: value` lines, or `{key: value}`"),
        ),
        "expected string scalar" => (
            "this must be one text value",
            Some("write `key: value`, not a list or a mapping"),
        ),
        t if t.starts_with("invalid i64")
            || t.starts_with("invalid u64")
            || t.starts_with("invalid u32") =>
        {
            (
                "this must be a whole number",
                Some("write digits without quotes, e.g. `1`"),
            )
        }
        t if t.starts_with("invalid f64") => (
            "this must be a number",
            Some("write digits without quotes, e.g. `0.8`"),
        ),
        t if t.starts_with("invalid bool") => ("this must be `true` or `false`", None),
        "while scanning a plain scalar, found a tab"
        | "found a tab character that violates indentation" => (
            "a tab character here",
            Some("YAML indents with spaces only; replace the tab with spaces"),
        ),
        "while parsing a block mapping, did not find expected key" => (
            "this line's indentation does not match the keys around it",
            Some("line it up with the other keys of the same mapping (spaces only)"),
        ),
        "mapping values are not allowed in this context" => (
            "a `:` where no key can start",
            Some("quote a value that contains `: ` (`\"a: b\"`), or fix the indentation"),
        ),
        "illegal placement of ':' indicator" => (
            "a `:` where no key can start",
            Some(
                "an unclosed `[` or `{` above may be swallowing this line; close it, or quote the value",
            ),
        ),
        _ => ("", None),
    };
    if message.is_empty() {
        return Diagnostic::new(lowercase_first(&text), pos);
    }
    Diagnostic::new(message, pos).help_opt(help.map(str::to_owned))
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect())
}
