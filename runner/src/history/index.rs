//! The run index: an SQLite file in the runs directory with one row per
//! record directory, so `chimera runs list` answers without reading every
//! record. It is a cache and nothing more: every field is read from the
//! directories (tags from each record's `tags.json`), a row is trusted only
//! while its directory's modification time is the one it was read at, and
//! an index that is missing, damaged or from another version of this code
//! is rebuilt from the directories.
//!
//! Several chimera processes may write it at once (a sweep's shards on one
//! machine, a `runs tag` during a run): WAL lets readers go on while one
//! writes, every write is an `IMMEDIATE` transaction that waits its turn
//! (busy timeout) instead of failing, and a row is never replaced by one
//! read from an older state of its directory.

use super::entry::{self, Entry};
use super::tags;
use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The index's file name in the runs directory (with SQLite's `-wal` and
/// `-shm` beside it while in use).
pub const FILE: &str = ".chimera-index.sqlite";

/// What a row holds and how it is read; an index of another version is
/// emptied and filled again from the directories.
const VERSION: i64 = 1;

/// How long a write waits for another process's write to end.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    workflow TEXT,
    status TEXT NOT NULL,
    started_at TEXT,
    started_ms INTEGER,
    finished_at TEXT,
    took_ms REAL,
    runs INTEGER NOT NULL,
    models TEXT NOT NULL,
    tags TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_newest_first ON records (started_ms DESC, id DESC);
";

/// Why the index could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot read the runs directory `{}`: {source}", dir.display())]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the run index `{}` cannot be used: {source}\n  = help: it is only a cache of the record directories; delete it and it is rebuilt",
        path.display()
    )]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot write the tags of `{}`: {source}", dir.display())]
    Tags {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// What `sync` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    /// Rows read again from their directories (new or changed).
    pub read: usize,
    /// Rows whose directory is gone.
    pub removed: usize,
}

/// An open index over one runs directory.
pub struct Index {
    pub(super) conn: Connection,
    root: PathBuf,
    path: PathBuf,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("path", &self.path).finish()
    }
}

/// Whether an SQLite error means the file is not a usable index (damaged,
/// not a database, a schema this code does not know), as opposed to a
/// passing condition (busy) or a system error.
fn damaged(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.code,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase | ErrorCode::Unknown
        ),
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::InvalidColumnName(_)
        | rusqlite::Error::FromSqlConversionFailure(..) => true,
        _ => false,
    }
}

/// The error of an SQLite call on the index at `path`.
fn sqlite_at(path: &Path) -> impl Fn(rusqlite::Error) -> IndexError + '_ {
    move |source| IndexError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// A write transaction that waits its turn (busy timeout) up front, so it
/// never fails half-way for another process's write.
fn begin<'c>(
    conn: &'c mut Connection,
    path: &Path,
) -> Result<rusqlite::Transaction<'c>, IndexError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_at(path))
}

