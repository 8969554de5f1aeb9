//! The agent as templates see it.

use minijinja::value::{Enumerator, Object};
use std::sync::Arc;

/// The agent a template renders for. In a template it prints as its id (so
/// `{{ agent }}` reads as before), and has the attributes `id`, `title` (the
/// id when the workflow gives none) and `description` (none when unset).
/// minijinja never equates an object with a string, so comparisons go
/// through `agent.id` (docs/template-contexts.md says so).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentInfo {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
}

impl AgentInfo {
    /// The agent as its templates see it (`agent.id`, `agent.title`, …).
    pub fn of(agent: &crate::workflow::Agent) -> Self {
        Self {
            id: agent.id.clone(),
            title: agent.title.clone(),
            description: agent.description.clone(),
        }
    }
}

impl Object for AgentInfo {
    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        match key.as_str()? {
            "id" => Some(self.id.clone().into()),
            "title" => Some(self.title.clone().into()),
            "description" => Some(minijinja::Value::from(self.description.clone())),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["id", "title", "description"])
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}
