//! The size limit of a stage's `write:` directory: what it holds, and the
//! failure when it holds too much.

use super::Grant;
use std::path::{Path, PathBuf};

/// How many epoch ticks pass between checks of a stage's `write:` directory
/// size (10 ticks = 100 ms). Between checks a plugin can write at most what
/// the disk takes in that time plus one host call's data.
pub(super) const WRITE_CHECK_TICKS: u32 = 10;

/// A stage left more in its `write:` directory than its `write_limit:`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the plugin wrote more than its limit of {} MiB into `{guest}`; raise the stage's `write_limit:` if it needs more",
    .limit >> 20
)]
pub(super) struct WriteLimitExceeded {
    guest: String,
    pub(super) limit: u64,
}

impl WriteLimitExceeded {
    pub(super) fn new(grant: &Grant, limit: u64) -> Self {
        Self {
            guest: grant.guest.clone(),
            limit,
        }
    }
}

/// The regular files under `dir` and their sizes; links are not followed.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push((entry.path(), entry.metadata().map_or(0, |m| m.len())));
            }
        }
    }
    files
}

pub(super) fn bytes_under(dir: &Path) -> u64 {
    files_under(dir).iter().map(|(_, bytes)| bytes).sum()
}
