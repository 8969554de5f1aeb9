//! `chimera lock <workflow>` and `chimera run --locked`: pinning a
//! workflow's sources and files in `chimera.lock`, and holding a run to it.

use super::fail;
use super::prepare::{Checked, prepare};
use crate::record::provenance::LockRef;
use crate::sources::lock::{self, LockFile};
use std::path::Path;

fn lock_error(e: &lock::LockError) -> u8 {
    fail(2, &format!("error: {e}"))
}

/// Writes (or updates) the workflow's entry in `chimera.lock` beside it.
pub(super) async fn write(workflow: &Path) -> Result<(), u8> {
    let host = super::host()?;
    let checked = prepare(workflow, &host, None, None).await?;
    let entry = checked.lock_entry()?;
    let path = lock::path_for(workflow);
    let mut file = LockFile::read(&path)
        .map_err(|e| lock_error(&e))?
        .unwrap_or_default();
    let before = file.entry(&entry.file).cloned();
    let changes = before
        .as_ref()
        .map(|b| lock::mismatches(b, &entry))
        .unwrap_or_default();
    let summary = format!(
        "{}, {}, {}",
        crate::words::plural(entry.sources.len(), "source"),
        crate::words::plural(entry.templates.len(), "template"),
        crate::words::plural(entry.plugins.len(), "plugin")
    );
    let sources: Vec<String> = entry
        .sources
        .iter()
        .map(|(name, s)| match &s.commit {
            Some(c) => format!("{name} at {}", &c[..12.min(c.len())]),
            None => format!("{name} (directory)"),
        })
        .collect();
    file.set(entry);
    file.write(&path)
        .map_err(|e| fail(1, &format!("error: cannot write {}: {e}", path.display())))?;
    for change in &changes {
        println!("  updated: {change}");
    }
    println!(
        "{}: {summary}{}{}",
        path.display(),
        if sources.is_empty() { "" } else { "; " },
        sources.join(", ")
    );
    Ok(())
}

/// Refuses `checked` unless `chimera.lock` pins exactly what it resolved
/// to; what the run's provenance keeps of the lock.
pub(super) fn check(checked: &Checked) -> Result<LockRef, u8> {
    let path = lock::path_for(&checked.workflow.path);
    let key = lock::key_for(&checked.workflow.path);
    let help_lock = format!(
        "run `chimera lock {}` to pin what it uses now",
        checked.workflow.path.display()
    );
    let Some(file) = LockFile::read(&path).map_err(|e| lock_error(&e))? else {
        return Err(fail(
            2,
            &format!(
                "error: `--locked`, and there is no {} beside the workflow\n  = help: {help_lock}",
                path.display()
            ),
        ));
    };
    let Some(locked) = file.entry(&key) else {
        return Err(fail(
            2,
            &format!(
                "error: {} has no entry for `{key}`\n  = help: {help_lock}",
                path.display()
            ),
        ));
    };
    let found = lock::mismatches(locked, &checked.lock_entry()?);
    if !found.is_empty() {
        let list: Vec<String> = found.iter().map(|m| format!("  - {m}")).collect();
        return Err(fail(
            2,
            &format!(
                "error: `{}` no longer matches {}:\n{}\n  = help: if the change is wanted, {help_lock}; if not, restore what changed",
                checked.workflow.path.display(),
                path.display(),
                list.join("\n")
            ),
        ));
    }
    let sha256 = crate::digest::sha256_file(&path)
        .map_err(|e| fail(2, &format!("error: cannot read {}: {e}", path.display())))?;
    Ok(LockRef {
        file: std::path::absolute(&path).unwrap_or(path),
        sha256,
    })
}
