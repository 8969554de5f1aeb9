//! Reading the granted directories with one WASI call per step.
//!
//! `std::fs` works on the grants too, but each of its calls goes through
//! wasi-libc and the preview-1 adapter and becomes several host calls:
//! `fs::read` opens, stats three times and reads twice, and
//! `DirEntry::metadata` looks the path up twice. The types here call
//! `wasi:filesystem` directly: listing a directory gives each entry's kind,
//! opening a file is one call, its size and time one more, its bytes one
//! more per 64 KiB. The sandbox is the same: only what the stage's `read:` and
//! `write:` grants name can be opened, and symlinks are not followed.
//!
//! ```ignore
//! use chimera_plugin::files::{Dir, Kind};
//!
//! let dir = Dir::open("reports")?;
//! for entry in dir.entries()? {
//!     if entry.kind == Kind::File {
//!         let file = dir.file(&entry.name)?;
//!         let len = file.metadata()?.len;
//!         let bytes = file.read(len)?;
//!     }
//! }
//! ```

use std::io;
use std::time::{Duration, SystemTime};
use wasip2::filesystem::preopens;
use wasip2::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, OpenFlags, PathFlags,
};

/// What a directory entry is. Symlinks are reported, never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One name in a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
}

/// A file's size and last modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// Size in bytes.
    pub len: u64,
    /// When the host reports it.
    pub modified: Option<SystemTime>,
}

/// An open directory inside a grant.
#[derive(Debug)]
pub struct Dir {
    descriptor: Descriptor,
}

/// An open file inside a grant, for reading.
#[derive(Debug)]
pub struct File {
    descriptor: Descriptor,
}

impl Dir {
    /// Opens `path`: a granted directory as the workflow names it
    /// (`reports`), or a directory under one (`reports/gemma3`).
    pub fn open(path: &str) -> io::Result<Dir> {
        let path = path.trim_end_matches('/');
        let (root, rest) = preopens::get_directories()
            .into_iter()
            .filter_map(|(descriptor, name)| {
                let rest = path.strip_prefix(name.trim_end_matches('/'))?;
                (rest.is_empty() || rest.starts_with('/'))
                    .then(|| (descriptor, rest.trim_start_matches('/').to_owned()))
            })
            // The most specific grant wins, as in wasi-libc.
            .min_by_key(|(_, rest)| rest.len())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("`{path}` is not under a directory the stage was granted"),
                )
            })?;
        if rest.is_empty() {
            return Ok(Dir { descriptor: root });
        }
        Dir { descriptor: root }.dir(&rest)
    }

    /// The directory's entries, sorted by name, without `.` and `..`.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let stream = self.descriptor.read_directory().map_err(error)?;
        let mut entries = Vec::new();
        while let Some(entry) = stream.read_directory_entry().map_err(error)? {
            let kind = match entry.type_ {
                DescriptorType::RegularFile => Kind::File,
                DescriptorType::Directory => Kind::Dir,
                DescriptorType::SymbolicLink => Kind::Symlink,
                _ => Kind::Other,
            };
            entries.push(Entry {
                name: entry.name,
                kind,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Opens the directory `name` (a relative path) under this one.
    pub fn dir(&self, name: &str) -> io::Result<Dir> {
        self.open_at(name, OpenFlags::DIRECTORY)
            .map(|descriptor| Dir { descriptor })
    }

    /// Opens the file `name` (a relative path) under this one for reading.
    pub fn file(&self, name: &str) -> io::Result<File> {
        self.open_at(name, OpenFlags::empty())
            .map(|descriptor| File { descriptor })
    }

    fn open_at(&self, name: &str, flags: OpenFlags) -> io::Result<Descriptor> {
        self.descriptor
            .open_at(PathFlags::empty(), name, flags, DescriptorFlags::READ)
            .map_err(error)
    }
}

impl File {
    /// The file's size and modification time.
    pub fn metadata(&self) -> io::Result<Metadata> {
        let stat = self.descriptor.stat().map_err(error)?;
        let modified = stat
            .data_modification_timestamp
            .map(|t| SystemTime::UNIX_EPOCH + Duration::new(t.seconds, t.nanoseconds));
        Ok(Metadata {
            len: stat.size,
            modified,
        })
    }

    /// The whole file. `len` is the size it is expected to have (from
    /// [`File::metadata`]); the read goes on while the host returns bytes
    /// and stops at the end of the file or, past `len`, at a short read.
    pub fn read(&self, len: u64) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        loop {
            let have = bytes.len() as u64;
            // One byte more than expected, so that a file of the expected
            // size ends with one short read. The host caps each read (64 KiB
            // in wasmtime), so a short read before `len` is not the end.
            let want = if have < len {
                len - have + 1
            } else {
                64 * 1024
            };
            let (chunk, end) = self.descriptor.read(want, have).map_err(error)?;
            if chunk.is_empty() {
                return Ok(bytes);
            }
            let short = (chunk.len() as u64) < want;
            bytes.extend_from_slice(&chunk);
            if end || (short && bytes.len() as u64 >= len) {
                return Ok(bytes);
            }
        }
    }
}

/// A WASI error code as an `io::Error` of the closest kind, naming the code.
fn error(code: ErrorCode) -> io::Error {
    let kind = match code {
        ErrorCode::NoEntry => io::ErrorKind::NotFound,
        ErrorCode::Access | ErrorCode::NotPermitted => io::ErrorKind::PermissionDenied,
        ErrorCode::IsDirectory => io::ErrorKind::IsADirectory,
        ErrorCode::NotDirectory => io::ErrorKind::NotADirectory,
        ErrorCode::Exist => io::ErrorKind::AlreadyExists,
        ErrorCode::Invalid => io::ErrorKind::InvalidInput,
        ErrorCode::IllegalByteSequence => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::Other,
    };
    let message = match kind {
        io::ErrorKind::Other => format!("wasi error `{}`", code.name()),
        kind => format!("{kind} (`{}`)", code.name()),
    };
    io::Error::new(kind, message)
}
