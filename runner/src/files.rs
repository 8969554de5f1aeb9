//! Writing a file so that a reader, or a process that dies mid-write, sees
//! the old file or the new one, never a torn one.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename (creating the directory). No fsync: the rename alone keeps
/// the file whole if the process dies; surviving power loss is not worth an
/// fsync per record file.
///
/// # Errors
/// On I/O failure.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
