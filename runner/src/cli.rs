//! Command-line arguments → a checked request → exit code.
//!
//! Exit codes: 0 success, 1 the run failed, 2 bad usage or a bad workflow.

use crate::engine::{self, RunOptions};
use crate::llm::Timeouts;
use crate::plugin::{ComponentCache, PluginHost, Resolver};
use crate::progress::Progress;
use crate::record::{RunStatus, timing_table};
use crate::template::Templates;
use crate::workflow::{Overrides, Workflow, WorkflowError};
use clap::{ArgAction, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Run LLM agent workflows declared in YAML, each stage a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(
    name = "chimera",
    version,
    after_help = "Examples:\n  chimera validate workflows/chimera-agent-a.yaml\n  chimera run workflows/chimera-agent-a.yaml --input sample-data --backend embedded --model smollm2-135m --set model.options.num_ctx=2048\n  chimera render workflows/chimera-agent-a.yaml --stage analyze --input sample-data\n  chimera run --resume runs/20261125T190013Z-chimera-agent-a\n  chimera plugins; chimera models\n\nExit codes: 0 success, 1 the run failed, 2 bad usage or a bad workflow, 130 interrupted (Ctrl-C).\nLogs: -v, -vv or RUST_LOG=chimera=debug (to stderr)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a workflow: schema, option names and types, plugin references, templates.
    Validate {
        /// The workflow YAML file.
        workflow: PathBuf,
    },
    /// List the built-in plugins and those on the plugin search path, with what they describe.
    ///
    /// The search path: `plugins/` beside `--workflow` (when given), then the
    /// directories on CHIMERA_PLUGIN_PATH, then the built-ins.
    Plugins {
        /// Also search the `plugins/` directory beside this workflow.
        #[arg(long)]
        workflow: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a workflow and write its record to `runs/<timestamp>-<workflow>/`.
    ///
    /// The record holds `report.md` (for agents with a `report:` template),
    /// `metrics.json`, `calls.jsonl` (every prompt and response with its
    /// metrics) and `outputs/<agent>/<stage>.json`.
    Run {
        /// The workflow YAML file.
        #[arg(required_unless_present = "resume")]
        workflow: Option<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
        /// Continue an interrupted or failed run in its directory: completed
        /// stages are kept, the rest run with the same workflow, input and
        /// model overrides (from its `run.json`).
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["workflow", "out", "input", "backend", "model", "set"])]
        resume: Option<PathBuf>,
        /// Write the run record here instead of a new directory under `runs/`.
        #[arg(short, long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print the run summary as JSON on stdout instead of a table.
        #[arg(long)]
        json: bool,
        /// No progress lines on stderr.
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the models each backend offers: the embedded catalogue (and which
    /// are downloaded), Ollama's pulled models (`/api/tags`), and an
    /// OpenAI-compatible server's models (`/v1/models`).
    Models {
        /// The Ollama address (else OLLAMA_HOST, else 127.0.0.1:11434).
        #[arg(long, value_name = "URL")]
        ollama_host: Option<String>,
        /// The OpenAI-compatible base URL (else OPENAI_BASE_URL, else http://127.0.0.1:8080).
        #[arg(long, value_name = "URL")]
        openai_host: Option<String>,
        /// The environment variable holding the OpenAI-compatible server's API key.
        #[arg(long, value_name = "VAR")]
        api_key_env: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the exact messages a stage would send to its model, without calling a model.
    ///
    /// Runs the stages before it (earlier LLM stages get a placeholder answer)
    /// and the stage itself against a dry-run backend, then prints the system
    /// and user messages of the stage's calls.
    Render {
        /// The workflow YAML file.
        workflow: PathBuf,
        /// The stage id whose prompt to print.
        #[arg(long)]
        stage: String,
        /// The agent of the stage (needed when several agents have that stage id).
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
}

/// What `run` and `render` share: the input and model overrides.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The directory that stage `read:` grants are relative to.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    input: PathBuf,
    /// Use this backend for every stage with a model: ollama, openai or embedded.
    #[arg(long, value_name = "NAME")]
    backend: Option<String>,
    /// Use this model for every stage with a model (e.g. `gemma3:latest`).
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
    /// Override a model setting for every stage, e.g. `model.options.num_ctx=1024`,
    /// `model.host=http://gpu-box:11434`, `model.keep_alive=10m`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Give up connecting to a model server after this long (e.g. `10s`).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Fail an LLM call whose stream is silent this long (e.g. `120s`).
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    read_timeout: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::workflow::parse_duration(&serde_json::Value::String(text.to_owned()))
        .ok_or_else(|| format!("`{text}` is not a duration; write e.g. `10s`, `2m`"))
}

/// Parses the process arguments, runs the command and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "chimera=info,warn",
        2 => "chimera=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Runs a parsed command; `Err` is the exit code, after the message was printed.
///
/// # Errors
/// 1 when a run failed, 2 for bad usage or a bad workflow.
pub fn run(cli: Cli) -> Result<(), u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail(2, &format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Validate { workflow } => validate(&workflow).map(|w| {
                let stages = w.stages().count();
                println!(
                    "ok: `{}` is valid ({} agents, {stages} stages)",
                    w.name,
                    w.agents.len()
                );
            }),
            Command::Plugins { workflow, json } => plugins(workflow, json).await,
            Command::Run {
                workflow,
                run,
                out,
                json,
                quiet,
                resume,
            } => run_workflow(workflow, run, out, json, quiet, resume).await,
            Command::Models {
                ollama_host,
                openai_host,
                api_key_env,
                json,
            } => {
                models(
                    ollama_host.as_deref(),
                    openai_host.as_deref(),
                    api_key_env.as_deref(),
                    json,
                )
                .await
            }
            Command::Render {
                workflow,
                stage,
                agent,
                run,
            } => render(&workflow, &stage, agent.as_deref(), &run).await,
        }
    });
    // The record is written by now; a plugin still being prepared for a stage
    // that will not run (the run failed or was interrupted) must not hold up
    // the exit.
    runtime.shutdown_background();
    result
}

