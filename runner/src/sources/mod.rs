//! A workflow's `sources:` made local: a directory as it is, a git
//! repository as the tree of its pinned commit in the cache ([`git`]); and
//! `chimera.lock`, which pins what they resolved to ([`lock`]).

pub mod git;
pub mod lock;

use crate::workflow::sources::Origin;
use crate::workflow::{Diagnostic, Workflow};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A source as it resolved: what the workflow said and the commit it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The full commit hash `rev` resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Where git sources are kept: `$CHIMERA_SOURCE_CACHE`, else the user's
/// cache directory (`~/.cache/chimera/sources` on Linux).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("CHIMERA_SOURCE_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("chimera").join("sources")))
        .unwrap_or_else(|| PathBuf::from(".chimera-sources"))
}

/// Makes every source of `workflow` local (fetching git sources into the
/// cache when they are not there yet), records each one's root in
/// `workflow.source_roots`, and returns what each resolved to, by name.
///
/// # Errors
/// One diagnostic per source that cannot be made local, at its position:
/// a directory that is missing, a repository that cannot be reached, a
/// revision it does not have, a `path:` it does not hold.
pub fn resolve(
    workflow: &mut Workflow,
    cache: &Path,
) -> Result<Vec<(String, SourceRecord)>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut records = Vec::new();
    let mut roots = Vec::new();
    for spec in &workflow.sources {
        match &spec.origin {
            Origin::Dir(dir) => {
                let root = workflow.dir.join(&dir.value);
                if !root.is_dir() {
                    problems.push(
                        Diagnostic::new(
                            format!(
                                "source `{}`: directory `{}` does not exist",
                                spec.name,
                                root.display()
                            ),
                            dir.pos,
                        )
                        .help("`dir:` is relative to the workflow's directory"),
                    );
                    continue;
                }
                roots.push((spec.name.clone(), root));
                records.push((
                    spec.name.clone(),
                    SourceRecord {
                        dir: Some(dir.value.clone()),
                        git: None,
                        rev: None,
                        path: None,
                        commit: None,
                    },
                ));
            }
            Origin::Git { url, rev, path } => {
                let (tree, commit) = match git::checkout(cache, &url.value, &rev.value) {
                    Ok(found) => found,
                    Err(e @ git::GitError::UnknownRev { .. }) => {
                        problems.push(
                            Diagnostic::new(format!("source `{}`: {e}", spec.name), rev.pos)
                                .help(format!("`git ls-remote {}` lists its tags and branches; pin a tag or a commit hash", url.value)),
                        );
                        continue;
                    }
                    Err(e @ git::GitError::Unreachable { .. }) => {
                        problems.push(
                            Diagnostic::new(format!("source `{}`: {e}", spec.name), url.pos)
                                .help("check the URL and that this machine can reach it (a source fetched once works offline from the cache)"),
                        );
                        continue;
                    }
                    Err(e) => {
                        problems.push(Diagnostic::new(
                            format!("source `{}`: {e}", spec.name),
                            url.pos,
                        ));
                        continue;
                    }
                };
                let root = match path {
                    Some(p) => {
                        let inside = tree.join(&p.value);
                        let contained = inside
                            .canonicalize()
                            .ok()
                            .zip(tree.canonicalize().ok())
                            .is_some_and(|(i, t)| i.starts_with(t) && i.is_dir());
                        if !contained {
                            problems.push(
                                Diagnostic::new(
                                    format!(
                                        "source `{}`: `{}` is not a directory of `{}` at {}",
                                        spec.name,
                                        p.value,
                                        url.value,
                                        &commit[..12.min(commit.len())]
                                    ),
                                    p.pos,
                                )
                                .help("`path:` is relative to the repository's root"),
                            );
                            continue;
                        }
                        inside
                    }
                    None => tree,
                };
                roots.push((spec.name.clone(), root));
                records.push((
                    spec.name.clone(),
                    SourceRecord {
                        dir: None,
                        git: Some(url.value.clone()),
                        rev: Some(rev.value.clone()),
                        path: path.as_ref().map(|p| p.value.clone()),
                        commit: Some(commit),
                    },
                ));
            }
        }
    }
    if problems.is_empty() {
        workflow.source_roots = roots;
        Ok(records)
    } else {
        Err(problems)
    }
}
