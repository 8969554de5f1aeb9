//! The on-disk cache of compiled components.
//!
//! A cache file is named by a key over the component's bytes and the engine's
//! compatibility hash (wasmtime version and settings), and carries a seal: a
//! keyed BLAKE3 MAC over the key and the contents, under a secret made for
//! this cache directory on first use (`.seal-key`, mode 0600). A file Chimera
//! did not write — foreign, copied from another cache, truncated or tampered
//! with — fails the check and the component is compiled again; it is never
//! handed to the deserializer.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 16] = b"chimera-cwasm-v2";
const SEAL_KEY_FILE: &str = ".seal-key";
const HEADER: usize = MAGIC.len() + 32 + 32;

/// How a component came to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadKind {
    /// Already prepared earlier in this process.
    Memory,
    /// Deserialized from the on-disk cache.
    Cache,
    /// Compiled with Cranelift (and written to the cache).
    Compiled,
}

/// The compiled-component cache in one directory.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    /// The MAC key; `None` disables the cache (no directory, or no key could be made).
    seal_key: Option<[u8; 32]>,
}

/// Feeds `std::hash::Hash` output into SHA-256, for the engine's compatibility hash.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        unreachable!("only write() is used")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ComponentCache {
    /// A cache in `dir`; `None` disables caching.
    pub fn new(dir: Option<PathBuf>) -> Self {
        let seal_key = dir.as_deref().and_then(|d| match Self::seal_key(d) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "component cache disabled: no seal key");
                None
            }
        });
        let dir = if seal_key.is_some() { dir } else { None };
        Self { dir, seal_key }
    }

    /// Reads the directory's secret, or makes one (0600, created exclusively).
    fn seal_key(dir: &Path) -> std::io::Result<[u8; 32]> {
        let path = dir.join(SEAL_KEY_FILE);
        if let Ok(bytes) = std::fs::read(&path) {
            if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return Ok(key);
            }
            return Err(std::io::Error::other(format!(
                "{} is not a 32-byte key; delete it",
                path.display()
            )));
        }
        std::fs::create_dir_all(dir)?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        // NamedTempFile creates the file with mode 0600.
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(&key)?;
        match file.persist_noclobber(&path) {
            Ok(_) => Ok(key),
            // Another process made it first: use theirs.
            Err(_) => {
                let bytes = std::fs::read(&path)?;
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| std::io::Error::other("bad seal key"))
            }
        }
    }

    /// The default directory: `$CHIMERA_CACHE_DIR`, else the user cache dir.
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("CHIMERA_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("chimera").join("components")))
    }

    /// The cache key of `component_sha256` under `engine`.
    pub fn key(engine: &Engine, component_sha256: &[u8; 32]) -> [u8; 32] {
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.0.update(component_sha256);
        hasher.0.finalize().into()
    }

    fn path(&self, key: &[u8; 32]) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.cwasm", hex::encode(key))))
    }

    fn seal(secret: &[u8; 32], key: &[u8; 32], body: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(secret);
        h.update(MAGIC);
        h.update(key);
        h.update(body);
        h.finalize().into()
    }

    /// Loads the compiled component for `key`, or `None` when there is no
    /// valid cache file (absent, foreign, tampered, or for another engine).
    pub fn load(&self, engine: &Engine, key: &[u8; 32]) -> Option<Component> {
        let path = self.path(key)?;
        let secret = self.seal_key.as_ref()?;
        let file = std::fs::File::open(&path).ok()?;
        // Mapped rather than read: no heap buffer to fault in and fill.
        // SAFETY: the mapping is read-only and private to this function. A
        // cache file is never changed in place: `store` writes a new file and
        // renames it over the old, which leaves this mapping intact. Only a
        // writer with this user's rights to the file could change it under
        // the mapping, and such a writer could as well change the binary.
        #[allow(unsafe_code)]
        let bytes = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.ok()?;
        if let Some(body) = Self::verified_body(secret, &bytes, key) {
            // SAFETY: `body` is byte-for-byte what `store` wrote after
            // `Component::serialize` for this key (checked by the seal), so it
            // is a serialized component produced by this engine configuration;
            // `deserialize` copies it before the mapping goes away.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize(engine, body) };
            match loaded {
                Ok(component) => return Some(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cache entry rejected by wasmtime; recompiling")
                }
            }
        } else {
            tracing::warn!(path = %path.display(), "cache entry failed its integrity check; recompiling");
        }
        None
    }

    fn verified_body<'a>(secret: &[u8; 32], bytes: &'a [u8], key: &[u8; 32]) -> Option<&'a [u8]> {
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            return None;
        }
        let (stored_key, rest) = bytes[MAGIC.len()..].split_at(32);
        let (seal, body) = rest.split_at(32);
        (stored_key == key && seal == Self::seal(secret, key, body)).then_some(body)
    }

    /// Writes `component` for `key` atomically; failures only cost a recompile later.
    pub fn store(&self, key: &[u8; 32], component: &Component) {
        let (Some(path), Some(secret)) = (self.path(key), self.seal_key.as_ref()) else {
            return;
        };
        if let Err(e) = Self::write(&path, secret, key, component) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the component cache");
        }
    }

    fn write(
        path: &Path,
        secret: &[u8; 32],
        key: &[u8; 32],
        component: &Component,
    ) -> anyhow::Result<()> {
        let body = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
        let seal = Self::seal(secret, key, &body);
        let mut bytes = Vec::with_capacity(MAGIC.len() + key.len() + seal.len() + body.len());
        for part in [MAGIC, key.as_slice(), seal.as_slice(), body.as_slice()] {
            bytes.extend_from_slice(part);
        }
        crate::files::write_atomically(path, &bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tampered_foreign_or_misfiled_entry_fails_the_seal() {
        let (secret, key) = ([1u8; 32], [7u8; 32]);
        let body = b"serialized component".to_vec();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&key);
        file.extend_from_slice(&ComponentCache::seal(&secret, &key, &body));
        file.extend_from_slice(&body);
        let check = |bytes: &[u8], key: &[u8; 32]| {
            ComponentCache::verified_body(&secret, bytes, key).map(<[u8]>::to_vec)
        };
        assert_eq!(check(&file, &key), Some(body.clone()));

        let mut tampered = file.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(check(&tampered, &key), None);
        assert_eq!(check(&file, &[8u8; 32]), None, "a file for another key");
        assert_eq!(check(b"\0asm\x0d\0\x01\0", &key), None, "a foreign file");
        assert_eq!(
            ComponentCache::verified_body(&[2u8; 32], &file, &key),
            None,
            "a file sealed under another cache's secret"
        );
    }
}