/// Whether `e` is another connection's lock that SQLite did not wait for:
/// its busy timeout covers transactions, but not the switch of a new file
/// to WAL, nor a reader meeting a closing connection's clean-up.
fn locked(e: &IndexError) -> bool {
    matches!(
        e,
        IndexError::Sqlite { source: rusqlite::Error::SqliteFailure(f, _), .. }
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Runs `f` again while it fails on a lock, for up to the busy timeout.
fn patiently<T>(mut f: impl FnMut() -> Result<T, IndexError>) -> Result<T, IndexError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Err(e) if locked(&e) && Instant::now() + pause < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

impl Index {
    /// Opens (or creates) the index of `root` and brings it up to date with
    /// the directories. An index that is damaged is deleted and rebuilt;
    /// the second value then says why.
    ///
    /// # Errors
    /// When the directory cannot be read, or the index cannot be opened or
    /// written even after a rebuild.
    pub fn open_synced(root: &Path) -> Result<(Self, Synced, Option<String>), IndexError> {
        let attempt = || {
            patiently(|| -> Result<(Self, Synced, Option<String>), IndexError> {
                let (mut index, rebuilt) = Self::open_once(root)?;
                let synced = index.sync()?;
                Ok((index, synced, rebuilt))
            })
        };
        match attempt() {
            Err(IndexError::Sqlite { source, .. }) if damaged(&source) => {
                Self::remove(root);
                let (index, synced, _) = attempt()?;
                Ok((index, synced, Some(source.to_string())))
            }
            other => other,
        }
    }

    /// Opens (or creates) the index of `root` without reading the
    /// directories; a damaged one is deleted and created anew (empty), and
    /// the second value says why.
    ///
    /// # Errors
    /// When the index cannot be opened or created.
    pub fn open(root: &Path) -> Result<(Self, Option<String>), IndexError> {
        patiently(|| Self::open_once(root))
    }

    fn open_once(root: &Path) -> Result<(Self, Option<String>), IndexError> {
        match Self::try_open(root) {
            Err(IndexError::Sqlite { source, .. }) if damaged(&source) => {
                Self::remove(root);
                Ok((Self::try_open(root)?, Some(source.to_string())))
            }
            other => other.map(|index| (index, None)),
        }
    }

    /// The index file of `root`.
    pub fn path_in(root: &Path) -> PathBuf {
        root.join(FILE)
    }

    /// Deletes the index of `root` (and SQLite's files beside it).
    pub fn remove(root: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = FILE.to_owned();
            name.push_str(suffix);
            let _ = std::fs::remove_file(root.join(name));
        }
    }

    fn try_open(root: &Path) -> Result<Self, IndexError> {
        let path = Self::path_in(root);
        let sqlite = sqlite_at(&path);
        std::fs::create_dir_all(root).map_err(|source| IndexError::Dir {
            dir: root.to_path_buf(),
            source,
        })?;
        let mut conn = Connection::open(&path).map_err(&sqlite)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&sqlite)?;
        // WAL: readers never wait for a writer; NORMAL sync is safe with WAL
        // (a power cut can lose the last commits, which a rebuild restores).
        // WAL is kept in the file: only the process that creates the index
        // switches it, so the others do not contend for the lock it takes.
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(&sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // A switch that cannot take its lock may answer with the old
            // mode instead of an error: that is a lock too, and waited out.
            let now: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .map_err(&sqlite)?;
            if !now.eq_ignore_ascii_case("wal") {
                return Err(sqlite(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some(format!("the index stayed in journal mode `{now}`, not WAL")),
                )));
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(&sqlite)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&sqlite)?;
        if version != VERSION {
            let tx = begin(&mut conn, &path)?;
            // Another process may have set it up while this one waited.
            let now: i64 = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(&sqlite)?;
            if now != VERSION {
                tx.execute_batch("DROP TABLE IF EXISTS records;")
                    .map_err(&sqlite)?;
                tx.execute_batch(SCHEMA).map_err(&sqlite)?;
                tx.pragma_update(None, "user_version", VERSION)
                    .map_err(&sqlite)?;
            }
            tx.commit().map_err(&sqlite)?;
        }
        drop(sqlite);
        Ok(Self {
            conn,
            root: root.to_path_buf(),
            path,
        })
    }

    pub(super) fn sqlite(&self, source: rusqlite::Error) -> IndexError {
        sqlite_at(&self.path)(source)
    }

    /// Reads again every directory that is new or changed since its row was
    /// read, and drops the rows of directories that are gone.
    ///
    /// # Errors
    /// When the directory cannot be listed or the index cannot be written.
    pub fn sync(&mut self) -> Result<Synced, IndexError> {
        let known: HashMap<String, i64> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id, mtime_ns FROM records")
                .map_err(|e| self.sqlite(e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(|e| self.sqlite(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))?
        };
        let listing = match std::fs::read_dir(&self.root) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Synced::default()),
            Err(source) => {
                return Err(IndexError::Dir {
                    dir: self.root.clone(),
                    source,
                });
            }
        };
        let mut seen = std::collections::HashSet::with_capacity(known.len());
        let mut fresh = Vec::new();
        for item in listing.filter_map(Result::ok) {
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let Ok(meta) = item.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            let mtime = mtime_ns(&meta);
            if known.get(&name) != Some(&mtime) {
                // The time first, then the files: what is read is at least
                // as new as the time it is stored with.
                fresh.push((entry::read(&item.path(), &name), mtime));
            }
            seen.insert(name);
        }
        let gone: Vec<&String> = known.keys().filter(|id| !seen.contains(*id)).collect();
        let synced = Synced {
            read: fresh.len(),
            removed: gone.len(),
        };
        if fresh.is_empty() && gone.is_empty() {
            return Ok(synced);
        }
        let err = sqlite_at(&self.path);
        let tx = begin(&mut self.conn, &self.path)?;
        for (entry, mtime) in &fresh {
            upsert(&tx, entry, *mtime).map_err(&err)?;
        }
        for id in gone {
            // Listed before this transaction: a directory made since (and
            // noted by its run) must keep its row.
            if !self.root.join(id).exists() {
                tx.execute("DELETE FROM records WHERE id = ?1", [id])
                    .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)?;
        Ok(synced)
    }

    /// Reads the record `id` again and stores it (after a run wrote it, or
    /// its tags changed).
    ///
    /// # Errors
    /// When the index cannot be written.
    pub fn note(&mut self, id: &str) -> Result<(), IndexError> {
        let err = sqlite_at(&self.path);
        let tx = begin(&mut self.conn, &self.path)?;
        let dir = self.root.join(id);
        if let Ok(meta) = std::fs::metadata(&dir) {
            upsert(&tx, &entry::read(&dir, id), mtime_ns(&meta)).map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// Adds and removes tags of record `id`: its `tags.json` first, then its
    /// row, in one write transaction so that two processes tagging the same
    /// record cannot lose each other's tags. The record's tags after.
    ///
    /// # Errors
    /// When `tags.json` cannot be read or written, or the index cannot be.
    pub fn retag(
        &mut self,
        id: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<Vec<String>, IndexError> {
        let dir = self.root.join(id);
        let tags_error = |source| IndexError::Tags {
            dir: dir.clone(),
            source,
        };
        let err = sqlite_at(&self.path);
        let tx = begin(&mut self.conn, &self.path)?;
        let mut now = tags::read(&dir).map_err(tags_error)?;
        now.retain(|t| !remove.contains(t));
        for tag in add {
            if !now.contains(tag) {
                now.push(tag.clone());
            }
        }
        tags::write(&dir, &now).map_err(tags_error)?;
        let meta = std::fs::metadata(&dir).map_err(tags_error)?;
        upsert(&tx, &entry::read(&dir, id), mtime_ns(&meta)).map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(now)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Stores `entry` unless the row already holds a newer read of the
/// directory (another process got there first with a later state).
fn upsert(conn: &Connection, entry: &Entry, mtime: i64) -> rusqlite::Result<()> {
    let list = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "INSERT INTO records (id, kind, workflow, status, started_at, started_ms, finished_at, \
                              took_ms, runs, models, tags, mtime_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (id) DO UPDATE SET
             kind = excluded.kind, workflow = excluded.workflow, status = excluded.status,
             started_at = excluded.started_at, started_ms = excluded.started_ms,
             finished_at = excluded.finished_at, took_ms = excluded.took_ms,
             runs = excluded.runs, models = excluded.models, tags = excluded.tags,
             mtime_ns = excluded.mtime_ns
         WHERE excluded.mtime_ns >= records.mtime_ns",
        params![
            entry.id,
            entry.kind.as_str(),
            entry.workflow,
            entry.status,
            entry.started_at,
            entry.started_ms(),
            entry.finished_at,
            entry.took_ms,
            entry.runs,
            list(&entry.models),
            list(&entry.tags),
            mtime,
        ],
    )?;
    Ok(())
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Filter, Kind};
    use crate::record::RunDir;
    use serde_json::{Value, json};

    fn write_run(dir: &RunDir, finished: bool) {
        let metrics = json!({
            "workflow": "wf",
            "status": "ok",
            "started_at": "2026-12-01T10:00:00Z",
            "finished_at": if finished { json!("2026-12-01T10:00:02Z") } else { Value::Null },
            "total_ms": 2000.0,
            "provenance": {"models": [{"name": "m", "backend": "ollama"}]}
        });
        dir.write_json("metrics.json", &metrics).unwrap();
    }

    #[test]
    fn a_changed_directory_is_read_again_and_a_gone_one_dropped() {
        let root = tempfile::tempdir().unwrap();
        let run = RunDir::at(root.path().join("r1")).unwrap();
        write_run(&run, false);
        std::fs::create_dir(root.path().join("not-a-record")).unwrap();
        let (mut index, synced, rebuilt) = Index::open_synced(root.path()).unwrap();
        assert_eq!((synced.read, rebuilt), (2, None));
        assert_eq!(index.get("r1").unwrap().unwrap().status, "unfinished");
        assert_eq!(
            index.list(&Filter::default()).unwrap().1,
            1,
            "`other` is not listed"
        );
        assert_eq!(index.sync().unwrap(), Synced::default(), "nothing changed");
        // The run ends: metrics.json is replaced (a rename: the directory changes).
        std::thread::sleep(Duration::from_millis(10));
        write_run(&run, true);
        assert_eq!(index.sync().unwrap().read, 1);
        let entry = index.get("r1").unwrap().unwrap();
        assert_eq!(entry.status, "ok");
        assert_eq!(entry.took_ms, Some(2000.0));
        assert_eq!(entry.models, ["m (ollama)"]);
        std::fs::remove_dir_all(run.path()).unwrap();
        assert_eq!(index.sync().unwrap().removed, 1);
        assert_eq!(index.get("r1").unwrap(), None);
    }

    #[test]
    fn an_older_read_of_a_directory_never_replaces_a_newer_one() {
        let root = tempfile::tempdir().unwrap();
        let (index, _) = Index::open(root.path()).unwrap();
        let entry = |status: &str| Entry {
            id: "r1".into(),
            kind: Kind::Run,
            workflow: Some("wf".into()),
            status: status.into(),
            started_at: None,
            finished_at: None,
            took_ms: None,
            runs: 1,
            models: Vec::new(),
            tags: Vec::new(),
        };
        upsert(&index.conn, &entry("ok"), 20).unwrap();
        upsert(&index.conn, &entry("unfinished"), 10).unwrap();
        assert_eq!(index.get("r1").unwrap().unwrap().status, "ok");
        upsert(&index.conn, &entry("failed"), 30).unwrap();
        assert_eq!(index.get("r1").unwrap().unwrap().status, "failed");
    }

    /// Processes that find no index create it at once (a sweep's shards
    /// ending together); SQLite's switch to WAL does not wait for a lock,
    /// so each must wait its turn rather than fail.
    #[test]
    fn openers_racing_to_create_the_index_all_get_it() {
        for _ in 0..30 {
            let root = tempfile::tempdir().unwrap();
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (start, root) = (std::sync::Arc::clone(&start), root.path().to_path_buf());
                    std::thread::spawn(move || {
                        start.wait();
                        Index::open_synced(&root).map(|_| ())
                    })
                })
                .collect();
            for opener in openers {
                opener.join().unwrap().unwrap();
            }
        }
    }
}
