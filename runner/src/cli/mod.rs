//! Command-line arguments → a checked request → exit code.
//!
//! Exit codes: 0 success, 1 the run failed, 2 bad usage or a bad workflow.

mod compare;
mod inspect;
mod lock;
mod merge;
mod new;
mod prepare;
mod repeat;
mod report;
mod run;
mod runs;
mod shard;
mod sweep;

use crate::plugin::{ComponentCache, PluginHost};
use clap::{ArgAction, Parser, Subcommand};
use prepare::prepare;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Run LLM agent workflows declared in YAML, each stage a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(
    name = "chimera",
    version,
    after_help = "Examples:\n  chimera validate workflows/chimera-agent-a.yaml\n  chimera run workflows/chimera-agent-a.yaml --input sample-data --backend embedded --model smollm2-135m --set model.options.num_ctx=2048\n  chimera render workflows/chimera-agent-a.yaml --stage analyze --input sample-data\n  chimera run --resume runs/20261125T190013Z-chimera-agent-a\n  chimera run workflows/chimera-agent-a-sweep.yaml -i sample-data --out runs/sweep --shard auto\n  chimera new perf-lab   (a project folder to start from)\n  chimera runs list --workflow chimera-agent-a; chimera runs diff latest~1 latest\n  chimera plugins; chimera models\n\nExit codes: 0 success, 1 the run failed, 2 bad usage or a bad workflow, 130 interrupted (Ctrl-C).\nLogs: -v, -vv or RUST_LOG=chimera=debug (to stderr)."
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
    /// The search path, first match wins: `plugins/` beside `--workflow`
    /// and `plugins/` in its parent directory (when given), then the
    /// directories on CHIMERA_PLUGIN_PATH, then the built-ins. The table
    /// starts with the directories searched.
    Plugins {
        /// Also search `plugins/` beside this workflow and in its parent directory.
        #[arg(long)]
        workflow: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Compare two run records (single runs or repeats) metric by metric:
    /// medians, the change, a 95 % bootstrap interval of the ratio, the
    /// Mann-Whitney U p-value and a verdict (better, worse, no detectable
    /// difference). Records that differ in more than model options
    /// (templates, plugins, models, chimera, machine) are refused unless
    /// `--force`, which lists the differences.
    Compare {
        /// The baseline record's directory.
        baseline: PathBuf,
        /// The candidate record's directory.
        candidate: PathBuf,
        /// Compare even when the records differ in more than model options.
        #[arg(long)]
        force: bool,
        /// Count cold calls (the first after a model load).
        #[arg(long)]
        include_cold: bool,
        /// Seed of the bootstrap.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write `comparison.md` and `comparison.json` into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of workflow files, generated from the types the
    /// loader reads them with. Save it and point your editor at it for
    /// completion and checks, e.g. with the first line of a workflow:
    /// `# yaml-language-server: $schema=chimera-workflow.schema.json`.
    Schema,
    /// Look at a sweep (a workflow with a `matrix:`) before running it.
    Sweep {
        #[command(subcommand)]
        command: SweepCommand,
    },
    /// Join the directories of a sweep's shards into one record: cells
    /// de-duplicated by key and copied under `--out`, every statistic
    /// recomputed from the runs' raw samples, and the cells no shard
    /// finished listed. Shards run from a different workflow, template or
    /// plugin are refused (the file is named). Exit code 1 when cells are
    /// missing, unless `--allow-missing`.
    Merge {
        /// The shards' directories (`chimera run … --shard K/N --out DIR`).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The merged record's directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Exit 0 even when some cells have no finished record.
        #[arg(long)]
        allow_missing: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a project: `chimera new <dir>` writes a folder that validates
    /// and runs as written — `workflows/<dir>.yaml` (Agent A on the stock
    /// prompts and report, plus a stage of its own plugin), a persona of its
    /// own in `templates/personas/`, copies of the stock templates to edit,
    /// a sample artifact in `data/`, and `plugins/hello/`, a plugin crate
    /// against the SDK (vendored in `plugins/chimera-plugin/`) with the
    /// one-line command that builds it. `chimera new plugin <name>` writes
    /// just a plugin crate (in `plugins/`, or `--dir`).
    New(new::NewCommand),
    /// Render a record's reports again without calling a model, e.g. after
    /// editing a report template: a run's `report.md` (each agent's report
    /// template over the stage metrics, outputs and calls the record holds,
    /// with the workflow, overrides and search paths of its run.json) and
    /// `report.html`; `metrics.json`'s provenance notes the re-render and
    /// the templates' hashes. For a sweep's directory: `summary.html`.
    Report {
        /// The run record's directory.
        run_dir: PathBuf,
    },
    /// Find and look at run records: `list` (newest first; by workflow,
    /// status, kind, tag, date), `show` one, `diff` two, `tag` them.
    ///
    /// Backed by an index in the runs directory (`.chimera-index.sqlite`),
    /// a cache of the record directories and nothing more: tags live in
    /// each record's `tags.json`, and an index that is missing, damaged
    /// or out of date is rebuilt or brought up to date from the records.
    /// Several chimera processes may run and tag at once.
    Runs(runs::RunsCommand),
    /// Pin what a workflow uses in `chimera.lock` beside it: the commit
    /// each of its `sources:` resolves to, and the SHA-256 of every
    /// template and plugin it uses. Run it again to update the pins (it
    /// prints what changed); `chimera run --locked` refuses a run that no
    /// longer matches.
    Lock {
        /// The workflow YAML file.
        workflow: PathBuf,
    },
    /// Look at one plugin component.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// List every template a workflow can see: where each name resolves
    /// (first match on the search path wins) and the same-named files it
    /// shadows.
    ///
    /// The search path: `templates/` beside the workflow, `templates/` in
    /// its parent directory, the directories on CHIMERA_TEMPLATE_PATH, the
    /// user's `~/.config/chimera/templates`, then the stock templates built
    /// into chimera (so a workflow anywhere can use them).
    ///
    /// `--eject <name> [dir]` copies a stock template to `<dir>/<name>`
    /// (default `templates/`) for editing.
    Templates {
        /// The workflow whose search path to list (default: the current
        /// directory's); with `--eject`, the directory to copy into.
        workflow: Option<PathBuf>,
        /// Copy this stock template out for editing, e.g. `reports/agent-report.md.j2`.
        #[arg(long, value_name = "NAME")]
        eject: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a workflow and write its record to `runs/<timestamp>-<workflow>/`.
    ///
    /// The record holds `report.md` (for agents with a `report:` template),
    /// `metrics.json`, `calls.jsonl` (every prompt and response with its
    /// metrics) and `outputs/<agent>/<stage>.json`.
    ///
    /// A workflow with `runs:`/`warmup:` or `compare:` writes one such
    /// record per run plus `summary.*` or `comparison.*`. A workflow with a
    /// `matrix:` is a sweep: each cell's runs go to `cells/<key>/`, and
    /// `summary.{md,csv,json}` ranks the cells by `objective:`, marking the
    /// best and its ties. Run a sweep again with the same `--out` to keep
    /// the cells that finished and run the rest.
    Run(run::RunCommand),
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

#[derive(Debug, Subcommand)]
enum SweepCommand {
    /// List a sweep's cells: key (a hash of the cell's settings) and
    /// settings. `--json` gives a list to fan out over (Argo's
    /// `withParam`, a shell loop); `--shard K/N` lists one shard's cells.
    Plan {
        /// The workflow YAML file (with a `matrix:`).
        workflow: PathBuf,
        /// Only this shard's cells: `K/N` or `auto`.
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Say whether a component fits this chimera: the plugin interface
    /// version it was built for, whether this chimera links it, and what it
    /// describes (name, version, the schema of its `with:`, the variables
    /// its templates get). Exit code 0 when it fits, 2 when it does not.
    Check {
        /// The component (`.wasm`) to check.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Repeats, over the workflow's `runs:` and `warmup:`.
#[derive(Debug, Clone, Copy, clap::Args)]
struct PlanArgs {
    /// Measured runs (of each side of a `compare:`); over the workflow's
    /// `runs:`. More than one writes `summary.md`/`summary.json` (or
    /// `comparison.*`) with n, mean, sd, CV, min, p50, p95, max and a 95 %
    /// interval of the mean for every metric.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000), conflicts_with = "resume")]
    runs: Option<u32>,
    /// Warm-up runs before the measured ones: recorded, left out of every
    /// statistic; over the workflow's `warmup:`.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(0..=10_000), conflicts_with = "resume")]
    warmup: Option<u32>,
    /// Count cold calls (the first after a model load) in the call metrics;
    /// by default they are left out and counted separately.
    #[arg(long, conflicts_with = "resume")]
    include_cold: bool,
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
            Command::Validate { workflow } => {
                let host = host()?;
                let checked = prepare(&workflow, &host, None, None).await?;
                let w = &checked.workflow;
                let stages = w.stages().count();
                let cells = match &w.plan.matrix {
                    Some(m) => {
                        let cells: Vec<_> = m.cells.iter().collect();
                        sweep::variants(&checked, &cells, None, &host).await?;
                        format!(", {}", plural(cells.len(), "cell"))
                    }
                    None => String::new(),
                };
                println!(
                    "ok: `{}` is valid ({}, {}{cells})",
                    w.name,
                    plural(w.agents.len(), "agent"),
                    plural(stages, "stage")
                );
                Ok(())
            }
            Command::Plugins { workflow, json } => inspect::plugins(workflow, json).await,
            Command::Compare {
                baseline,
                candidate,
                force,
                include_cold,
                seed,
                out,
                json,
            } => compare::compare(&compare::CompareArgs {
                baseline,
                candidate,
                force,
                json,
                include_cold,
                seed,
                out,
            }),
            Command::New(cmd) => new::run(cmd),
            Command::Report { run_dir } => report::report(&run_dir).await,
            Command::Schema => {
                let schema = crate::workflow::workflow_json_schema();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&schema).unwrap_or_default()
                );
                Ok(())
            }
            Command::Sweep {
                command:
                    SweepCommand::Plan {
                        workflow,
                        shard,
                        json,
                    },
            } => {
                let shard = shard
                    .map(|s| shard::parse(&s, |k| std::env::var(k).ok()))
                    .transpose()
                    .map_err(|e| fail(2, &format!("error: {e}")))?;
                sweep::plan(&workflow, shard, json)
            }
            Command::Merge {
                dirs,
                out,
                allow_missing,
                json,
            } => {
                let result = merge::merge(&dirs, &out, allow_missing, json);
                crate::history::note_finished(&out);
                result
            }
            Command::Plugin {
                command: PluginCommand::Check { file, json },
            } => inspect::check_plugin(&file, json).await,
            Command::Templates {
                workflow,
                eject: Some(name),
                ..
            } => inspect::eject(&name, workflow.as_deref()),
            Command::Templates {
                workflow,
                json,
                eject: None,
            } => inspect::templates(workflow.as_deref(), json),
            Command::Run(command) => run::run_workflow(command).await,
            Command::Runs(command) => runs::runs(command),
            Command::Lock { workflow } => lock::write(&workflow).await,
            Command::Models {
                ollama_host,
                openai_host,
                api_key_env,
                json,
            } => {
                inspect::models(
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
            } => run::render(&workflow, &stage, agent.as_deref(), &run).await,
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

use crate::words::plural;

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
