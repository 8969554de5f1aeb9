//! `sources:` checked: each source's name, and where it comes from — a local
//! directory or a git repository at a pinned revision — with positions for
//! the errors fetching it may give later.

use super::schema::RawSource;
use super::{Diagnostic, Located, Pos};
use indexmap::IndexMap;
use serde_saphyr::Spanned;
use std::path::Path;

/// A checked source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// What `<name>:` refers to it by.
    pub name: String,
    pub at: Pos,
    pub origin: Origin,
}

/// Where a source's files come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A directory, as written (relative to the workflow's directory).
    Dir(Located<String>),
    /// A repository at a revision, optionally a directory inside it.
    Git {
        url: Located<String>,
        rev: Located<String>,
        path: Option<Located<String>>,
    },
}

fn located(s: &Spanned<String>) -> Located<String> {
    Located {
        value: s.value.clone(),
        pos: s.referenced.into(),
    }
}

/// Whether `name` is a source name: letters, digits, `-` and `_` (it is
/// written before a `:` in template and plugin names).
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks `sources:`; every problem goes to `problems`.
pub fn check(
    raw: Option<&Spanned<IndexMap<String, Spanned<RawSource>>>>,
    problems: &mut Vec<Diagnostic>,
) -> Vec<SourceSpec> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, source) in &raw.value {
        let at: Pos = source.referenced.into();
        if !is_name(name) {
            problems.push(
                Diagnostic::new(format!("`{name}` is not a source name"), at)
                    .help("use letters, digits, `-` and `_` (it is written before `:` in `<source>:<name>`)"),
            );
            continue;
        }
        let s = &source.value;
        let origin = match (&s.dir, &s.git) {
            (Some(dir), None) => {
                if let Some(rev) = &s.rev {
                    problems.push(
                        Diagnostic::new(
                            format!("source `{name}` is a directory; `rev:` pins a git revision"),
                            Pos::from(rev.referenced),
                        )
                        .help("remove `rev:`, or use `git:` with the repository's URL"),
                    );
                }
                if let Some(path) = &s.path {
                    problems.push(
                        Diagnostic::new(
                            format!("source `{name}` is a directory; `path:` picks a directory inside a git repository"),
                            Pos::from(path.referenced),
                        )
                        .help("write the directory itself in `dir:`"),
                    );
                }
                Origin::Dir(located(dir))
            }
            (None, Some(git)) => {
                let Some(rev) = &s.rev else {
                    problems.push(
                        Diagnostic::new(format!("source `{name}` has no `rev:`"), Pos::from(git.referenced))
                            .help("pin it: `rev: <commit or tag>`, so every run uses the same files until you change it"),
                    );
                    continue;
                };
                for (what, v) in [("git", git), ("rev", rev)] {
                    if v.value.trim().is_empty() || v.value.starts_with('-') {
                        problems.push(
                            Diagnostic::new(
                                format!("`{what}: {}` is not a {}", v.value, if what == "git" { "repository URL" } else { "commit or tag" }),
                                Pos::from(v.referenced),
                            )
                            .help("write e.g. `git: https://github.com/team/personas.git` and `rev: v1.2` (or a commit hash)"),
                        );
                    }
                }
                if let Some(path) = &s.path {
                    let climbs = path.value.split(['/', '\\']).any(|p| p == "..");
                    if climbs || std::path::Path::new(&path.value).is_absolute() {
                        problems.push(
                            Diagnostic::new(
                                format!("`path: {}` leads out of the repository", path.value),
                                Pos::from(path.referenced),
                            )
                            .help(
                                "a path inside the repository, relative to its root, without `..`",
                            ),
                        );
                    }
                }
                Origin::Git {
                    url: located(git),
                    rev: located(rev),
                    path: s.path.as_ref().map(located),
                }
            }
            (Some(_), Some(git)) => {
                problems.push(
                    Diagnostic::new(format!("source `{name}` has both `dir:` and `git:`"), Pos::from(git.referenced))
                        .help("a source is one of the two: keep `dir:` for a local directory or `git:` (with `rev:`) for a repository"),
                );
                continue;
            }
            (None, None) => {
                problems.push(
                    Diagnostic::new(format!("source `{name}` says neither `dir:` nor `git:`"), at)
                        .help("write `dir: ../shared` (relative to the workflow) or `git: <url>` with `rev: <commit or tag>`"),
                );
                continue;
            }
        };
        out.push(SourceSpec {
            name: name.clone(),
            at,
            origin,
        });
    }
    out
}

/// Splits `<source>:<name>` when the part before `:` is a source name.
pub fn split(reference: &str) -> Option<(&str, &str)> {
    let (source, name) = reference.split_once(':')?;
    is_name(source).then_some((source, name))
}

/// Checks a template name; `Err` says what is wrong with it.
///
/// # Errors
/// For empty or absolute names and names that climb out with `..`.
pub fn check_template_name(name: &str) -> Result<(), &'static str> {
    if name.trim().is_empty() {
        return Err("is empty");
    }
    if name.starts_with('/') || name.starts_with('\\') || Path::new(name).is_absolute() {
        return Err("is an absolute path");
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Err("climbs out of the template directory with `..`");
    }
    Ok(())
}
