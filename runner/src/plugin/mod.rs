//! The wasmtime host: one `Engine` per process (with its epoch ticker), the
//! plugin interface it links, and its errors. Preparing components (cache,
//! compile, prefetch) is `prepare`; running a stage in its sandbox is
//! `sandbox`; turning a trap into a stage failure is `failure`.

mod builtin;
mod cache;
mod failure;
mod imports;
pub mod interface;
mod prepare;
mod resolve;
mod sandbox;
mod write_limit;

pub use builtin::{Builtin, GUEST_BUILD_DIR, builtins};
pub use cache::{ComponentCache, LoadKind};
pub use failure::StageFailure;
pub use imports::{BoxFuture, GatewayError, LlmGateway, LlmReply, StageServices, TemplateRenderer};
pub use prepare::{Loaded, Prepared};
pub use resolve::{PluginSource, Resolver};
pub use sandbox::{Grant, StageRequest, StageRun};
pub use write_limit::files_under;

use imports::StageState;
use prepare::Slot;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

#[doc(hidden)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "stage",
        imports: {
            "chimera:plugin/llm.generate": async,
            default: tracing,
        },
        exports: { default: async },
    });
}

use bindings::chimera::plugin::types as wit;

/// How often the epoch ticker advances; the granularity of stage deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Most bytes a guest may hand the host in one call, its stage output
/// included (wasmtime's hostcall fuel); also the largest output accepted.
pub const MAX_OUTPUT_BYTES: usize = 64 << 20;

/// Failures of the plugin host itself (not of a stage).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot read plugin `{name}` at {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "plugin `{name}` is not a valid Chimera component: {reason}\n  = help: build it with `cargo build --release --target wasm32-wasip2` against the `chimera-plugin` SDK"
    )]
    Invalid { name: String, reason: String },
    #[error("plugin `{name}` failed to describe itself: {reason}")]
    Describe { name: String, reason: String },
    #[error("plugin `{name}` cannot be used: {reason}")]
    Unsupported { name: String, reason: String },
}

/// What describe() says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub config_schema: Value,
    /// The top-level variables its prompt and persona templates see (empty:
    /// it renders none).
    pub template_context: Vec<String>,
}

/// The process-wide plugin host.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<StageState>,
    cache: ComponentCache,
    /// One slot per component (by cache key): filled once, by whichever of
    /// `prefetch` or `load` gets there first; the others wait for it.
    slots: Mutex<HashMap<[u8; 32], Arc<Slot>>>,
    ticker_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Runs `work` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("preparing the plugin failed: {e}"))
}

fn engine_error(e: impl std::fmt::Display) -> PluginError {
    PluginError::Engine(e.to_string())
}

impl PluginHost {
    /// Starts the engine (Cranelift, component model, async, epoch interruption)
    /// and its epoch ticker.
    ///
    /// # Errors
    /// When wasmtime cannot be configured on this machine.
    pub fn new(cache: ComponentCache) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .strategy(wasmtime::Strategy::Cranelift)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        bindings::Stage::add_to_linker::<_, HasSelf<StageState>>(&mut linker, |s| s)
            .map_err(engine_error)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (weak, stop) = (engine.weak(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("chimera-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(engine_error)?;
        Ok(Self {
            engine,
            linker,
            cache,
            slots: Mutex::new(HashMap::new()),
            ticker_stop,
        })
    }

    /// The engine, for benchmarks and tools.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Refuses a component built for an interface version this host does
    /// not link, before linking fails on a missing import.
    ///
    /// # Errors
    /// When the bytes are not a component, or target another version.
    pub fn check_interface(name: &str, bytes: &[u8]) -> Result<interface::Target, PluginError> {
        let target = interface::target(bytes).map_err(|reason| PluginError::Invalid {
            name: name.to_owned(),
            reason,
        })?;
        match interface::refusal(&target) {
            Some(reason) => Err(PluginError::Unsupported {
                name: name.to_owned(),
                reason,
            }),
            None => Ok(target),
        }
    }
}

#[cfg(test)]
mod tests;
