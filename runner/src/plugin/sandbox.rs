//! A stage's sandbox: a fresh `Store` per call to the guest, with only the
//! directories the workflow grants preopened, no network, a memory limit,
//! an epoch deadline and a cap on what the `write:` directory may hold;
//! and what the run left behind (timings, stderr, written files).

use super::failure::trap_failure;
use super::imports::{StageServices, StageState};
use super::write_limit::{WRITE_CHECK_TICKS, WriteLimitExceeded, bytes_under, files_under};
use super::{MAX_OUTPUT_BYTES, PluginError, PluginHost, PluginInfo, Prepared, StageFailure, wit};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Stderr a guest may write before the pipe stops taking more (kept for error messages).
const STDERR_CAPACITY: usize = 64 * 1024;
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

impl PluginHost {
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