fn fail(code: u8, message: &str) -> u8 {
    eprintln!("{}", message.trim_end());
    code
}

/// Loads a workflow and checks its plugin and template references.
fn validate(path: &std::path::Path) -> Result<Workflow, u8> {
    let workflow = Workflow::load(path).map_err(|e| match e {
        WorkflowError::Io { .. } => fail(2, &format!("error: {e}")),
        WorkflowError::Invalid(errors) => fail(2, &errors.to_string()),
    })?;
    let resolver = Resolver::for_workflow(Some(&workflow.dir));
    let templates = Templates::new(Templates::search_path_for(&workflow.dir));
    let problems = engine::check_references(&workflow, &resolver, &templates);
    if problems.is_empty() {
        Ok(workflow)
    } else {
        Err(fail(2, &workflow.errors(problems).to_string()))
    }
}

/// Leaves `host` to the process's exit, which comes next: unmapping each
/// compiled component one by one (a TLB shootdown on every core each time)
/// would only delay it, by about 0.3 ms (measured).
fn release_at_exit(host: PluginHost) {
    std::mem::forget(host);
}

fn host() -> Result<PluginHost, u8> {
    PluginHost::new(ComponentCache::new(ComponentCache::default_dir()))
        .map_err(|e| fail(1, &format!("error: {e}")))
}

async fn plugins(workflow: Option<PathBuf>, json: bool) -> Result<(), u8> {
    let dir = workflow.as_deref().map(|w| {
        w.parent()
            .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf)
    });
    let resolver = Resolver::for_workflow(dir.as_deref());
    let host = host()?;
    let mut rows = Vec::new();
    let mut broken = false;
    for source in resolver.available() {
        let info = match host.load(&source).await {
            Ok(loaded) => host.describe(&loaded.prepared).await,
            Err(e) => Err(e),
        };
        match info {
            Ok(info) => rows.push(serde_json::json!({
                "name": source.name(), "version": info.version, "origin": source.origin(),
                "description": info.description, "config_schema": info.config_schema,
            })),
            Err(e) => {
                broken = true;
                eprintln!("warning: {e}");
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        let width = |key: &str| {
            rows.iter()
                .map(|r| r[key].as_str().unwrap_or("").len())
                .max()
                .unwrap_or(0)
                .max(key.len())
        };
        let (wn, wv, wo) = (width("name"), width("version"), width("origin"));
        println!(
            "{:wn$}  {:wv$}  {:wo$}  DESCRIPTION",
            "NAME", "VERSION", "ORIGIN"
        );
        for r in &rows {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            println!(
                "{:wn$}  {:wv$}  {:wo$}  {}",
                s("name"),
                s("version"),
                s("origin"),
                s("description")
            );
        }
    }
    if broken { Err(1) } else { Ok(()) }
}

/// Loads a workflow, applies the command-line overrides and checks it.
fn prepare(path: &std::path::Path, args: &RunArgs) -> Result<Workflow, u8> {
    let mut workflow = validate(path)?;
    let overrides = Overrides {
        backend: args.backend.clone(),
        model: args.model.clone(),
        set: args.set.clone(),
    };
    workflow
        .apply(&overrides)
        .map_err(|e| fail(2, &format!("error: {e}")))?;
    Ok(workflow)
}

fn backends(args: &RunArgs) -> engine::Backends {
    engine::Backends::new(Timeouts {
        connect: args.connect_timeout,
        read: args.read_timeout,
    })
}

fn engine_failure(e: &engine::EngineError) -> u8 {
    let code = match e {
        engine::EngineError::MissingInput(_) | engine::EngineError::Resume { .. } => 2,
        engine::EngineError::Record { .. } => 1,
    };
    fail(code, &format!("error: {e}"))
}

/// How a run was asked for; `run.json` in the run directory, read by `--resume`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Invocation {
    workflow: PathBuf,
    input: PathBuf,
    backend: Option<String>,
    model: Option<String>,
    set: Vec<String>,
}

