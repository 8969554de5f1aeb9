//! Command-line arguments → a checked request → exit code.
//!
//! Exit codes: 0 success, 1 the run failed, 2 bad usage or a bad workflow.

use crate::engine::{self, RunOptions};
use crate::plugin::{ComponentCache, PluginHost, Resolver};
use crate::record::{RunStatus, timing_table};
use crate::template::Templates;
use crate::workflow::{Workflow, WorkflowError};
use clap::{ArgAction, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Run LLM agent workflows declared in YAML, each stage a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(
    name = "chimera",
    version,
    after_help = "Examples:\n  chimera validate workflows/chimera-agent-a.yaml\n  chimera run workflows/ingest-only.yaml --input sample-data\n  chimera plugins\n\nExit codes: 0 success, 1 the run failed, 2 bad usage or a bad workflow.\nLogs: -v, -vv or RUST_LOG=chimera=debug (to stderr)."
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
    Run {
        /// The workflow YAML file.
        workflow: PathBuf,
        /// The directory that stage `read:` grants are relative to.
        #[arg(short, long, value_name = "DIR", default_value = ".")]
        input: PathBuf,
        /// Write the run record here instead of a new directory under `runs/`.
        #[arg(short, long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print the run summary as JSON on stdout instead of a table.
        #[arg(long)]
        json: bool,
    },
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
    runtime.block_on(async {
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
                input,
                out,
                json,
            } => run_workflow(&workflow, input, out, json).await,
        }
    })
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

async fn run_workflow(
    path: &std::path::Path,
    input: PathBuf,
    out: Option<PathBuf>,
    json: bool,
) -> Result<(), u8> {
    let workflow = validate(path)?;
    let host = host()?;
    let outcome = engine::run(&workflow, &host, &RunOptions { input, out })
        .await
        .map_err(|e| {
            fail(
                match e {
                    engine::EngineError::MissingInput(_) => 2,
                    engine::EngineError::Record { .. } => 1,
                },
                &format!("error: {e}"),
            )
        })?;
    if json {
        let summary = serde_json::json!({ "run_dir": outcome.dir, "metrics": outcome.metrics });
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        print!("{}", timing_table(&outcome.metrics));
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
    match outcome.metrics.status {
        RunStatus::Ok => Ok(()),
        RunStatus::Failed => Err(1),
    }
}
