//! `chimera runs list|show|diff|tag|reindex`: the records under a runs
//! directory, found through its index (see `history`).

use super::fail;
use crate::history::{self, Entry, Filter, Index, Kind};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub(super) struct RunsCommand {
    /// The runs directory (where `chimera run` writes without `--out`).
    #[arg(long, global = true, value_name = "DIR", default_value = history::DEFAULT_ROOT, env = "CHIMERA_RUNS_DIR")]
    dir: PathBuf,
    #[command(subcommand)]
    command: RunsSub,
}

#[derive(Debug, Subcommand)]
enum RunsSub {
    /// The records, newest first: id, kind, workflow, status, start, how
    /// long it took, models and tags.
    List {
        /// Only records of this workflow (its `name:`).
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
        /// Only records that ended so: ok, failed, interrupted, unfinished
        /// (no end recorded: running, or killed) or incomplete (a sweep
        /// missing cells).
        #[arg(long, value_name = "STATUS", value_parser = ["ok", "failed", "interrupted", "unfinished", "incomplete"])]
        status: Option<String>,
        /// Only records of this kind: run, repeat, comparison or sweep.
        #[arg(long, value_name = "KIND", value_parser = ["run", "repeat", "comparison", "sweep"])]
        kind: Option<String>,
        /// Only records with this tag (repeat it: every one).
        #[arg(long, value_name = "TAG")]
        tag: Vec<String>,
        /// Only records started at or after: `2026-12-01` (UTC),
        /// `2026-12-01T10:00:00Z`, or a span before now (`12h`, `7d`).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only records started before (the same forms as `--since`).
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// At most this many (0: all). Default: 30 in the table, all with `--json`.
        #[arg(long, short = 'n', value_name = "N")]
        limit: Option<usize>,
        /// List what the index holds without looking at the directories
        /// (for a slow file system; a record written by an older chimera
        /// or copied in shows up only after a plain `list`).
        #[arg(long)]
        no_refresh: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One screen about a record: what ran, on which models, its timings
    /// and metrics. ID is a record's directory name, a unique part of one,
    /// a tag (the newest record with it), `latest` (or `latest~1`, the one
    /// before), or a path to a record directory.
    Show {
        id: String,
        /// Print the record's index entry as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Two records side by side: what changed (model options first, then
    /// models, workflow, templates, plugins, chimera, machine), and every
    /// timing and metric, with the comparison's statistics (interval of the
    /// ratio, p, verdict) when both are repeated runs. A is the baseline.
    Diff {
        a: String,
        b: String,
        /// Count cold calls (the first after a model load).
        #[arg(long)]
        include_cold: bool,
        /// Seed of the bootstrap (repeated runs).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Add tags to a record (kept in its `tags.json`), or remove them.
    Tag {
        id: String,
        #[arg(required = true, value_name = "TAG")]
        tags: Vec<String>,
        /// Remove these tags instead.
        #[arg(long)]
        remove: bool,
    },
    /// Rebuild the index from the record directories. Never needed for
    /// correctness (a missing, damaged or stale index is rebuilt or brought
    /// up to date on its own); it says how many records it found.
    Reindex,
}

pub(super) fn runs(cmd: RunsCommand) -> Result<(), u8> {
    let root = cmd.dir;
    if !root.is_dir() {
        let named_by_path = match &cmd.command {
            RunsSub::Show { id, .. } => Path::new(id).is_dir(),
            RunsSub::Diff { a, b, .. } => Path::new(a).is_dir() && Path::new(b).is_dir(),
            _ => false,
        };
        if !named_by_path {
            return Err(fail(
                2,
                &format!(
                    "error: no runs directory `{}`\n  = help: `chimera run` writes its records to `runs/` in the directory it runs in; `--dir DIR` (or CHIMERA_RUNS_DIR) looks elsewhere",
                    root.display()
                ),
            ));
        }
    }
    match cmd.command {
        RunsSub::List {
            workflow,
            status,
            kind,
            tag,
            since,
            until,
            limit,
            no_refresh,
            json,
        } => {
            let now = jiff::Timestamp::now();
            let when = |t: Option<String>| {
                t.map(|t| history::parse_when(&t, now))
                    .transpose()
                    .map_err(|e| fail(2, &format!("error: {e}")))
            };
            for t in &tag {
                history::tags::check(t).map_err(|e| fail(2, &format!("error: {e}")))?;
            }
            let filter = Filter {
                workflow,
                status,
                kind: kind.as_deref().and_then(Kind::parse),
                tags: tag,
                since_ms: when(since)?,
                until_ms: when(until)?,
                limit: match (limit, json) {
                    (Some(0), _) | (None, true) => None,
                    (Some(n), _) => Some(n),
                    (None, false) => Some(30),
                },
            };
            let index = if no_refresh {
                let (index, rebuilt) = Index::open(&root).map_err(index_error)?;
                warn_rebuilt(&root, rebuilt);
                index
            } else {
                open(&root)?
            };
            let (entries, total) = index.list(&filter).map_err(index_error)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&entries).unwrap_or_default()
                );
            } else {
                print!("{}", table(&entries));
                if entries.is_empty() {
                    eprintln!(
                        "no records{} in `{}`",
                        if total == 0 { "" } else { " match" },
                        root.display()
                    );
                } else if entries.len() < total {
                    eprintln!(
                        "{} of {} in `{}`, newest first; `--limit 0` lists all",
                        entries.len(),
                        total,
                        root.display()
                    );
                }
            }
            Ok(())
        }
        RunsSub::Show { id, json } => {
            let (dir, entry) = find(&root, &id)?;
            if json {
                let mut value = serde_json::to_value(&entry).unwrap_or_default();
                value["dir"] = dir.display().to_string().into();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
                return Ok(());
            }
            let text =
                history::show::show(&dir, &entry).map_err(|e| fail(2, &format!("error: {e}")))?;
            print!("{text}");
            Ok(())
        }
        RunsSub::Diff {
            a,
            b,
            include_cold,
            seed,
        } => {
            let (dir_a, entry_a) = find(&root, &a)?;
            let (dir_b, entry_b) = find(&root, &b)?;
            let text = history::diff::diff(
                (&entry_a.id, &dir_a),
                (&entry_b.id, &dir_b),
                include_cold,
                seed,
            )
            .map_err(|e| fail(2, &format!("error: {e}")))?;
            print!("{text}");
            Ok(())
        }
        RunsSub::Tag { id, tags, remove } => {
            for t in &tags {
                history::tags::check(t).map_err(|e| fail(2, &format!("error: {e}")))?;
            }
            let mut index = open(&root)?;
            let id = resolve(&index, &id)?;
            let (add, drop) = if remove {
                (Vec::new(), tags)
            } else {
                (tags, Vec::new())
            };
            let now = index.retag(&id, &add, &drop).map_err(index_error)?;
            println!(
                "{id}: {}",
                if now.is_empty() {
                    "no tags".to_owned()
                } else {
                    now.join(", ")
                }
            );
            Ok(())
        }
        RunsSub::Reindex => {
            Index::remove(&root);
            let (index, synced, _) = Index::open_synced(&root).map_err(index_error)?;
            let records = index.ids().map_err(index_error)?.len();
            println!(
                "{} in `{}` ({} read)",
                crate::words::plural(records, "record"),
                root.display(),
                crate::words::plural(synced.read, "directory")
            );
            Ok(())
        }
    }
}

