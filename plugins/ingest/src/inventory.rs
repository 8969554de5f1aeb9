//! Walking the granted roots and describing what is there.

use chimera_plugin::files::{self, Dir, Kind};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

/// One file found under a root.
#[derive(Debug, Clone)]
pub struct File {
    /// Guest path, e.g. `reports/gemma3/x.csv`.
    pub path: String,
    /// Lowercase extension, as configured.
    pub ext: String,
    pub bytes: u64,
    /// Seconds since the Unix epoch, when the host reports it.
    pub modified: Option<i64>,
}

/// A granted root and whether it was there.
#[derive(Debug, Clone, Serialize)]
pub struct Root {
    pub path: String,
    pub found: bool,
}

/// All files of the configured types under the roots, sorted by path.
#[derive(Debug, Default)]
pub struct Inventory {
    pub files: Vec<File>,
    pub roots: Vec<Root>,
    pub errors: Vec<Value>,
}

/// Walks every root in path order and hands each file of a wanted type to
/// `visit` while it is open; unreadable directories and files, and what
/// `visit` returns as an error, become `errors`.
pub fn scan(
    roots: &[String],
    extensions: &[String],
    mut visit: impl FnMut(&File, &files::File) -> Result<(), String>,
) -> Inventory {
    let wanted: Vec<String> = extensions
        .iter()
        .map(|e| e.trim_start_matches('.').to_lowercase())
        .collect();
    let mut inventory = Inventory::default();
    let mut opened = Vec::new();
    for root in roots {
        let dir = Dir::open(root).ok();
        inventory.roots.push(Root {
            path: root.clone(),
            found: dir.is_some(),
        });
        opened.extend(dir.map(|dir| (root, dir)));
    }
    // Files are visited in the order of their paths, across roots too.
    opened.sort_by(|a, b| a.0.cmp(b.0));
    let mut walk = Walk {
        wanted: &wanted,
        inventory: &mut inventory,
        visit: &mut visit,
    };
    for (root, dir) in &opened {
        walk.dir(root, dir);
    }
    inventory.files.sort_by(|a, b| a.path.cmp(&b.path));
    inventory
}

struct Walk<'a, V> {
    wanted: &'a [String],
    inventory: &'a mut Inventory,
    visit: &'a mut V,
}

impl<V: FnMut(&File, &files::File) -> Result<(), String>> Walk<'_, V> {
    fn dir(&mut self, path: &str, dir: &Dir) {
        // The listing gives each entry's type: no stat for directories or
        // for files of types nobody asked for.
        let mut entries = match dir.entries() {
            Ok(entries) => entries,
            Err(e) => return self.inventory.error(path, &e.to_string()),
        };
        // A directory sorts as `name/`, so the walk meets paths in order.
        entries.sort_by_cached_key(|e| match e.kind {
            Kind::Dir => format!("{}/", e.name),
            _ => e.name.clone(),
        });
        for entry in entries {
            let path = format!("{path}/{}", entry.name);
            match entry.kind {
                Kind::Dir => match dir.dir(&entry.name) {
                    Ok(sub) => self.dir(&path, &sub),
                    Err(e) => self.inventory.error(&path, &e.to_string()),
                },
                Kind::File => {
                    let ext = path
                        .rsplit_once('.')
                        .map(|(_, e)| e.to_lowercase())
                        .unwrap_or_default();
                    if self.wanted.contains(&ext) {
                        self.file(path, ext, dir, &entry.name);
                    }
                }
                Kind::Symlink | Kind::Other => {}
            }
        }
    }

    fn file(&mut self, path: String, ext: String, dir: &Dir, name: &str) {
        let opened = dir.file(name).and_then(|f| f.metadata().map(|m| (f, m)));
        let (handle, meta) = match opened {
            Ok(opened) => opened,
            Err(e) => return self.inventory.error(&path, &e.to_string()),
        };
        let modified = meta
            .modified
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        let file = File {
            path,
            ext,
            bytes: meta.len,
            modified,
        };
        if let Err(error) = (self.visit)(&file, &handle) {
            self.inventory.error(&file.path, &error);
        }
        self.inventory.files.push(file);
    }
}

/// How the summary names a type: `md` reads as MARKDOWN, others in capitals.
fn label(ext: &str) -> String {
    match ext {
        "md" | "markdown" => "MARKDOWN".into(),
        other => other.to_uppercase(),
    }
}

/// `2025-10-03 03:35:30 UTC`, the seed report's form; `@<seconds>` for a
/// time RFC 3339 cannot write (before 1970 or after 9999).
fn format_time(seconds: i64) -> String {
    let formatted = u64::try_from(seconds)
        .ok()
        .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        .and_then(|t| {
            let mut text = String::new();
            write!(text, "{}", humantime::format_rfc3339_seconds(t)).ok()?;
            Some(text.replacen('T', " ", 1).replacen('Z', " UTC", 1))
        });
    formatted.unwrap_or_else(|| format!("@{seconds}"))
}

impl Inventory {
    /// Notes a path that could not be read or parsed; the walk goes on.
    fn error(&mut self, path: &str, error: &str) {
        self.errors.push(json!({"path": path, "error": error}));
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    fn of_type<'a>(&'a self, ext: &'a str) -> impl Iterator<Item = &'a File> + 'a {
        let ext = ext.trim_start_matches('.').to_lowercase();
        self.files.iter().filter(move |f| f.ext == ext)
    }

    /// Per type, in the configured order: count, bytes, newest time, first paths.
    pub fn types(&self, extensions: &[String], list: usize) -> Vec<Value> {
        extensions
            .iter()
            .map(|ext| {
                let files: Vec<&File> = self.of_type(ext).collect();
                let latest = files.iter().filter_map(|f| f.modified).max();
                json!({
                    "type": ext.trim_start_matches('.').to_lowercase(),
                    "label": label(&ext.to_lowercase()),
                    "count": files.len(),
                    "bytes": files.iter().map(|f| f.bytes).sum::<u64>(),
                    "latest_modified": latest.map(format_time),
                    "latest_modified_unix": latest,
                    "first_paths": files.iter().take(list).map(|f| f.path.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect()
    }

    /// The text inventory, in the shape of the Chimera Agent A report.
    pub fn summary(&self, extensions: &[String], list: usize) -> String {
        let mut out = format!("Total files analyzed: {}\n", self.files.len());
        for ext in extensions {
            let files: Vec<&File> = self.of_type(ext).collect();
            out.push_str(&format!(
                "\n{} Files ({})\n",
                label(&ext.to_lowercase()),
                files.len()
            ));
            for file in files.iter().take(list) {
                out.push_str(&format!("  - {}\n", file.path));
            }
            if files.len() > list {
                out.push_str(&format!("  ... and {} more\n", files.len() - list));
            }
            if let Some(latest) = files.iter().filter_map(|f| f.modified).max() {
                out.push_str(&format!("  Latest modified: {}\n", format_time(latest)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn times_read_as_in_the_seed_report() {
        assert_eq!(format_time(1_759_462_530), "2025-10-03 03:35:30 UTC");
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(253_402_300_799), "9999-12-31 23:59:59 UTC");
    }

    #[test]
    fn times_rfc_3339_cannot_write_fall_back_to_seconds() {
        assert_eq!(format_time(-1), "@-1");
        assert_eq!(format_time(253_402_300_800), "@253402300800");
        assert_eq!(format_time(i64::MAX), format!("@{}", i64::MAX));
    }
}
