//! Preparing a component once per process: the sealed cache or a compile,
//! then linking; one slot per component, filled by whoever asks first (a
//! prefetch or a stage), with the prefetch's early cache read handed on.

use super::cache::{ComponentCache, LoadKind};
use super::imports::StageState;
use super::resolve::PluginSource;
use super::{PluginError, PluginHost, bindings, blocking};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// A component compiled and linked, ready to instantiate many times.
pub struct Prepared {
    pub name: String,
    pub(super) pre: bindings::StagePre<StageState>,
}

/// A cache read started on a thread of its own by [`PluginHost::prefetch`].
pub(super) type EarlyRead = tokio::sync::oneshot::Receiver<Option<Component>>;

/// A component being prepared, or prepared, and how.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) done: tokio::sync::OnceCell<Result<(Arc<Prepared>, LoadKind), String>>,
    /// The prefetch's cache read, for whoever prepares the slot to use.
    pub(super) early: Mutex<Option<EarlyRead>>,
    /// Whether a prefetch started that read.
    pub(super) reading: AtomicBool,
    /// Set by the first `load` to take the result: only it reports the
    /// compile or cache load; later stages report `memory`.
    pub(super) claimed: AtomicBool,
}

impl Slot {
    /// The work that fills this slot, with the prefetch's cache read if one
    /// was started (whoever fills the slot takes it).
    pub(super) fn preparation(
        &self,
        preparer: Preparer,
        name: String,
        key: [u8; 32],
        bytes: std::borrow::Cow<'static, [u8]>,
    ) -> impl Future<Output = Result<(Arc<Prepared>, LoadKind), String>> + Send + 'static {
        let early = self.early.lock().expect("plugin slot poisoned").take();
        preparer.preparation(name, key, bytes, early)
    }
}

/// What preparing a component needs from the host (handles, cheap to clone).
#[derive(Clone)]
pub(super) struct Preparer {
    pub(super) engine: Engine,
    pub(super) linker: Linker<StageState>,
    pub(super) cache: ComponentCache,
}

impl Preparer {
    /// The work of preparing a component: the sealed cache entry if there
    /// is one, else a compile (stored in the cache), then linking against the
    /// host's imports. The cache entry comes from the prefetch's `early` read
    /// when there is one, else it is read inline (under a millisecond; a
    /// thread hand-off would cost more). A compile runs on a blocking thread.
    pub(super) fn preparation(
        self,
        name: String,
        key: [u8; 32],
        bytes: std::borrow::Cow<'static, [u8]>,
        early: Option<EarlyRead>,
    ) -> impl Future<Output = Result<(Arc<Prepared>, LoadKind), String>> + Send + 'static {
        let Self {
            engine,
            linker,
            cache,
        } = self;
        async move {
            let start = Instant::now();
            let cached = match early {
                Some(read) => match read.await {
                    Ok(cached) => cached,
                    // The prefetch thread died without sending: read here.
                    Err(_) => cache.load(&engine, &key),
                },
                None => cache.load(&engine, &key),
            };
            let (component, kind) = match cached {
                Some(component) => (component, LoadKind::Cache),
                None => {
                    let (engine, cache) = (engine.clone(), cache.clone());
                    let component = blocking(move || {
                        let component =
                            Component::new(&engine, &bytes).map_err(|e| format!("{e:#}"))?;
                        cache.store(&key, &component);
                        Ok::<_, String>(component)
                    })
                    .await??;
                    (component, LoadKind::Compiled)
                }
            };
            let instance_pre = linker
                .instantiate_pre(&component)
                .map_err(|e| format!("{e:#}"))?;
            let pre = bindings::StagePre::new(instance_pre).map_err(|e| format!("{e:#}"))?;
            tracing::debug!(plugin = %name, ?kind, ms = start.elapsed().as_secs_f64() * 1e3, "plugin prepared");
            Ok((Arc::new(Prepared { name, pre }), kind))
        }
    }
}

/// A prepared plugin, and how long the caller waited for it (a prefetched
/// plugin may have been ready before it was asked for).
pub struct Loaded {
    pub prepared: Arc<Prepared>,
    pub kind: LoadKind,
    pub load_time: Duration,
}