fn index_error(e: history::IndexError) -> u8 {
    fail(1, &format!("error: {e}"))
}

/// The index of `root`, up to date with its directories; says so when it
/// had to be rebuilt.
fn open(root: &Path) -> Result<Index, u8> {
    let (index, _, rebuilt) = Index::open_synced(root).map_err(index_error)?;
    warn_rebuilt(root, rebuilt);
    Ok(index)
}

fn warn_rebuilt(root: &Path, rebuilt: Option<String>) {
    if let Some(why) = rebuilt {
        eprintln!(
            "warning: the run index `{}` was damaged ({why}); rebuilt it from the record directories",
            Index::path_in(root).display()
        );
    }
}

fn resolve(index: &Index, query: &str) -> Result<String, u8> {
    let ids = index.ids().map_err(index_error)?;
    history::resolve(query, &ids, index.root()).map_err(|e| {
        fail(
            2,
            &format!("error: {e}\n  = help: `chimera runs list` shows the records; name one by its id, a unique part of it, a tag, `latest` or a path"),
        )
    })
}

/// The directory and entry a command-line name means: a path to a record
/// directory, or a record of `root`.
fn find(root: &Path, query: &str) -> Result<(PathBuf, Entry), u8> {
    let path = Path::new(query);
    if path.is_dir() && (query.contains('/') || !root.join(query).is_dir()) {
        let id = path
            .file_name()
            .map_or_else(|| query.to_owned(), |n| n.to_string_lossy().into_owned());
        return Ok((path.to_path_buf(), history::entry::read(path, &id)));
    }
    let index = open(root)?;
    let id = resolve(&index, query)?;
    let entry = index
        .get(&id)
        .map_err(index_error)?
        .unwrap_or_else(|| history::entry::read(&root.join(&id), &id));
    Ok((root.join(id), entry))
}

/// The list as aligned columns (nothing for no entries).
fn table(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let header = [
        "ID",
        "KIND",
        "WORKFLOW",
        "STATUS",
        "STARTED (UTC)",
        "TOOK",
        "MODEL",
        "TAGS",
    ]
    .map(String::from);
    let rows: Vec<[String; 8]> = entries
        .iter()
        .map(|e| {
            let model = match e.models.as_slice() {
                [] => "n/a".to_owned(),
                [one] => one.clone(),
                [first, rest @ ..] => format!("{first} +{}", rest.len()),
            };
            [
                e.id.clone(),
                e.kind.as_str().to_owned(),
                e.workflow.clone().unwrap_or_else(|| "n/a".into()),
                e.status.clone(),
                e.started_at
                    .as_deref()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .map_or_else(
                        || "n/a".into(),
                        |t| t.strftime("%Y-%m-%d %H:%M").to_string(),
                    ),
                e.took_ms.map_or_else(|| "n/a".into(), history::took),
                model,
                e.tags.join(","),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
