//! A stage's capabilities on the host side: its read grants resolved and
//! kept inside the input directory, its write grant made fresh inside the
//! run record, and what it left there.

use crate::plugin::{Grant, StageFailure};
use crate::record::WrittenFile;
use crate::workflow::{Agent, Stage};
use std::path::{Path, PathBuf};

/// Resolves a stage's grants to host directories, refusing any that lead
/// outside the input directory (through a symlink, say). Missing directories
/// are passed on by name only, so the plugin can report them.
pub(super) fn grants(input: &Path, stage: &Stage) -> Result<Vec<Grant>, StageFailure> {
    let root = input
        .canonicalize()
        .map_err(|e| StageFailure::Failed(format!("input directory {}: {e}", input.display())))?;
    let mut out = Vec::new();
    for name in &stage.read {
        let host = input.join(name);
        let Ok(real) = host.canonicalize() else {
            tracing::info!(stage = %stage.id, grant = %name, "granted directory does not exist; the plugin is told it is missing");
            out.push(Grant {
                host: None,
                guest: name.clone(),
            });
            continue;
        };
        if !real.starts_with(&root) {
            return Err(StageFailure::Failed(format!(
                "read grant `{name}` resolves to {} outside the input directory; grants cannot follow links out",
                real.display()
            )));
        }
        if !real.is_dir() {
            return Err(StageFailure::Failed(format!(
                "read grant `{name}` is not a directory"
            )));
        }
        out.push(Grant {
            host: Some(real),
            guest: name.clone(),
        });
    }
    Ok(out)
}

/// Makes the stage's writable directory, `files/<agent>/<stage>/` in the run
/// record, empty: a stage run again (by `--resume`) starts clean. Refused when
/// a part of that path is a link (planted to lead it outside the run).
pub(super) fn write_grant(
    run_dir: &Path,
    agent: &Agent,
    stage: &Stage,
) -> Result<Option<Grant>, StageFailure> {
    let Some(name) = &stage.write else {
        return Ok(None);
    };
    let mut host = run_dir.to_path_buf();
    let fail = |host: &Path, e: std::io::Error| {
        StageFailure::Failed(format!(
            "cannot prepare write grant `{name}` at {}: {e}",
            host.display()
        ))
    };
    for (i, part) in ["files", &agent.id, &stage.id].into_iter().enumerate() {
        host.push(part);
        match std::fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(StageFailure::Failed(format!(
                    "write grant `{name}`: {} is a link; grants cannot follow links out of the run directory",
                    host.display()
                )));
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(fail(&host, std::io::ErrorKind::NotADirectory.into()));
            }
            // The stage's own directory is emptied; its parents are shared.
            Ok(_) if i == 2 => {
                std::fs::remove_dir_all(&host).map_err(|e| fail(&host, e))?;
                std::fs::create_dir(&host).map_err(|e| fail(&host, e))?;
            }
            Ok(_) => {}
            Err(_) => std::fs::create_dir(&host).map_err(|e| fail(&host, e))?,
        }
    }
    Ok(Some(Grant {
        host: Some(host),
        guest: name.clone(),
    }))
}

/// What a stage left in its write grant, sorted, with paths relative to the
/// run directory.
pub(super) fn written_files(run_dir: &Path, written: &[(PathBuf, u64)]) -> Vec<WrittenFile> {
    let mut files: Vec<WrittenFile> = written
        .iter()
        .map(|(path, bytes)| WrittenFile {
            path: path
                .strip_prefix(run_dir)
                .unwrap_or(path)
                .to_string_lossy()
                .into_owned(),
            bytes: *bytes,
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}
