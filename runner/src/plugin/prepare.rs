//! Preparing a component once per process: the sealed cache or a compile,
//! then linking; one slot per component, filled by whoever asks first (a
//! prefetch or a stage), with the prefetch's early cache read handed on.

use super::cache::{ComponentCache, LoadKind};
use super::imports::StageState;
use super::{bindings, blocking};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;
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
