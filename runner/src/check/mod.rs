//! Everything knowable about a workflow before its first model call, checked
//! by `chimera validate` and by `chimera run` before it starts: templates and
//! plugins resolve, every plugin loads and describes itself, each stage's
//! `with:` fits its plugin's schema, and every template compiles and uses
//! only variables its context provides. A workflow that passes does not fail
//! later for any of these reasons.

mod config;
mod templates;

pub use config::STAGE_FORMAT;

use crate::plugin::{PluginHost, PluginInfo, PluginSource, Resolver};
use crate::template::Templates;
use crate::workflow::{Diagnostic, Located, Workflow};
use std::collections::HashMap;
use templates::Use;

/// A plugin a workflow uses, loaded and described.
#[derive(Debug, Clone)]
pub struct CheckedPlugin {
    pub source: PluginSource,
    pub info: PluginInfo,
}

/// Checks `workflow`; the plugins it uses (by `plugin:` value) when it passes.
///
/// # Errors
/// Every problem found, sorted by position.
pub async fn workflow(
    workflow: &Workflow,
    resolver: &Resolver,
    templates: &Templates,
    host: &PluginHost,
) -> Result<HashMap<String, CheckedPlugin>, Vec<Diagnostic>> {
    let mut problems = references(workflow, resolver, templates);
    let mut plugins: HashMap<String, CheckedPlugin> = HashMap::new();
    for (_, stage) in workflow.stages() {
        let reference = &stage.plugin.value;
        if plugins.contains_key(reference) {
            continue;
        }
        let Ok(source) = resolver.resolve(reference, &workflow.dir) else {
            continue;
        };
        let info = match host.load_to_inspect(&source).await {
            Ok(loaded) => host.describe(&loaded.prepared).await,
            Err(e) => Err(e),
        };
        match info {
            Ok(info) => {
                plugins.insert(reference.clone(), CheckedPlugin { source, info });
            }
            // The error names the plugin and what is wrong with it.
            Err(e) => problems.push(
                Diagnostic::new(e.to_string(), stage.plugin.pos)
                    .help("`chimera plugin check <file.wasm>` says which interface a component targets and what it describes; `chimera plugins` lists the plugins Chimera finds"),
            ),
        }
    }
    for agent in &workflow.agents {
        let mut earlier = Vec::new();
        for stage in &agent.stages {
            if let Some(plugin) = plugins.get(&stage.plugin.value) {
                problems.extend(config::check(
                    &stage.plugin.value,
                    stage,
                    &plugin.info.config_schema,
                    &earlier,
                ));
            }
            earlier.push(stage.id.clone());
        }
    }
    for usage in uses(workflow, &plugins) {
        problems.extend(templates::check(templates, &usage));
    }
    if problems.is_empty() {
        Ok(plugins)
    } else {
        problems.sort_by_key(|d| d.pos.map(|p| (p.line, p.column)));
        problems.dedup();
        Err(problems)
    }
}

/// Every template a run will render, with the contexts it renders in.
fn uses<'a>(workflow: &'a Workflow, plugins: &HashMap<String, CheckedPlugin>) -> Vec<Use<'a>> {
    let context_of = |stage: &crate::workflow::Stage| {
        plugins
            .get(&stage.plugin.value)
            .map(|p| p.info.template_context.clone())
            .filter(|c| !c.is_empty())
    };
    let mut uses = Vec::new();
    for agent in &workflow.agents {
        // Every stage whose plugin renders templates may render the persona.
        let renderers: Vec<(String, Vec<String>)> = agent
            .stages
            .iter()
            .filter_map(|s| {
                context_of(s)
                    .map(|c| (format!("stage `{}` (plugin `{}`)", s.id, s.plugin.value), c))
            })
            .collect();
        if let Some(persona) = &agent.persona {
            uses.push(Use {
                role: format!("the persona of agent `{}`", agent.id),
                name: persona,
                contexts: renderers,
            });
        }
        for stage in &agent.stages {
            if let Some(prompt) = &stage.prompt {
                uses.push(Use {
                    role: format!("the prompt of stage `{}`", stage.id),
                    name: prompt,
                    contexts: context_of(stage)
                        .map(|c| {
                            vec![(
                                format!("stage `{}` (plugin `{}`)", stage.id, stage.plugin.value),
                                c,
                            )]
                        })
                        .unwrap_or_default(),
                });
            }
        }
        if let Some(report) = &agent.report {
            uses.push(Use {
                role: format!("the report of agent `{}`", agent.id),
                name: report,
                contexts: vec![(
                    "the report context".to_owned(),
                    crate::record::report::CONTEXT
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect(),
                )],
            });
        }
    }
    uses
}

/// Templates exist on the search path and plugins resolve.
pub fn references(
    workflow: &Workflow,
    resolver: &Resolver,
    templates: &Templates,
) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let mut template = |name: &Located<String>, what: &str| {
        if !templates.exists(&name.value) {
            problems.push(
                Diagnostic::new(
                    format!("{what} template `{}` not found", name.value),
                    name.pos,
                )
                .help(templates.not_found_help_for(&name.value)),
            );
        }
    };
    for agent in &workflow.agents {
        if let Some(persona) = &agent.persona {
            template(persona, "persona");
        }
        if let Some(report) = &agent.report {
            template(report, "report");
        }
        for stage in &agent.stages {
            if let Some(prompt) = &stage.prompt {
                template(prompt, "prompt");
            }
        }
    }
    for (_, stage) in workflow.stages() {
        if let Err(e) = resolver.resolve(&stage.plugin.value, &workflow.dir) {
            problems.push(Diagnostic::new(e.to_string(), stage.plugin.pos).help(e.help()));
        }
    }
    problems
}