async fn run_workflow(
    workflow: Option<PathBuf>,
    mut args: RunArgs,
    mut out: Option<PathBuf>,
    json: bool,
    quiet: bool,
    resume: Option<PathBuf>,
) -> Result<(), u8> {
    let (path, resume) = match resume {
        Some(dir) => {
            let text = std::fs::read_to_string(dir.join("run.json")).map_err(|e| {
                fail(2, &format!("error: cannot resume {}: no readable run.json ({e}); pass the directory of an earlier `chimera run`", dir.display()))
            })?;
            let invocation: Invocation = serde_json::from_str(&text).map_err(|e| {
                fail(
                    2,
                    &format!(
                        "error: cannot resume {}: run.json is not valid: {e}",
                        dir.display()
                    ),
                )
            })?;
            let earlier = engine::Resume::load(&dir).map_err(|e| engine_failure(&e))?;
            args.input = invocation.input;
            args.backend = invocation.backend;
            args.model = invocation.model;
            args.set = invocation.set;
            out = Some(dir);
            (invocation.workflow, Some(earlier))
        }
        None => (workflow.unwrap_or_default(), None),
    };
    let workflow = prepare(&path, &args)?;
    let host = host()?;
    let (stop, interrupt) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "interrupted: stopping the current stage and writing the record (Ctrl-C again to quit now)"
            );
            let _ = stop.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let invocation = Invocation {
        workflow: std::path::absolute(&path).unwrap_or(path.clone()),
        input: std::path::absolute(&args.input).unwrap_or(args.input.clone()),
        backend: args.backend.clone(),
        model: args.model.clone(),
        set: args.set.clone(),
    };
    let options = RunOptions {
        input: args.input.clone(),
        out,
        backends: backends(&args),
        observer: Arc::new(Progress::new(quiet || json)),
        stop_after: None,
        interrupt: Some(interrupt),
        resume,
        invocation: serde_json::to_value(&invocation).unwrap_or_default(),
    };
    let outcome = engine::run(&workflow, &host, &options)
        .await
        .map_err(|e| engine_failure(&e))?;
    release_at_exit(host);
    if json {
        let summary = serde_json::json!({ "run_dir": outcome.dir, "metrics": outcome.metrics });
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        print!("{}", timing_table(&outcome.metrics));
        for report in &outcome.metrics.reports {
            println!("report: {}", outcome.dir.join(report).display());
        }
        println!("run record: {}", outcome.dir.display());
    }
    for stage in outcome.metrics.stages.iter().filter(|s| s.error.is_some()) {
        if let Some(error) = &stage.error {
            eprintln!(
                "error: stage `{}/{}` failed: {error}",
                stage.agent, stage.stage
            );
        }
    }
    for error in &outcome.metrics.report_errors {
        eprintln!("error: report of {error}");
    }
    match outcome.metrics.status {
        RunStatus::Ok => Ok(()),
        RunStatus::Failed => Err(1),
        RunStatus::Interrupted => {
            eprintln!(
                "the run was interrupted; continue it with `chimera run --resume {}`",
                outcome.dir.display()
            );
            Err(130)
        }
    }
}

