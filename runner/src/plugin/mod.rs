//! The wasmtime host: one `Engine` per process, compiled components cached on
//! disk, `InstancePre` reuse, a fresh `Store` per stage with explicit grants,
//! epoch deadlines and memory limits.

mod builtin;
mod cache;
mod failure;
mod imports;
pub mod interface;
mod prepare;
mod resolve;
mod write_limit;

pub use builtin::{Builtin, GUEST_BUILD_DIR, builtins};
pub use cache::{ComponentCache, LoadKind};
pub use failure::StageFailure;
pub use imports::{BoxFuture, GatewayError, LlmGateway, LlmReply, StageServices, TemplateRenderer};
pub use prepare::Prepared;
pub use resolve::{PluginSource, Resolver};

use failure::trap_failure;
use prepare::{Preparer, Slot};
pub use write_limit::files_under;
use write_limit::{WRITE_CHECK_TICKS, WriteLimitExceeded, bytes_under};

use imports::StageState;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

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
/// Stderr a guest may write before the pipe stops taking more (kept for error messages).
const STDERR_CAPACITY: usize = 64 * 1024;
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

/// A directory granted to a stage: host path, and the name the guest sees.
#[derive(Debug, Clone)]
pub struct Grant {
    /// `None` when the directory does not exist: the guest is told its name
    /// (so it can report the gap) but nothing is opened.
    pub host: Option<PathBuf>,
    pub guest: String,
}

/// One stage invocation.
#[derive(Debug, Clone)]
pub struct StageRequest {
    pub agent: String,
    pub stage: String,
    pub config: Value,
    pub inputs: Value,
    pub read: Vec<Grant>,
    /// The one writable directory, preopened read-write.
    pub write: Option<Grant>,
    /// Most bytes the stage may leave in `write`.
    pub write_limit: u64,
    pub prompt_template: Option<String>,
    pub persona_template: Option<String>,
    pub timeout: Duration,
    pub memory_limit: usize,
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

/// A prepared plugin, and how long the caller waited for it (a prefetched
/// plugin may have been ready before it was asked for).
pub struct Loaded {
    pub prepared: Arc<Prepared>,
    pub kind: LoadKind,
    pub load_time: Duration,
}

/// The outcome of one stage run, with the host's own timings.
#[derive(Debug)]
pub struct StageRun {
    pub result: Result<Value, StageFailure>,
    pub instantiate: Duration,
    pub guest: Duration,
    pub llm: Duration,
    /// What the guest wrote to stderr (truncated).
    pub stderr: String,
    /// The regular files left in the `write:` directory, with their sizes
    /// (listed once, after the guest returned or was stopped).
    pub written: Vec<(PathBuf, u64)>,
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

    /// The cache key of a plugin's bytes, and the bytes.
    fn key_of(
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
    fn is_prepared(&self, source: &PluginSource) -> bool {
        self.key_of(source)
            .is_ok_and(|(key, _)| self.slot(key).done.initialized())
    }

    fn slot(&self, key: [u8; 32]) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("plugin slots poisoned")
            .entry(key)
            .or_default()
            .clone()
    }

    fn preparer(&self) -> Preparer {
        Preparer {
            engine: self.engine.clone(),
            linker: self.linker.clone(),
            cache: self.cache.clone(),
        }
    }

    fn store(
        &self,
        wasi: WasiCtxBuilder,
        services: StageServices,
        memory_limit: usize,
    ) -> (Store<StageState>, MemoryOutputPipe) {
        let mut wasi = wasi;
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        wasi.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_limit)
            .trap_on_grow_failure(true)
            .instances(16)
            .tables(64)
            .memories(16)
            .build();
        let state = StageState::new(wasi.build(), limits, services);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_hostcall_fuel(MAX_OUTPUT_BYTES);
        (store, stderr)
    }

