//! `chimera plugins` and `chimera models`: what Chimera can find.

use super::{fail, host};
use crate::llm::Timeouts;
use crate::plugin::{PluginHost, PluginSource, Resolver};
use crate::template::Templates;
use std::path::PathBuf;
use std::time::Duration;

pub(super) async fn plugins(workflow: Option<PathBuf>, json: bool) -> Result<(), u8> {
    let dir = workflow.as_deref().map(|w| {
        w.parent()
            .filter(|p| !p.as_os_str().is_empty())
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
        println!("searched, in order (first match wins):");
        for dir in &resolver.search_path {
            let note = if dir.is_dir() { "" } else { "  (absent)" };
            println!("  {}{note}", dir.display());
        }
        println!("  the built-in plugins\n");
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

pub(super) async fn models(
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

/// `chimera templates`: every template a workflow can see, where each
/// resolves from, and which same-named files it shadows.
pub(super) fn templates(workflow: Option<&std::path::Path>, json: bool) -> Result<(), u8> {
    let dir = workflow.map_or_else(
        || PathBuf::from("."),
        |w| {
            w.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf)
        },
    );
    let templates = Templates::new(Templates::search_path_for(&dir));
    let mut names = std::collections::BTreeSet::new();
    for root in templates.search_path() {
        if crate::template::is_builtin(root) {
            names.extend(crate::template::STOCK.iter().map(|(n, _)| (*n).to_owned()));
        } else {
            collect(root, root, &mut names);
        }
    }
    let rows: Vec<serde_json::Value> = names
        .iter()
        .filter_map(|name| {
            let mut found = templates.candidates(name).into_iter();
            let winner = found.next()?;
            Some(serde_json::json!({
                "name": name,
                "file": winner.file,
                "from": winner.root,
                "sha256": winner.sha256,
                "shadows": found.map(|s| s.file).collect::<Vec<_>>(),
            }))
        })
        .collect();
    if json {
        let out = serde_json::json!({ "search_path": templates.search_path(), "templates": rows });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!("search path (first match wins):");
    for (i, root) in templates.search_path().iter().enumerate() {
        let state = if crate::template::is_builtin(root) {
            "  (the stock templates built into chimera)"
        } else if root.is_dir() {
            ""
        } else {
            "  (absent)"
        };
        println!("  {}. {}{state}", i + 1, root.display());
    }
    if rows.is_empty() {
        println!("no templates found");
        return Ok(());
    }
    let width = rows
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("").len())
        .max()
        .unwrap_or(0)
        .max("NAME".len());
    println!("{:width$}  FILE", "NAME");
    for row in &rows {
        println!(
            "{:width$}  {}",
            row["name"].as_str().unwrap_or(""),
            row["file"].as_str().unwrap_or("")
        );
        for shadowed in row["shadows"].as_array().into_iter().flatten() {
            println!(
                "{:width$}    shadows {}",
                "",
                shadowed.as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

/// `chimera templates --eject <name> [dir]`: a stock template copied to
/// `<dir>/<name>` (default `templates/`) for editing; an existing file is
/// never overwritten.
pub(super) fn eject(name: &str, dir: Option<&std::path::Path>) -> Result<(), u8> {
    let Some((_, text)) = crate::template::STOCK.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = crate::template::STOCK.iter().map(|(n, _)| *n).collect();
        return Err(fail(
            2,
            &format!(
                "error: no stock template named `{name}`\n  = help: the stock templates are {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let target = dir.unwrap_or(std::path::Path::new("templates")).join(name);
    if target.exists() {
        return Err(fail(
            2,
            &format!(
                "error: {} exists; nothing was written\n  = help: move it aside to eject the stock one again",
                target.display()
            ),
        ));
    }
    target
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&target, text))
        .map_err(|e| fail(1, &format!("error: cannot write {}: {e}", target.display())))?;
    println!("{}", target.display());
    Ok(())
}

/// Every regular file under `dir`, as names relative to `root`.
fn collect(
    root: &std::path::Path,
    dir: &std::path::Path,
    names: &mut std::collections::BTreeSet<String>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect(root, &path, names);
        } else if let Ok(relative) = path.strip_prefix(root) {
            names.insert(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// `chimera plugin check`: whether a component fits, and what it says.
pub(super) async fn check_plugin(file: &std::path::Path, json: bool) -> Result<(), u8> {
    let name = file
        .file_stem()
        .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned());
    let bytes = std::fs::read(file)
        .map_err(|e| fail(2, &format!("error: cannot read {}: {e}", file.display())))?;
    let target = PluginHost::check_interface(&name, &bytes)
        .map_err(|e| fail(2, &format!("error: {}: {e}", file.display())))?;
    let host = host()?;
    let source = PluginSource::File {
        name: name.clone(),
        path: file.to_path_buf(),
    };
    let info = match host.load_to_inspect(&source).await {
        Ok(loaded) => host.describe(&loaded.prepared).await,
        Err(e) => Err(e),
    }
    .map_err(|e| fail(2, &format!("error: {}: {e}", file.display())))?;
    let version = target.version.unwrap_or_default();
    if json {
        let out = serde_json::json!({
            "file": file, "fits": true,
            "interface": format!("chimera:plugin@{version}"), "evidence": target.evidence,
            "name": info.name, "version": info.version, "description": info.description,
            "config_schema": info.config_schema, "template_context": info.template_context,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!("ok: {} fits this chimera", file.display());
    println!(
        "  interface  chimera:plugin@{version} (read from its {})",
        target.evidence
    );
    println!(
        "  plugin     {} {}: {}",
        info.name, info.version, info.description
    );
    let keys: Vec<String> = info.config_schema["properties"]
        .as_object()
        .map(|p| p.keys().map(|k| format!("`{k}`")).collect())
        .unwrap_or_default();
    if keys.is_empty() {
        println!("  with:      no settings declared");
    } else {
        println!("  with:      {}", keys.join(", "));
    }
    if info.template_context.is_empty() {
        println!("  templates  renders none");
    } else {
        println!(
            "  templates  rendered with {}",
            info.template_context
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