impl PluginHost {
    /// Starts preparing `source` in the background, so that a later [`load`]
    /// of it finds it ready: the engine calls this for the next stage while
    /// the current one runs. Errors are left for `load` to report.
    ///
    /// [`load`]: Self::load
    pub fn prefetch(&self, source: &PluginSource) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok((key, bytes)) = self.key_of(source) else {
            return;
        };
        let slot = self.slot(key);
        if slot.done.initialized() || slot.reading.swap(true, Ordering::AcqRel) {
            return;
        }
        // The cache read starts now, on a thread of its own: through a tokio
        // task it would first wait for a worker and then for the blocking
        // pool, about 1.5 ms on a busy machine (measured), while the stage
        // that needs it may already be waiting.
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (engine, cache) = (self.engine.clone(), self.cache.clone());
        let started = std::thread::Builder::new()
            .name("chimera-prefetch".into())
            .spawn(move || {
                let _ = sender.send(cache.load(&engine, &key));
            });
        if started.is_ok() {
            *slot.early.lock().expect("plugin slot poisoned") = Some(receiver);
        }
        let (name, preparer) = (source.name().to_owned(), self.preparer());
        runtime.spawn(async move {
            let _ = slot
                .done
                .get_or_init(|| slot.preparation(preparer, name, key, bytes))
                .await;
        });
    }

    /// Compiles (or loads from cache) and links a plugin; repeated calls for
    /// the same bytes reuse the prepared instance in memory.
    ///
    /// # Errors
    /// When the file cannot be read or is not a component of the stage world.
    pub async fn load(&self, source: &PluginSource) -> Result<Loaded, PluginError> {
        self.load_as(source, true).await
    }

    /// [`load`](Self::load) for a look at the plugin before the run (its
    /// `describe`): the first stage to load it still reports how it was
    /// prepared (`compiled` or `cache`), not `memory`.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub async fn load_to_inspect(&self, source: &PluginSource) -> Result<Loaded, PluginError> {
        self.load_as(source, false).await
    }

    async fn load_as(&self, source: &PluginSource, claim: bool) -> Result<Loaded, PluginError> {
        let start = Instant::now();
        let (key, bytes) = self.key_of(source)?;
        // Built-ins are built against the interface this host binds (a unit
        // test checks it); a file may target any version.
        if let PluginSource::File { .. } = source {
            Self::check_interface(source.name(), &bytes)?;
        }
        let slot = self.slot(key);
        let (prepared, kind) = slot
            .done
            .get_or_init(|| slot.preparation(self.preparer(), source.name().to_owned(), key, bytes))
            .await
            .clone()
            .map_err(|reason| PluginError::Invalid {
                name: source.name().to_owned(),
                reason,
            })?;
        let kind = if claim && slot.claimed.swap(true, Ordering::AcqRel) {
            LoadKind::Memory
        } else {
            kind
        };
        Ok(Loaded {
            prepared,
            kind,
            load_time: start.elapsed(),
        })
    }

    /// The cache key of a plugin's bytes, and the bytes.
    pub(super) fn key_of(
        &self,
        source: &PluginSource,
    ) -> Result<([u8; 32], std::borrow::Cow<'static, [u8]>), PluginError> {
        let bytes = source.bytes().map_err(|e| PluginError::Read {
            name: source.name().to_owned(),
            path: source.path().unwrap_or_default(),
            source: e,
        })?;
        let sha = match source.sha256() {
            Some(sha) => sha,
            None => Sha256::digest(&bytes).into(),
        };
        Ok((ComponentCache::key(&self.engine, &sha), bytes))
    }

    /// Whether `source` is prepared (by `prefetch` or `load`).
    #[cfg(test)]
    pub(super) fn is_prepared(&self, source: &PluginSource) -> bool {
        self.key_of(source)
            .is_ok_and(|(key, _)| self.slot(key).done.initialized())
    }

    pub(super) fn slot(&self, key: [u8; 32]) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("plugin slots poisoned")
            .entry(key)
            .or_default()
            .clone()
    }

    pub(super) fn preparer(&self) -> Preparer {
        Preparer {
            engine: self.engine.clone(),
            linker: self.linker.clone(),
            cache: self.cache.clone(),
        }
    }
}