    /// Asks a plugin for its name, version and configuration schema.
    ///
    /// # Errors
    /// When the plugin traps or answers with a schema that is not JSON.
    pub async fn describe(&self, prepared: &Prepared) -> Result<PluginInfo, PluginError> {
        let fail = |reason: String| PluginError::Describe {
            name: prepared.name.clone(),
            reason,
        };
        let (mut store, _) = self.store(WasiCtxBuilder::new(), StageServices::none(), 64 << 20);
        let deadline = Instant::now() + Duration::from_secs(10);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| Ok(deadline_check(deadline)));
        let instance = prepared
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| fail(format!("{e:#}")))?;
        let info = instance
            .call_describe(&mut store)
            .await
            .map_err(|e| fail(format!("{e:#}")))?;
        Ok(PluginInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            config_schema: serde_json::from_str(&info.config_schema)
                .map_err(|e| fail(format!("config schema is not JSON: {e}")))?,
            template_context: info.template_context,
        })
    }

    /// Creates a fresh store and instantiates `prepared` in it, without calling
    /// the guest: what every stage pays before `run`. For benchmarks.
    ///
    /// # Errors
    /// When instantiation fails.
    #[doc(hidden)]
    pub async fn instantiate_only(&self, prepared: &Prepared) -> Result<(), PluginError> {
        let (mut store, _) = self.store(WasiCtxBuilder::new(), StageServices::none(), 64 << 20);
        store.set_epoch_deadline(1);
        let deadline = Instant::now() + Duration::from_secs(10);
        store.epoch_deadline_callback(move |_| Ok(deadline_check(deadline)));
        prepared
            .pre
            .instantiate_async(&mut store)
            .await
            .map(drop)
            .map_err(|e| PluginError::Invalid {
                name: prepared.name.clone(),
                reason: format!("{e:#}"),
            })
    }

    /// Runs one stage in a fresh store that sees only the granted directories.
    pub async fn run(
        &self,
        prepared: &Prepared,
        request: &StageRequest,
        services: StageServices,
    ) -> StageRun {
        let mut timings = StageRun {
            result: Err(StageFailure::Interrupted),
            instantiate: Duration::ZERO,
            guest: Duration::ZERO,
            llm: Duration::ZERO,
            stderr: String::new(),
            written: Vec::new(),
        };
        let mut wasi = WasiCtxBuilder::new();
        // A stage owns its worker thread while it runs: file reads inline
        // instead of a `spawn_blocking` hop per call (ingest reads many small files).
        wasi.allow_blocking_current_thread(true);
        let grants = request.read.iter().map(|g| (g, FsPerms::ReadOnly));
        let writable = request.write.iter().map(|g| (g, FsPerms::ReadWrite));
        for (grant, perms) in grants.chain(writable) {
            let Some(host) = &grant.host else { continue };
            if let Err(e) = wasi.preopened_dir(host, &grant.guest, perms) {
                timings.result = Err(StageFailure::Failed(format!(
                    "cannot open granted directory {}: {e}",
                    host.display()
                )));
                return timings;
            }
        }
        let (mut store, stderr) = self.store(wasi, services, request.memory_limit);
        let deadline = Instant::now() + request.timeout;
        store.set_epoch_deadline(1);
        let quota = request.write.as_ref().and_then(|grant| {
            let dir = grant.host.clone()?;
            Some((dir, WriteLimitExceeded::new(grant, request.write_limit)))
        });
        let mut ticks = 0u32;
        store.epoch_deadline_callback(move |_| {
            ticks = ticks.wrapping_add(1);
            if let Some((dir, over)) = &quota
                && ticks.is_multiple_of(WRITE_CHECK_TICKS)
                && bytes_under(dir) > over.limit
            {
                return Err(over.clone().into());
            }
            Ok(deadline_check(deadline))
        });

        let input = wit::StageInput {
            stage_id: request.stage.clone(),
            agent: request.agent.clone(),
            config: request.config.to_string(),
            inputs: request.inputs.to_string(),
            read_dirs: request.read.iter().map(|g| g.guest.clone()).collect(),
            write_dir: request.write.as_ref().map(|g| g.guest.clone()),
            prompt_template: request.prompt_template.clone(),
            persona_template: request.persona_template.clone(),
        };
        let started = Instant::now();
        let call = async {
            let instance = prepared.pre.instantiate_async(&mut store).await?;
            let instantiated = started.elapsed();
            let result = instance.call_run(&mut store, &input).await;
            Ok::<_, wasmtime::Error>((instantiated, result))
        };
        let outcome = tokio::time::timeout(request.timeout, call).await;
        let total = started.elapsed();
        timings.stderr = String::from_utf8_lossy(&stderr.contents()).into_owned();
        let write_dir = request.write.as_ref().and_then(|g| g.host.as_deref());
        timings.written = write_dir.map(files_under).unwrap_or_default();
        let written_bytes: u64 = timings.written.iter().map(|(_, bytes)| bytes).sum();
        timings.result = match outcome {
            Err(_) => Err(StageFailure::TimedOut(request.timeout)),
            Ok(Err(e)) => Err(trap_failure(
                &e,
                request.timeout,
                request.memory_limit,
                &timings.stderr,
            )),
            Ok(Ok((instantiated, result))) => {
                timings.instantiate = instantiated;
                timings.guest = total.saturating_sub(instantiated);
                match result {
                    Err(e) => Err(trap_failure(
                        &e,
                        request.timeout,
                        request.memory_limit,
                        &timings.stderr,
                    )),
                    Ok(Err(wit::StageError::Failed(m))) => Err(StageFailure::Failed(m)),
                    Ok(Err(wit::StageError::InvalidConfig(m))) => {
                        Err(StageFailure::InvalidConfig(m))
                    }
                    Ok(Ok(_)) if written_bytes > request.write_limit => {
                        let grant = request
                            .write
                            .as_ref()
                            .expect("only a write grant has files");
                        Err(StageFailure::InvalidOutput(
                            WriteLimitExceeded::new(grant, request.write_limit).to_string(),
                        ))
                    }
                    Ok(Ok(output)) if output.data.len() > MAX_OUTPUT_BYTES => {
                        Err(StageFailure::InvalidOutput(format!(
                            "{} bytes of output exceed the limit of {MAX_OUTPUT_BYTES} bytes",
                            output.data.len()
                        )))
                    }
                    Ok(Ok(output)) => serde_json::from_str(&output.data)
                        .map_err(|e| StageFailure::InvalidOutput(format!("not JSON: {e}"))),
                }
            }
        };
        timings.llm = store.data().llm_time();
        timings
    }
}

fn deadline_check(deadline: Instant) -> UpdateDeadline {
    if Instant::now() >= deadline {
        UpdateDeadline::Interrupt
    } else {
        UpdateDeadline::Yield(1)
    }
}

#[cfg(test)]
mod tests;
