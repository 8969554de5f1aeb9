//! The modules of `runner/src` import one way: each may use the modules of
//! the layers below its own, never one of its own layer or above, so the data
//! path (cli → engine → plugin → llm / template, everything written by
//! record) never turns back and no two modules depend on each other.
//! ARCHITECTURE.md draws the same layers.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

/// Bottom to top. A module missing here fails the test, so a new one gets a
/// place on purpose.
const LAYERS: &[&[&str]] = &[
    &[
        "words",
        "digest",
        "files",
        "suggest",
        "search_path",
        "stats",
    ],
    &["workflow"],
    &["sources", "template", "llm"],
    &["plugin"],
    &["record"],
    &["engine", "check", "history"],
    &["progress"],
    &["cli"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` has no layer in runner/tests/layers.rs"))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first path segments after `crate::`: one (`crate::llm::…`), or each
/// item of a group (`crate::{llm::Backend, record}`).
fn named_after(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        return Some(ident(rest))
            .filter(|i| !i.is_empty())
            .into_iter()
            .collect();
    };
    let (mut depth, mut items, mut start) = (0, Vec::new(), 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(ident(&group[start..i]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(ident(&group[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    items.retain(|i| !i.is_empty());
    items
}

#[test]
fn a_grouped_import_names_each_module_in_it() {
    assert_eq!(named_after("llm::Backend;"), ["llm"]);
    assert_eq!(
        named_after("{llm::{Backend, Message}, record,\n  words::plural};"),
        ["llm", "record", "words"]
    );
}

/// Every `crate::<module>` a top-level module names, with the first file
/// that names it. (`super::` stays inside a top-level module: within
/// `runner/src` no top-level module reaches another through it.)
fn imports() -> BTreeMap<(String, String), String> {
    let src = common::root().join("runner/src");
    let mut edges = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path.clone());
        }
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (at, _) in text.match_indices("crate::") {
                for used in named_after(&text[at + "crate::".len()..]) {
                    let is_module =
                        src.join(&used).is_dir() || src.join(format!("{used}.rs")).is_file();
                    if used != name && is_module {
                        edges.entry((name.clone(), used)).or_insert_with(|| {
                            file.strip_prefix(&src).unwrap().display().to_string()
                        });
                    }
                }
            }
        }
    }
    edges
}

#[test]
fn every_module_imports_only_the_layers_below_its_own() {
    let edges = imports();
    assert!(
        edges.contains_key(&("engine".into(), "plugin".into())),
        "the scan finds imports: {edges:?}"
    );
    let wrong: Vec<String> = edges
        .iter()
        .filter(|((from, to), _)| layer_of(to) >= layer_of(from))
        .map(|((from, to), file)| format!("`{from}` uses `{to}` (in {file})"))
        .collect();
    assert!(
        wrong.is_empty(),
        "imports that turn back or sideways:\n{}",
        wrong.join("\n")
    );
}
