//! The directories a workflow's templates and plugins are looked up in:
//! `<sub>/` beside the workflow, `<sub>/` in its parent directory (a
//! project's root when workflows live in `<project>/workflows/`), then the
//! directories of an environment variable.

use std::path::{Path, PathBuf};

/// `<workflow_dir>/<sub>`, `<parent>/<sub>`, then each directory on `env_var`.
pub fn around_workflow(workflow_dir: Option<&Path>, sub: &str, env_var: &str) -> Vec<PathBuf> {
    let mut path = Vec::new();
    if let Some(dir) = workflow_dir {
        path.push(dir.join(sub));
        if let Some(parent) = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.parent().map(Path::to_path_buf))
        {
            path.push(parent.join(sub));
        }
    }
    if let Some(extra) = std::env::var_os(env_var) {
        path.extend(std::env::split_paths(&extra).filter(|p| !p.as_os_str().is_empty()));
    }
    path
}

/// Drops later entries naming a directory already on the path.
pub fn dedup(path: &mut Vec<PathBuf>) {
    let mut seen = Vec::new();
    path.retain(|p| {
        let key = p.canonicalize().unwrap_or_else(|_| p.clone());
        let new = !seen.contains(&key);
        seen.push(key);
        new
    });
}
