//! docs/template-contexts.md lists exactly the variables the stock stages
//! pass to their templates: each built-in plugin's declared context and
//! the report template's.

mod common;

use chimera::plugin::{ComponentCache, PluginHost, PluginSource, builtins};
use common::root;

/// The first-column names of the table under the heading that starts with `heading`.
fn documented(doc: &str, heading: &str) -> Vec<String> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/template-contexts.md has no heading `{heading}`"));
    let section = &doc[start + heading.len()..];
    let section = section.find("\n## ").map_or(section, |end| &section[..end]);
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
        .collect()
}

#[test]
fn the_documented_contexts_are_the_ones_the_stages_pass() {
    let doc = std::fs::read_to_string(root().join("docs/template-contexts.md")).unwrap();
    assert_eq!(
        documented(&doc, "## The report template"),
        chimera::record::report::CONTEXT,
        "the report template's table"
    );

    let cache = tempfile::tempdir().unwrap();
    let host = PluginHost::new(ComponentCache::new(Some(cache.path().to_path_buf()))).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut rendering = Vec::new();
    for builtin in builtins() {
        let source = PluginSource::Builtin(builtin);
        let info = runtime
            .block_on(async {
                let loaded = host.load(&source).await?;
                host.describe(&loaded.prepared).await
            })
            .unwrap();
        if info.template_context.is_empty() {
            continue;
        }
        rendering.push(builtin.name);
        assert_eq!(
            documented(&doc, &format!("## `{}`", builtin.name)),
            info.template_context,
            "the table of `{}`",
            builtin.name
        );
    }
    assert_eq!(
        rendering,
        ["analyze", "report"],
        "the stock stages that render templates"
    );
}
