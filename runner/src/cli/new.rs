//! `chimera new`: a project folder that validates and runs as written, and
//! `chimera new plugin`: one plugin crate against the SDK.
//!
//! Everything written comes from this binary: the scaffold's own files
//! (`runner/scaffold/`), the stock templates, a sample artifact, and the
//! plugin SDK with the WIT interface this chimera speaks, so a project
//! needs neither Chimera's repository nor a network to build its plugin
//! (the SDK's dependency versions are pinned by the lock file written with
//! each plugin).

use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(super) struct NewCommand {
    #[command(subcommand)]
    command: Option<NewWhat>,
    /// The project directory to create (it must not exist, or be empty).
    #[arg(required = true)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum NewWhat {
    /// A plugin crate: `<dir>/<name>/` (Cargo.toml, src/lib.rs, a lock
    /// file), and the SDK in `<dir>/chimera-plugin/` when it is not there.
    Plugin {
        /// The plugin's name: what workflows write as `plugin: <name>`.
        name: String,
        /// Where plugin crates live (a project's `plugins/`).
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
    },
}

/// A file the scaffold writes: its path in the project and its text.
type File = (String, String);

const WORKFLOW: &str = include_str!("../../scaffold/workflows/agent.yaml");
const PERSONA: &str = include_str!("../../scaffold/templates/personas/analyst.md.j2");
const README: &str = include_str!("../../scaffold/README.md");
const PLUGIN_MANIFEST: &str = include_str!("../../scaffold/plugin/Cargo.toml");
const PLUGIN_LIB: &str = include_str!("../../scaffold/plugin/src/lib.rs");
const SDK_MANIFEST: &str = include_str!("../../scaffold/sdk/Cargo.toml");
/// The guest workspace's lock: the SDK's dependencies at the versions
/// Chimera's own plugins are built and tested with.
const LOCK: &str = include_str!("../../../plugins/Cargo.lock");

/// The SDK's sources, by path inside its crate.
const SDK_FILES: &[(&str, &str)] = &[
    (
        "src/lib.rs",
        include_str!("../../../plugins/sdk/src/lib.rs"),
    ),
    (
        "src/files.rs",
        include_str!("../../../plugins/sdk/src/files.rs"),
    ),
    (
        "wit/plugin.wit",
        include_str!("../../../wit/0.1.0/plugin.wit"),
    ),
];

const SAMPLE: &str = include_str!("../../../sample-data/csv_data/gemma3_param_sweep.csv");

pub(super) fn run(cmd: NewCommand) -> Result<(), u8> {
    match (cmd.command, cmd.dir) {
        (Some(NewWhat::Plugin { name, dir }), _) => new_plugin(&name, &dir),
        (None, Some(dir)) => new_project(&dir),
        (None, None) => Err(super::fail(
            2,
            "error: say what to create: `chimera new <dir>` or `chimera new plugin <name>`",
        )),
    }
}

fn new_project(dir: &Path) -> Result<(), u8> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| valid_name(n))
        .ok_or_else(|| {
            super::fail(
                2,
                &format!(
                    "error: cannot name a project after `{}`\n  = help: the last part of the directory is the workflow's name: use letters, digits, `-` and `_`, starting with a letter",
                    dir.display()
                ),
            )
        })?;
    empty_or_absent(dir)?;
    let title = title_case(&name);
    let fill = |text: &str| text.replace("__NAME__", &name).replace("__TITLE__", &title);
    let mut files: Vec<File> = vec![
        ("README.md".into(), fill(README)),
        (format!("workflows/{name}.yaml"), fill(WORKFLOW)),
        ("templates/personas/analyst.md.j2".into(), PERSONA.into()),
        ("data/csv_data/gemma3_param_sweep.csv".into(), SAMPLE.into()),
    ];
    // Copies of the stock prompts, report and macros, to edit (the persona
    // is the project's own; the built-in ones stay available by name).
    files.extend(
        crate::template::STOCK
            .iter()
            .filter(|(path, _)| !path.starts_with("personas/"))
            .map(|(path, text)| (format!("templates/{path}"), (*text).to_owned())),
    );
    files.extend(plugin_files("hello", Path::new("plugins"), true));
    write_all(dir, &files)?;
    println!("created {}: {}", dir.display(), describe(&files));
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  {}", build_command("hello", Path::new("plugins")));
    println!("  chimera validate workflows/{name}.yaml");
    println!(
        "  chimera run workflows/{name}.yaml --input data   # or add --backend embedded --model smollm2-135m"
    );
    Ok(())
}