async fn render(
    path: &std::path::Path,
    stage: &str,
    agent: Option<&str>,
    args: &RunArgs,
) -> Result<(), u8> {
    let workflow = prepare(path, args)?;
    let matches: Vec<_> = workflow
        .stages()
        .filter(|(a, s)| s.id == stage && agent.is_none_or(|id| a.id == id))
        .map(|(a, _)| a.id.clone())
        .collect();
    let agent = match matches.as_slice() {
        [one] => one.clone(),
        [] => {
            let ids: Vec<String> = workflow
                .stages()
                .map(|(a, s)| format!("`{}/{}`", a.id, s.id))
                .collect();
            return Err(fail(
                2,
                &format!(
                    "error: no stage `{stage}` in `{}`; stages: {}",
                    workflow.name,
                    ids.join(", ")
                ),
            ));
        }
        _ => {
            return Err(fail(
                2,
                &format!(
                    "error: several agents have a stage `{stage}`; choose one with `--agent`: {}",
                    matches.join(", ")
                ),
            ));
        }
    };
    let host = host()?;
    let scratch = tempfile::tempdir()
        .map_err(|e| fail(1, &format!("error: cannot create a scratch directory: {e}")))?;
    let dry: Arc<dyn crate::llm::Backend> = Arc::new(engine::DryRun);
    let options = RunOptions {
        input: args.input.clone(),
        out: Some(scratch.path().to_path_buf()),
        backends: engine::Backends::all(dry),
        observer: Arc::new(engine::Silent),
        stop_after: Some((agent.clone(), stage.to_owned())),
        interrupt: None,
        resume: None,
        invocation: serde_json::Value::Null,
    };
    let outcome = engine::run(&workflow, &host, &options)
        .await
        .map_err(|e| engine_failure(&e))?;
    release_at_exit(host);
    if let Some(failed) = outcome.metrics.stages.iter().find(|s| s.error.is_some()) {
        let error = failed
            .error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(fail(
            1,
            &format!(
                "error: stage `{}/{}` failed before its prompt was complete: {error}",
                failed.agent, failed.stage
            ),
        ));
    }
    let calls: Vec<_> = outcome
        .calls
        .iter()
        .filter(|c| c.agent == agent && c.stage == stage)
        .collect();
    if calls.is_empty() {
        return Err(fail(
            1,
            &format!("error: stage `{agent}/{stage}` made no model call, so it has no prompt"),
        ));
    }
    for (i, call) in calls.iter().enumerate() {
        if calls.len() > 1 {
            println!("=== call {} of {} ===", i + 1, calls.len());
        }
        for message in &call.messages {
            println!("--- {} ---", message.role);
            println!("{}", message.content.trim_end());
        }
    }
    Ok(())
}

async fn models(
    ollama_host: Option<&str>,
    openai_host: Option<&str>,
    api_key_env: Option<&str>,
    json: bool,
) -> Result<(), u8> {
    let timeouts = Timeouts {
        connect: Duration::from_secs(3),
        read: Duration::from_secs(10),
    };
    let embedded = crate::llm::models::list().map_err(|e| e.to_string());
    let ollama = crate::llm::OllamaBackend::new(timeouts)
        .list_models(ollama_host)
        .await;
    let openai = crate::llm::OpenAiBackend::new(timeouts)
        .list_models(openai_host, api_key_env)
        .await
        .map_err(|e| e.to_string());
    if json {
        let section = |r: Result<serde_json::Value, String>| match r {
            Ok(v) => serde_json::json!({ "models": v }),
            Err(e) => serde_json::json!({ "error": e }),
        };
        let embedded = embedded.map(|list| {
            serde_json::Value::Array(
                list.iter()
                    .map(|m| serde_json::json!({"name": m.name, "path": m.path, "downloaded": m.present, "bytes": m.bytes, "license": m.license, "about": m.about}))
                    .collect(),
            )
        });
        let out = serde_json::json!({
            "embedded": section(embedded),
            "ollama": section(ollama.map(|v| v.into())),
            "openai": section(openai.map(|v| v.into())),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!("embedded (in-process llama.cpp; `model: {{backend: embedded, name: …}}`):");
    match &embedded {
        Ok(list) => {
            for m in list {
                let state = if m.present {
                    "downloaded".to_owned()
                } else {
                    format!("not downloaded: run `scripts/fetch-model {}`", m.name)
                };
                println!(
                    "  {:<16} {state}  {}",
                    m.name,
                    m.about.as_deref().unwrap_or("")
                );
            }
            println!("  (or any GGUF file path, or an Ollama `name:tag` pulled on this machine)");
        }
        Err(e) => println!("  error: {e}"),
    }
    for (title, result) in [
        ("ollama (`backend: ollama`)", &ollama),
        ("openai-compatible (`backend: openai`)", &openai),
    ] {
        println!("{title}:");
        match result {
            Ok(list) if list.is_empty() => println!("  (no models)"),
            Ok(list) => list.iter().for_each(|m| println!("  {m}")),
            Err(e) => println!("  unavailable: {e}"),
        }
    }
    Ok(())
}
