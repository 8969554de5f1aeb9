//! `chimera.lock`, beside the workflows it pins: for each workflow file,
//! the commit each source resolved to and the SHA-256 of every template and
//! plugin it uses. `chimera lock` writes a workflow's entry; `chimera run
//! --locked` refuses a run whose sources or files no longer match it.

use super::SourceRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The lock file's name, in the workflow's directory.
pub const FILE: &str = "chimera.lock";

/// The format this chimera writes and reads.
const VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    pub version: u32,
    #[serde(default)]
    pub workflow: Vec<WorkflowLock>,
}

/// One workflow's pins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowLock {
    /// The workflow's file name (in the lock file's directory).
    pub file: String,
    /// Each source as it resolved, by name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceRecord>,
    /// Each template used (as the workflow names it) → its SHA-256.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// Each plugin used (the `plugin:` value) → the component's SHA-256.
    #[serde(default)]
    pub plugins: BTreeMap<String, String>,
}

/// Why the lock file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}:{line}:{column}: {message}\n  = help: `chimera lock <workflow>` writes this file; fix the line, or delete the file and lock again",
        path.display()
    )]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// The lock file for the workflow at `workflow`.
pub fn path_for(workflow: &Path) -> PathBuf {
    workflow
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(FILE)
}

/// The workflow's key in the lock file: its file name.
pub fn key_for(workflow: &Path) -> String {
    workflow
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

impl LockFile {
    /// The lock file at `path`; `None` when there is none.
    ///
    /// # Errors
    /// When it cannot be read or does not parse (with its line and column).
    pub fn read(path: &Path) -> Result<Option<Self>, LockError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LockError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let parsed: Self = toml::from_str(&text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            let before = &text[..at.min(text.len())];
            LockError::Parse {
                path: path.to_path_buf(),
                line: before.matches('\n').count() + 1,
                column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
                message: e.message().to_owned(),
            }
        })?;
        if parsed.version != VERSION {
            return Err(LockError::Parse {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                message: format!(
                    "`version = {}`: this chimera reads lock files of version {VERSION}",
                    parsed.version
                ),
            });
        }
        Ok(Some(parsed))
    }

    /// The entry of the workflow file `key`.
    pub fn entry(&self, key: &str) -> Option<&WorkflowLock> {
        self.workflow.iter().find(|w| w.file == key)
    }

    /// Sets (adds or replaces) an entry, keeping the entries sorted by file.
    pub fn set(&mut self, entry: WorkflowLock) {
        self.workflow.retain(|w| w.file != entry.file);
        self.workflow.push(entry);
        self.workflow.sort_by(|a, b| a.file.cmp(&b.file));
    }

    /// Writes the file atomically.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let body = toml::to_string_pretty(self).map_err(std::io::Error::other)?;
        let text = format!(
            "# Written by `chimera lock`: the sources and files each workflow here uses,\n# pinned. `chimera run --locked` refuses a run that does not match.\n\n{body}"
        );
        crate::files::write_atomically(path, text.as_bytes())
    }
}

impl Default for LockFile {
    fn default() -> Self {
        Self {
            version: VERSION,
            workflow: Vec::new(),
        }
    }
}

/// How `now` differs from `locked`, one line each, sources first.
pub fn mismatches(locked: &WorkflowLock, now: &WorkflowLock) -> Vec<String> {
    let mut out = Vec::new();
    let short = |c: &Option<String>| {
        c.as_deref()
            .map_or_else(|| "n/a".to_owned(), |c| c[..12.min(c.len())].to_owned())
    };
    for (name, was) in &locked.sources {
        match now.sources.get(name) {
            None => out.push(format!(
                "source `{name}` is locked but no longer in the workflow"
            )),
            Some(is) if is.commit != was.commit => out.push(format!(
                "source `{name}` resolves to commit {} but chimera.lock pins {}",
                short(&is.commit),
                short(&was.commit)
            )),
            Some(is) if is != was => out.push(format!(
                "source `{name}` is declared differently from when it was locked"
            )),
            Some(_) => {}
        }
    }
    for name in now
        .sources
        .keys()
        .filter(|n| !locked.sources.contains_key(*n))
    {
        out.push(format!("source `{name}` is not in chimera.lock"));
    }
    for (what, a, b) in [
        ("template", &locked.templates, &now.templates),
        ("plugin", &locked.plugins, &now.plugins),
    ] {
        for (name, sha) in a {
            match b.get(name) {
                Some(now_sha) if now_sha != sha => out.push(format!(
                    "{what} `{name}` changed: its sha256 is {} but chimera.lock has {}",
                    &now_sha[..12.min(now_sha.len())],
                    &sha[..12.min(sha.len())]
                )),
                Some(_) => {}
                None => out.push(format!("{what} `{name}` is locked but no longer used")),
            }
        }
        for name in b.keys().filter(|n| !a.contains_key(*n)) {
            out.push(format!("{what} `{name}` is not in chimera.lock"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_round_trips_and_a_bad_one_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        assert_eq!(LockFile::read(&path).unwrap(), None);
        let mut lock = LockFile::default();
        let entry = WorkflowLock {
            file: "a.yaml".into(),
            sources: [(
                "team".to_owned(),
                SourceRecord {
                    dir: None,
                    git: Some("file:///r".into()),
                    rev: Some("v1".into()),
                    path: None,
                    commit: Some("abcdef".into()),
                },
            )]
            .into(),
            templates: [("team:personas/p.md.j2".to_owned(), "1234".to_owned())].into(),
            plugins: [("ingest".to_owned(), "5678".to_owned())].into(),
        };
        lock.set(entry.clone());
        lock.write(&path).unwrap();
        let read = LockFile::read(&path).unwrap().unwrap();
        assert_eq!(read.entry("a.yaml"), Some(&entry));
        assert!(mismatches(&entry, &entry).is_empty());
        let mut moved = entry.clone();
        moved.sources.get_mut("team").unwrap().commit = Some("999999".into());
        moved
            .templates
            .insert("team:personas/p.md.j2".into(), "4321".into());
        let found = mismatches(&entry, &moved);
        assert!(
            found[0].starts_with("source `team` resolves to commit 999999"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("template `team:personas/p.md.j2` changed"),
            "{found:?}"
        );

        std::fs::write(&path, "version = 1\n[[workflow]]\nfile = \n").unwrap();
        let err = LockFile::read(&path).unwrap_err().to_string();
        assert!(err.contains("chimera.lock:3:"), "{err}");
    }
}