fn new_plugin(name: &str, dir: &Path) -> Result<(), u8> {
    if name == "chimera-plugin" || name == "chimera_plugin" {
        return Err(super::fail(
            2,
            &format!(
                "error: `{name}` is the SDK's own crate, which `chimera new plugin` writes beside each plugin\n  = help: choose another name"
            ),
        ));
    }
    if !valid_name(name) {
        return Err(super::fail(
            2,
            &format!(
                "error: `{name}` cannot be a plugin's name\n  = help: use letters, digits, `-` and `_`, starting with a letter (workflows write it as `plugin: {name}`)"
            ),
        ));
    }
    empty_or_absent(&dir.join(name))?;
    let with_sdk = !dir.join("chimera-plugin").join("Cargo.toml").is_file();
    let files: Vec<File> = plugin_files(name, Path::new(""), with_sdk);
    write_all(dir, &files)?;
    println!("created {}: {}", dir.join(name).display(), describe(&files));
    println!(
        "build it from the directory that holds `{}`:",
        dir.display()
    );
    println!("  {}", build_command(name, dir));
    Ok(())
}

/// The plugin crate `name` under `under`, and the SDK beside it when asked.
fn plugin_files(name: &str, under: &Path, with_sdk: bool) -> Vec<File> {
    let at = |path: &str| under.join(path).to_string_lossy().into_owned();
    let krate = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("__NAME__", name)
            .replace("__CRATE__", &krate)
            .replace("__VERSION__", env!("CARGO_PKG_VERSION"))
    };
    let mut files = vec![
        (at(&format!("{name}/Cargo.toml")), fill(PLUGIN_MANIFEST)),
        (at(&format!("{name}/src/lib.rs")), fill(PLUGIN_LIB)),
        (at(&format!("{name}/Cargo.lock")), LOCK.to_owned()),
    ];
    if with_sdk {
        files.push((at("chimera-plugin/Cargo.toml"), fill(SDK_MANIFEST)));
        for (path, text) in SDK_FILES {
            // In Chimera's repository the SDK reads the WIT two levels up.
            let text = text.replace("\"../../wit/0.1.0\"", "\"wit\"");
            files.push((at(&format!("chimera-plugin/{path}")), text));
        }
    }
    files
}

/// The one line that builds plugin `name` in `dir` and puts its component
/// where `plugin: <name>` finds it.
fn build_command(name: &str, dir: &Path) -> String {
    let dir = dir.display();
    let krate = name.replace('-', "_");
    format!(
        "cargo build --release --target wasm32-wasip2 --manifest-path {dir}/{name}/Cargo.toml && cp {dir}/{name}/target/wasm32-wasip2/release/{krate}.wasm {dir}/{name}.wasm"
    )
}

/// Letters, digits, `-` and `_`, starting with a letter: a file name, a
/// crate name and a workflow name at once.
fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn title_case(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn empty_or_absent(dir: &Path) -> Result<(), u8> {
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    match occupied {
        true => Err(super::fail(
            2,
            &format!(
                "error: {} exists and is not empty\n  = help: choose a new directory; nothing was written",
                dir.display()
            ),
        )),
        false => Ok(()),
    }
}

/// Writes every file, or (when one fails) removes what it wrote: the files,
/// then the directories it made, deepest first.
fn write_all(dir: &Path, files: &[File]) -> Result<(), u8> {
    let mut written = Vec::new();
    let mut made: Vec<std::path::PathBuf> = Vec::new();
    for (path, text) in files {
        let path = dir.join(path);
        // The directories this file needs that are not there yet.
        let mut missing = Vec::new();
        let mut at = path.parent();
        while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            missing.push(d.to_path_buf());
            at = d.parent();
        }
        let result = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text));
        made.extend(missing.into_iter().rev());
        if let Err(e) = result {
            for done in &written {
                let _ = std::fs::remove_file(done);
            }
            for d in made.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
            return Err(super::fail(
                2,
                &format!(
                    "error: cannot write {}: {e}\n  = help: check that the directory is writable; the files written before were removed",
                    path.display()
                ),
            ));
        }
        written.push(path);
    }
    Ok(())
}

fn describe(files: &[File]) -> String {
    crate::words::plural(files.len(), "file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_titled() {
        assert!(valid_name("perf-lab_2"));
        for bad in ["", "2fast", "a b", "../x", "a/b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert_eq!(title_case("perf-lab_two"), "Perf Lab Two");
    }

    #[test]
    fn the_sdk_reads_its_interface_from_beside_it() {
        let files = plugin_files("probe", Path::new("plugins"), true);
        let lib = files
            .iter()
            .find(|(p, _)| p == "plugins/chimera-plugin/src/lib.rs")
            .unwrap();
        assert!(lib.1.contains("path: \"wit\""), "the WIT path is rewritten");
        assert!(
            files
                .iter()
                .any(|(p, _)| p == "plugins/chimera-plugin/wit/plugin.wit")
        );
        let manifest = &files[0].1;
        assert!(manifest.contains("name = \"probe\""), "{manifest}");
    }
}
