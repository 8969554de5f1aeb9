//! `chimera merge`: a sweep's shards joined into one record.

use super::fail;
use crate::record::RunDir;
use crate::record::sweep::{
    CellRecord, CellStatus, Fingerprint, SweepManifest, cell_dir, read_cell, read_json,
};
use crate::record::sweep_summary::summarize_sweep;
use std::path::{Path, PathBuf};

/// Seeds the bootstrap of the tie test, as a sweep run does.
const SEED: u64 = 1;

/// A finished cell found in one of the shards.
struct Found {
    shard_dir: PathBuf,
    record: CellRecord,
}

pub(super) fn merge(
    dirs: &[PathBuf],
    out: &Path,
    allow_missing: bool,
    json: bool,
) -> Result<(), u8> {
    let mut manifests: Vec<(PathBuf, SweepManifest)> = Vec::new();
    for dir in dirs {
        let file = dir.join("sweep.json");
        let manifest: SweepManifest = read_json(&file).map_err(|e| {
            fail(2, &format!("error: {} is not a sweep's directory: cannot read sweep.json ({e})\n  = help: pass the `--out` directories of `chimera run <sweep> --shard K/N`", dir.display()))
        })?;
        if manifest.format != crate::record::sweep::FORMAT {
            return Err(fail(
                2,
                &format!(
                    "error: {} has record format {}; this chimera merges format {}",
                    file.display(),
                    manifest.format,
                    crate::record::sweep::FORMAT
                ),
            ));
        }
        if let Some((first_file, first)) = manifests.first()
            && first.workflow_sha256 != manifest.workflow_sha256
        {
            return Err(fail(
                2,
                &format!(
                    "error: cannot merge: {} ran {} (sha256 {}), and {} ran {} (sha256 {})\n  = help: shards of one sweep must run one workflow file; run the shards again from the same file",
                    file.display(),
                    manifest.workflow_file.display(),
                    &manifest.workflow_sha256[..12.min(manifest.workflow_sha256.len())],
                    first_file.display(),
                    first.workflow_file.display(),
                    &first.workflow_sha256[..12.min(first.workflow_sha256.len())],
                ),
            ));
        }
        manifests.push((file, manifest));
    }
    // Cells by key; a key finished in two shards keeps the first that ended ok.
    let mut found: Vec<Found> = Vec::new();
    let mut reference: Option<(PathBuf, Fingerprint)> = None;
    let mut duplicates = Vec::new();
    for (dir, (_, manifest)) in dirs.iter().zip(&manifests) {
        for planned in &manifest.cells {
            let Some(record) =
                read_cell(dir, &planned.key).filter(|r| r.status != CellStatus::Interrupted)
            else {
                continue;
            };
            let cell_file = cell_dir(dir, &planned.key).join("cell.json");
            match &reference {
                None => reference = Some((cell_file.clone(), record.fingerprint.clone())),
                Some((ref_file, fingerprint)) => {
                    let conflicts = fingerprint.conflicts(&record.fingerprint);
                    if !conflicts.is_empty() {
                        let list: Vec<String> =
                            conflicts.iter().map(|c| format!("  - {c}")).collect();
                        return Err(fail(
                            2,
                            &format!(
                                "error: cannot merge: {} and {} ran from different sources:\n{}\n  = help: every shard must run the same workflow, templates and plugins; run the differing shard again",
                                ref_file.display(),
                                cell_file.display(),
                                list.join("\n")
                            ),
                        ));
                    }
                }
            }
            match found.iter_mut().find(|f| f.record.key == record.key) {
                Some(existing) => {
                    duplicates.push(format!(
                        "`{}` in {} and {}",
                        record.key,
                        existing.shard_dir.display(),
                        dir.display()
                    ));
                    if existing.record.status != CellStatus::Ok && record.status == CellStatus::Ok {
                        *existing = Found {
                            shard_dir: dir.clone(),
                            record,
                        };
                    }
                }
                None => found.push(Found {
                    shard_dir: dir.clone(),
                    record,
                }),
            }
        }
    }
    let (_, first) = &manifests[0];
    prepare_out(out, dirs)?;
    let root = RunDir::at(out.to_path_buf())
        .map_err(|e| fail(1, &format!("error: cannot create {}: {e}", out.display())))?;
    let record_error = |e: std::io::Error| {
        fail(
            1,
            &format!(
                "error: cannot write the merged record in {}: {e}",
                out.display()
            ),
        )
    };
    for f in &found {
        let to = cell_dir(out, &f.record.key);
        if to.exists() {
            std::fs::remove_dir_all(&to).map_err(record_error)?;
        }
        copy_dir(&cell_dir(&f.shard_dir, &f.record.key), &to).map_err(record_error)?;
    }
    let merged = SweepManifest {
        shard: None,
        assigned: first.cells.iter().map(|c| c.key.clone()).collect(),
        merged_from: dirs
            .iter()
            .map(|d| std::path::absolute(d).unwrap_or(d.clone()))
            .collect(),
        ..first.clone()
    };
    root.write_json("sweep.json", &merged)
        .map_err(record_error)?;
    let summary = summarize_sweep(out, &merged, SEED, None).map_err(record_error)?;
    let md = summary.write(&root).map_err(record_error)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        println!("{}", md.trim_end());
        println!("record: {}", out.display());
    }
    for d in &duplicates {
        eprintln!("note: cell {d}; kept one");
    }
    if summary.missing.is_empty() || allow_missing {
        Ok(())
    } else {
        eprintln!(
            "error: {} of {} no finished record in any shard: {}\n  = help: run the missing cells (the same `chimera run … --out DIR` skips finished ones) and merge again, or pass `--allow-missing`",
            summary.missing.len(),
            match first.cells.len() {
                1 => "1 cell has".to_owned(),
                n => format!("{n} cells have"),
            },
            summary
                .missing
                .iter()
                .map(|m| format!("`{}`", m.key))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Err(1)
    }
}

/// `--out` must be new, empty, or an earlier merge (whose cells are
/// replaced): never one of the shards, and never a directory of something
/// else.
fn prepare_out(out: &Path, dirs: &[PathBuf]) -> Result<(), u8> {
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if let Some(d) = dirs.iter().find(|d| same(d, out)) {
        return Err(fail(
            2,
            &format!(
                "error: `--out {}` is one of the shards being merged ({})\n  = help: merge into a new directory",
                out.display(),
                d.display()
            ),
        ));
    }
    let earlier: Option<SweepManifest> = read_json(&out.join("sweep.json")).ok();
    match earlier {
        Some(m) if !m.merged_from.is_empty() => {
            let cells = out.join("cells");
            if cells.exists() {
                std::fs::remove_dir_all(&cells).map_err(|e| {
                    fail(
                        1,
                        &format!(
                            "error: cannot replace the earlier merge's cells in {}: {e}",
                            cells.display()
                        ),
                    )
                })?;
            }
            Ok(())
        }
        _ if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) => Err(fail(
            2,
            &format!(
                "error: `--out {}` exists and is not an earlier merge\n  = help: merge into a new directory (or an earlier merge's, which is replaced)",
                out.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// Copies a directory tree (files and directories; the record has no links).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
