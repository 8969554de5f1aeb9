//! Walking the granted roots and describing what is there.

use serde::Serialize;
use serde_json::{Value, json};
use std::fs;
use std::time::UNIX_EPOCH;

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

/// Walks every root; unreadable directories and files become `errors`.
pub fn scan(roots: &[String], extensions: &[String]) -> Inventory {
    let wanted: Vec<String> = extensions
        .iter()
        .map(|e| e.trim_start_matches('.').to_lowercase())
        .collect();
    let mut inventory = Inventory::default();
    for root in roots {
        let found = fs::metadata(root).is_ok_and(|m| m.is_dir());
        inventory.roots.push(Root {
            path: root.clone(),
            found,
        });
        if found {
            walk(root, &wanted, &mut inventory);
        }
    }
    inventory.files.sort_by(|a, b| a.path.cmp(&b.path));
    inventory
}

fn walk(dir: &str, wanted: &[String], inventory: &mut Inventory) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return inventory.error(dir, &e),
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = format!("{dir}/{}", entry.file_name().to_string_lossy());
        // The entry's type comes with the directory listing: no stat for
        // directories or for files of types nobody asked for.
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(e) => {
                inventory.error(&path, &e);
                continue;
            }
        };
        if kind.is_dir() {
            walk(&path, wanted, inventory);
            continue;
        }
        let ext = path
            .rsplit_once('.')
            .map(|(_, e)| e.to_lowercase())
            .unwrap_or_default();
        if !kind.is_file() || !wanted.contains(&ext) {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) => {
                inventory.error(&path, &e);
                continue;
            }
        };
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        inventory.files.push(File {
            path,
            ext,
            bytes: meta.len(),
            modified,
        });
    }
}

/// How the summary names a type: `md` reads as MARKDOWN, others in capitals.
fn label(ext: &str) -> String {
    match ext {
        "md" | "markdown" => "MARKDOWN".into(),
        other => other.to_uppercase(),
    }
}

fn format_time(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| format!("@{seconds}"))
}

impl Inventory {
    /// Notes a path that could not be read; the walk goes on.
    fn error(&mut self, path: &str, error: &std::io::Error) {
        self.errors
            .push(json!({"path": path, "error": error.to_string()}));
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
