//! From a workflow path to a workflow checked whole, and what will produce
//! its run (the record's provenance).

use super::{RunArgs, fail};
use crate::plugin::{PluginHost, Resolver};
use crate::record::provenance::{Build, Machine, Provenance};
use crate::record::resume::SearchPaths;
use crate::template::Templates;
use crate::workflow::overrides::Scope;
use crate::workflow::{Located, Overrides, Workflow, WorkflowError};
use std::sync::Arc;

/// A workflow with the command line's overrides, checked whole
/// ([`crate::check`]), and the template environment it was checked with.
pub(super) struct Checked {
    pub workflow: Workflow,
    pub templates: Arc<Templates>,
    pub resolver: Resolver,
    pub plugins: std::collections::HashMap<String, crate::check::CheckedPlugin>,
    /// With a `compare:` block: the baseline and the candidate, each the
    /// workflow with its side's overrides, checked whole (labelled).
    pub sides: Vec<(String, Checked)>,
    /// Each of the workflow's `sources:` as it resolved, by name.
    pub sources: Vec<(String, crate::sources::SourceRecord)>,
}

impl Checked {
    /// What will produce the run, as its record keeps it.
    pub fn provenance(&self) -> Result<Provenance, u8> {
        use crate::digest::sha256_file;
        use crate::record::provenance::{PluginComponent, StageModel, WorkflowFile};
        let workflow_file =
            std::path::absolute(&self.workflow.path).unwrap_or(self.workflow.path.clone());
        let sha256 = sha256_file(&self.workflow.path).map_err(|e| {
            fail(
                2,
                &format!(
                    "error: cannot read workflow {}: {e}",
                    self.workflow.path.display()
                ),
            )
        })?;
        let mut plugins: Vec<PluginComponent> = Vec::new();
        for (_, stage) in self.workflow.stages() {
            let reference = &stage.plugin.value;
            if plugins.iter().any(|p| &p.reference == reference) {
                continue;
            }
            if let Some(p) = self.plugins.get(reference) {
                plugins.push(PluginComponent {
                    reference: reference.clone(),
                    name: p.info.name.clone(),
                    version: p.info.version.clone(),
                    origin: p.source.origin(),
                    sha256: p.source.sha256_hex().map_err(|e| {
                        fail(2, &format!("error: cannot read plugin `{reference}`: {e}"))
                    })?,
                });
            }
        }
        let models = self
            .workflow
            .stages()
            .filter_map(|(a, s)| {
                s.model.as_ref().map(|m| StageModel {
                    agent: a.id.clone(),
                    stage: s.id.clone(),
                    backend: m.backend.as_str().to_owned(),
                    name: m.name.clone(),
                    host: m.host.clone(),
                    options: m.options.clone(),
                    identity: None,
                })
            })
            .collect();
        Ok(Provenance {
            workflow: WorkflowFile {
                file: workflow_file,
                sha256,
            },
            chimera: Build::default(),
            machine: Machine::current(),
            template_path: self.templates.search_path().to_vec(),
            plugin_path: self.resolver.search_path.clone(),
            templates: Vec::new(),
            plugins,
            models,
            sources: self.sources.iter().cloned().collect(),
            lock: None,
        })
    }

    /// What `chimera.lock` pins for this workflow: its sources' commits and
    /// every template and plugin it (and a comparison's sides) loaded.
    pub fn lock_entry(&self) -> Result<crate::sources::lock::WorkflowLock, u8> {
        let mut entry = crate::sources::lock::WorkflowLock {
            file: crate::sources::lock::key_for(&self.workflow.path),
            sources: self.sources.iter().cloned().collect(),
            ..Default::default()
        };
        for checked in std::iter::once(self).chain(self.sides.iter().map(|(_, c)| c)) {
            for t in checked.templates.loaded() {
                entry.templates.insert(t.name, t.sha256);
            }
            for p in checked.provenance()?.plugins {
                entry.plugins.insert(p.reference, p.sha256);
            }
        }
        Ok(entry)
    }
}

