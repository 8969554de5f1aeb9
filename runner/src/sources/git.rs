//! Git sources through the system `git`: a bare mirror of each repository in
//! the cache, and one tree per commit beside it, exported with `git archive`
//! into a temporary directory and renamed into place — so the cache never
//! holds a partial checkout, and a commit once fetched needs no network
//! again. Each tree's marker keeps a digest of its files, checked whenever
//! the tree is used: a file edited in the cache is refused, not run.
//!
//! The system `git` rather than a library: it already speaks every transport
//! and credential helper the user has configured (SSH agents, tokens,
//! proxies), which is what reaching a team's private repository takes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What went wrong with a repository.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot fetch `{url}`: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("`{rev}` is not a commit or tag of `{url}`")]
    UnknownRev { url: String, rev: String },
    #[error(
        "the cached files of commit {} were changed after they were fetched (`{}`)",
        &commit[..12.min(commit.len())],
        tree.display()
    )]
    Changed { commit: String, tree: PathBuf },
    #[error("`git` could not run: {0}")]
    NoGit(String),
    #[error("cannot write the source cache `{}`: {source}", dir.display())]
    Cache {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The marker file of a finished tree: its commit and the digest of its
/// files, checked each time the tree is used.
const DONE: &str = ".chimera-source";

/// A digest of every file under `dir` but the marker: relative paths and
/// contents, in path order (BLAKE3).
fn tree_digest(dir: &Path) -> std::io::Result<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(&entry.path(), out)?;
            } else {
                out.push(entry.path());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    let mut hasher = blake3::Hasher::new();
    for file in files {
        let relative = file.strip_prefix(dir).unwrap_or(&file);
        if relative == Path::new(DONE) {
            continue;
        }
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update(&[0]);
        // A link is hashed as where it points, not followed.
        match std::fs::read_link(&file) {
            Ok(target) => hasher.update(target.to_string_lossy().as_bytes()),
            Err(_) => hasher.update(&std::fs::read(&file)?),
        };
        hasher.update(&[0]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Whether the finished tree at `tree` still holds what was exported:
/// `None` when it is not finished (no marker).
fn intact(tree: &Path) -> Option<bool> {
    let marker = std::fs::read_to_string(tree.join(DONE)).ok()?;
    let recorded = marker.lines().nth(1)?;
    Some(tree_digest(tree).is_ok_and(|d| d == recorded))
}

fn git() -> Command {
    let mut cmd = Command::new("git");
    // Never wait for a password on a terminal; fail instead.
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd`; its stdout, or its stderr's last line as the error.
fn output(cmd: &mut Command) -> Result<Result<String, String>, GitError> {
    let out = cmd.output().map_err(|e| GitError::NoGit(e.to_string()))?;
    if out.status.success() {
        Ok(Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("git failed")
            .trim()
            .to_owned();
        Ok(Err(line))
    }
}

/// A directory beside `target` to build it in, named so a crash leaves
/// something recognisable (and never mistaken for `target`).
fn scratch(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let salt = getrandom::u64().unwrap_or_default();
    target.with_file_name(format!(".tmp-{name}-{}-{salt:x}", std::process::id()))
}

/// The tree of `url` at `rev` in `cache`, fetching what is missing: its
/// directory and the full commit hash.
///
/// # Errors
/// When the repository cannot be reached (and is not cached), the revision
/// does not exist, or the cache cannot be written.
pub fn checkout(cache: &Path, url: &str, rev: &str) -> Result<(PathBuf, String), GitError> {
    let repo_dir = cache.join(&blake3::hash(url.as_bytes()).to_hex()[..16]);
    let mirror = repo_dir.join("mirror.git");
    let cache_err = |dir: &Path| {
        let dir = dir.to_path_buf();
        move |source| GitError::Cache { dir, source }
    };
    std::fs::create_dir_all(&repo_dir).map_err(cache_err(&repo_dir))?;
    if !mirror.join("HEAD").is_file() {
        let tmp = scratch(&mirror);
        let cloned = output(
            git()
                .args(["clone", "--mirror", "--quiet", "--"])
                .arg(url)
                .arg(&tmp),
        )?;
        if let Err(detail) = cloned {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(GitError::Unreachable {
                url: url.to_owned(),
                detail,
            });
        }
        if std::fs::rename(&tmp, &mirror).is_err() {
            // Another process cloned it first; theirs is as good.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    let commit = match rev_parse(&mirror, rev)? {
        Some(c) => c,
        None => {
            // Not here yet: a newer commit or tag upstream.
            let fetched = output(
                git()
                    .arg("--git-dir")
                    .arg(&mirror)
                    .args(["fetch", "--quiet", "--prune", "--tags", "origin"]),
            )?;
            if let Err(detail) = fetched {
                return Err(GitError::Unreachable {
                    url: url.to_owned(),
                    detail,
                });
            }
            rev_parse(&mirror, rev)?.ok_or_else(|| GitError::UnknownRev {
                url: url.to_owned(),
                rev: rev.to_owned(),
            })?
        }
    };
    let tree = repo_dir.join("trees").join(&commit);
    match intact(&tree) {
        Some(true) => return Ok((tree, commit)),
        Some(false) => return Err(GitError::Changed { commit, tree }),
        None => {}
    }
    let trees = repo_dir.join("trees");
    std::fs::create_dir_all(&trees).map_err(cache_err(&trees))?;
    let tmp = scratch(&tree);
    std::fs::create_dir_all(&tmp).map_err(cache_err(&tmp))?;
    let exported = export(&mirror, &commit, &tmp);
    let finished = exported.and_then(|()| {
        let digest = tree_digest(&tmp).map_err(cache_err(&tmp))?;
        std::fs::write(tmp.join(DONE), format!("{commit}\n{digest}\n")).map_err(cache_err(&tmp))
    });
    if let Err(e) = finished {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if tree.exists() {
        // A tree without its marker is a leftover of a crash before the
        // rename; one with it was made meanwhile by another process.
        if tree.join(DONE).is_file() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Ok((tree, commit));
        }
        std::fs::remove_dir_all(&tree).map_err(cache_err(&tree))?;
    }
    if std::fs::rename(&tmp, &tree).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if !tree.join(DONE).is_file() {
            return Err(GitError::Cache {
                dir: tree,
                source: std::io::Error::other("the finished tree could not be moved into place"),
            });
        }
    }
    Ok((tree, commit))
}

/// The full hash `rev` names in `mirror`, if it names a commit there.
fn rev_parse(mirror: &Path, rev: &str) -> Result<Option<String>, GitError> {
    Ok(output(
        git()
            .arg("--git-dir")
            .arg(mirror)
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{rev}^{{commit}}")),
    )?
    .ok())
}

/// Writes the files of `commit` into `dir` (`git archive | tar -x`).
fn export(mirror: &Path, commit: &str, dir: &Path) -> Result<(), GitError> {
    let mut archive = git()
        .arg("--git-dir")
        .arg(mirror)
        .args(["archive", "--format=tar", commit])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| GitError::NoGit(e.to_string()))?;
    let stdout = archive
        .stdout
        .take()
        .ok_or_else(|| GitError::NoGit("no output from git archive".into()))?;
    let untar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dir)
        .stdin(stdout)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| GitError::NoGit(format!("tar: {e}")))?;
    let archived = archive.wait().map_err(|e| GitError::NoGit(e.to_string()))?;
    if !archived.success() || !untar.status.success() {
        return Err(GitError::Cache {
            dir: dir.to_path_buf(),
            source: std::io::Error::other(format!(
                "exporting commit {commit} failed: {}",
                String::from_utf8_lossy(&untar.stderr).trim()
            )),
        });
    }
    Ok(())
}
