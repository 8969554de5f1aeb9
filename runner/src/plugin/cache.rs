//! The on-disk cache of compiled components.
//!
//! A cache file is named by a key over the component's bytes and the engine's
//! compatibility hash (wasmtime version and settings), and carries a header
//! that binds the file to that key and to its own contents. A file Chimera
//! did not write — foreign, truncated or tampered with — fails the check and
//! the component is compiled again; it is never handed to the deserializer.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 16] = b"chimera-cwasm-v1";
const HEADER: usize = MAGIC.len() + 32 + 32;

/// How a component came to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
        Self { dir }
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

    fn seal(key: &[u8; 32], body: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(MAGIC);
        h.update(key);
        h.update(body);
        h.finalize().into()
    }

    /// Loads the compiled component for `key`, or `None` when there is no
    /// valid cache file (absent, foreign, tampered, or for another engine).
    pub fn load(&self, engine: &Engine, key: &[u8; 32]) -> Option<Component> {
        let path = self.path(key)?;
        let bytes = std::fs::read(&path).ok()?;
        if let Some(body) = Self::verified_body(&bytes, key) {
            // SAFETY: `body` is byte-for-byte what `store` wrote after
            // `Component::serialize` for this key (checked by the seal), so it
            // is a serialized component produced by this engine configuration.
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

    fn verified_body<'a>(bytes: &'a [u8], key: &[u8; 32]) -> Option<&'a [u8]> {
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            return None;
        }
        let (stored_key, rest) = bytes[MAGIC.len()..].split_at(32);
        let (seal, body) = rest.split_at(32);
        (stored_key == key && seal == Self::seal(key, body)).then_some(body)
    }

    /// Writes `component` for `key` atomically; failures only cost a recompile later.
    pub fn store(&self, key: &[u8; 32], component: &Component) {
        let Some(path) = self.path(key) else { return };
        if let Err(e) = Self::write(&path, key, component) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the component cache");
        }
    }

    fn write(path: &Path, key: &[u8; 32], component: &Component) -> anyhow::Result<()> {
        let body = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
        let dir = path
            .parent()
            .ok_or_else(|| anyhow::anyhow!("cache path has no parent"))?;
        std::fs::create_dir_all(dir)?;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(MAGIC)?;
        file.write_all(key)?;
        file.write_all(&Self::seal(key, &body))?;
        file.write_all(&body)?;
        file.persist(path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tampered_body_fails_the_seal() {
        let key = [7u8; 32];
        let body = b"serialized component".to_vec();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&key);
        file.extend_from_slice(&ComponentCache::seal(&key, &body));
        file.extend_from_slice(&body);
        assert_eq!(
            ComponentCache::verified_body(&file, &key),
            Some(body.as_slice())
        );

        let mut tampered = file.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(ComponentCache::verified_body(&tampered, &key), None);
        assert_eq!(
            ComponentCache::verified_body(&file, &[8u8; 32]),
            None,
            "a file for another key"
        );
        assert_eq!(
            ComponentCache::verified_body(b"\0asm\x0d\0\x01\0", &key),
            None,
            "a foreign file"
        );
    }
}