/// Loads a workflow, applies the command line's model overrides and checks
/// everything knowable before the first model call.
pub(super) async fn prepare(
    path: &std::path::Path,
    host: &PluginHost,
    args: Option<&RunArgs>,
    search: Option<&SearchPaths>,
) -> Result<Checked, u8> {
    let mut workflow = Workflow::load(path).map_err(|e| match e {
        WorkflowError::Io { .. } => fail(2, &format!("error: {e}")),
        WorkflowError::Invalid(errors) => fail(2, &errors.to_string()),
    })?;
    let sources = crate::sources::resolve(&mut workflow, &crate::sources::cache_dir())
        .map_err(|problems| fail(2, &workflow.errors(problems).to_string()))?;
    if let Some(args) = args {
        let overrides = Overrides {
            backend: args.backend.clone(),
            model: args.model.clone(),
            set: args.set.clone(),
        };
        workflow
            .apply(&overrides)
            .map_err(|e| fail(2, &e.to_string()))?;
    }
    let (resolver, templates) = match search {
        Some(paths) => (
            Resolver {
                search_path: paths.plugins.clone(),
                sources: Vec::new(),
            }
            .with_sources(&workflow.source_roots),
            Templates::with_sources(paths.templates.clone(), workflow.source_roots.clone()),
        ),
        None => (
            Resolver::for_workflow(Some(&workflow.dir)).with_sources(&workflow.source_roots),
            Templates::with_sources(
                Templates::search_path_for(&workflow.dir),
                workflow.source_roots.clone(),
            ),
        ),
    };
    let templates = Arc::new(templates);
    let plugins = crate::check::workflow(&workflow, &resolver, &templates, host)
        .await
        .map_err(|problems| fail(2, &workflow.errors(problems).to_string()))?;
    let mut checked = Checked {
        workflow,
        templates,
        resolver,
        plugins,
        sides: Vec::new(),
        sources,
    };
    if let Some(compare) = checked.workflow.plan.compare.clone() {
        for side in [&compare.baseline, &compare.candidate] {
            let personas: Vec<(Scope, Located<String>)> = side
                .persona
                .iter()
                .map(|p| (Scope::default(), p.clone()))
                .collect();
            let variant = checked
                .variant(&side.overrides, &personas, &side.prompts, host)
                .await?;
            checked.sides.push((side.label.clone(), variant));
        }
    }
    Ok(checked)
}

impl Checked {
    /// The workflow with `overrides` applied, `personas` set (each on the
    /// agents its scope names) and `prompts` set (by stage id), checked whole in a template
    /// environment of its own, so its record names only the templates it
    /// loaded: a comparison's side, a sweep's cell.
    pub async fn variant(
        &self,
        overrides: &Overrides,
        personas: &[(Scope, Located<String>)],
        prompts: &[(Located<String>, Located<String>)],
        host: &PluginHost,
    ) -> Result<Checked, u8> {
        let mut workflow = self.workflow.clone();
        workflow
            .apply(overrides)
            .map_err(|e| fail(2, &e.to_string()))?;
        for agent in &mut workflow.agents {
            for (scope, persona) in personas {
                if scope.agent.as_deref().is_none_or(|a| a == agent.id) {
                    agent.persona = Some(persona.clone());
                }
            }
            for stage in &mut agent.stages {
                if let Some((_, prompt)) = prompts.iter().find(|(id, _)| id.value == stage.id) {
                    stage.prompt = Some(prompt.clone());
                }
            }
        }
        let templates = Arc::new(self.templates.fresh());
        let plugins = crate::check::workflow(&workflow, &self.resolver, &templates, host)
            .await
            .map_err(|problems| fail(2, &workflow.errors(problems).to_string()))?;
        Ok(Checked {
            workflow,
            templates,
            resolver: self.resolver.clone(),
            plugins,
            sides: Vec::new(),
            sources: self.sources.clone(),
        })
    }
}
