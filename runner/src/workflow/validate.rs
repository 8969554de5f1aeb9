//! From the raw schema to the checked model: the checks serde cannot
//! express (ids, versions, options, durations, grants), each problem with
//! its position.

use super::node::Node;
use super::schema::{RawAgent, RawModel, RawStage, RawWorkflow};
use super::{
    Agent, BackendKind, DEFAULT_MAX_LLM_CALLS, DEFAULT_MEMORY, DEFAULT_TIMEOUT,
    DEFAULT_WRITE_LIMIT, Diagnostic, Located, ModelSpec, Pos, SCHEMA_VERSION, Stage, options,
};
use serde_json::Value;
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::time::Duration;

fn pos<T>(s: &Spanned<T>) -> Pos {
    s.referenced.into()
}

fn located(s: &Spanned<String>) -> Located<String> {
    Located {
        value: s.value.clone(),
        pos: pos(s),
    }
}

/// The checks after parsing. Collects every problem rather than stopping at the first.
pub fn check(raw: RawWorkflow) -> Result<(String, Option<String>, Vec<Agent>), Vec<Diagnostic>> {
    let mut errors = Vec::new();
    if raw.version.value != SCHEMA_VERSION {
        errors.push(
            Diagnostic::new(
                format!("unsupported workflow `version: {}`", raw.version.value),
                pos(&raw.version),
            )
            .help(format!("this chimera reads `version: {SCHEMA_VERSION}`")),
        );
    }
    check_id("workflow name", &raw.name, &mut errors);
    if raw.agents.value.is_empty() {
        errors.push(
            Diagnostic::new("the workflow has no agents", pos(&raw.agents))
                .help("add at least one agent with `id:` and `stages:`"),
        );
    }
    let mut agent_ids: HashMap<&str, Pos> = HashMap::new();
    let mut agents = Vec::new();
    for agent in &raw.agents.value {
        check_id("agent id", &agent.id, &mut errors);
        if let Some(first) = first_seen(&mut agent_ids, &agent.id) {
            errors.push(
                Diagnostic::new(
                    format!("duplicate agent id `{}`", agent.id.value),
                    pos(&agent.id),
                )
                .note(first, "first defined here")
                .help("agent ids must be unique in a workflow"),
            );
        }
        agents.push(check_agent(agent, raw.model.as_ref(), &mut errors));
    }
    if errors.is_empty() {
        Ok((raw.name.value, raw.description, agents))
    } else {
        errors.sort_by_key(|d| d.pos.map(|p| (p.line, p.column)));
        Err(errors)
    }
}

/// Where `id` was seen first, if it was; records it otherwise.
fn first_seen<'a>(seen: &mut HashMap<&'a str, Pos>, id: &'a Spanned<String>) -> Option<Pos> {
    match seen.entry(&id.value) {
        std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(pos(id));
            None
        }
    }
}

fn check_id(what: &str, id: &Spanned<String>, errors: &mut Vec<Diagnostic>) {
    let ok = !id.value.is_empty()
        && id
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && id
            .value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        errors.push(
            Diagnostic::new(
                format!("{what} `{}` is not a valid name", id.value),
                pos(id),
            )
            .help("use letters, digits, `-`, `_` and `.`, starting with a letter or digit"),
        );
    }
}

fn check_agent(
    agent: &RawAgent,
    workflow_model: Option<&RawModel>,
    errors: &mut Vec<Diagnostic>,
) -> Agent {
    if agent.stages.value.is_empty() {
        errors.push(
            Diagnostic::new(
                format!("agent `{}` has no stages", agent.id.value),
                pos(&agent.stages),
            )
            .help("add stages, e.g. `- id: ingest` with `plugin: ingest`"),
        );
    }
    let mut stage_ids: HashMap<&str, Pos> = HashMap::new();
    let stages = agent
        .stages
        .value
        .iter()
        .map(|stage| {
            check_id("stage id", &stage.id, errors);
            if let Some(first) = first_seen(&mut stage_ids, &stage.id) {
                errors.push(
                    Diagnostic::new(format!("duplicate stage id `{}` in agent `{}`", stage.id.value, agent.id.value), pos(&stage.id))
                        .note(first, "first defined here")
                        .help("stage ids must be unique within an agent; later stages read earlier outputs by id"),
                );
            }
            let model = merge_models(&[workflow_model, agent.model.as_ref(), stage.model.as_ref()], &stage.id, errors);
            check_stage(stage, model, errors)
        })
        .collect();
    for template in [&agent.persona, &agent.report].into_iter().flatten() {
        check_template_name(template, errors);
    }
    Agent {
        id: agent.id.value.clone(),
        title: agent
            .title
            .clone()
            .unwrap_or_else(|| agent.id.value.clone()),
        description: agent.description.clone(),
        report: agent.report.as_ref().map(located),
        persona: agent.persona.as_ref().map(located),
        needs: agent.needs.iter().map(located).collect(),
        stages,
    }
}

fn check_stage(stage: &RawStage, model: Option<ModelSpec>, errors: &mut Vec<Diagnostic>) -> Stage {
    let (config, config_positions) = stage.with.as_ref().map(Node::to_json).unwrap_or_default();
    let config = match config {
        Value::Object(_) => config,
        Value::Null => Value::Object(serde_json::Map::new()),
        _ => {
            errors.push(
                Diagnostic::new(
                    format!(
                        "`with:` of stage `{}` must be a mapping of settings",
                        stage.id.value
                    ),
                    config_positions.value(""),
                )
                .help("write `with:` followed by indented `key: value` lines"),
            );
            Value::Null
        }
    };
    if stage.plugin.value.trim().is_empty() {
        errors.push(
            Diagnostic::new("`plugin:` is empty", pos(&stage.plugin))
                .help("name a built-in plugin (`ingest`) or a path to a `.wasm` component"),
        );
    }
    if let Some(prompt) = &stage.prompt {
        check_template_name(prompt, errors);
    }
    let timeout = stage.timeout.as_ref().map_or(DEFAULT_TIMEOUT, |t| {
        parse_duration(&t.value).unwrap_or_else(|| {
            errors.push(
                Diagnostic::new(
                    format!("`timeout: {}` is not a duration", plain(&t.value)),
                    pos(t),
                )
                .help("write e.g. `timeout: 600s`, `10m` or `1h`"),
            );
            DEFAULT_TIMEOUT
        })
    });
    let memory_limit = stage.memory.as_ref().map_or(DEFAULT_MEMORY, |m| {
        parse_bytes(&m.value).unwrap_or_else(|| {
            errors.push(
                Diagnostic::new(
                    format!("`memory: {}` is not a size", plain(&m.value)),
                    pos(m),
                )
                .help("write e.g. `memory: 256MiB` or `1GiB`"),
            );
            DEFAULT_MEMORY
        })
    });
    let write_limit = stage.write_limit.as_ref().map_or(DEFAULT_WRITE_LIMIT, |m| {
        parse_bytes(&m.value).map_or_else(
            || {
                errors.push(
                    Diagnostic::new(
                        format!("`write_limit: {}` is not a size", plain(&m.value)),
                        pos(m),
                    )
                    .help("write e.g. `write_limit: 64MiB` or `1GiB`"),
                );
                DEFAULT_WRITE_LIMIT
            },
            |n| n as u64,
        )
    });
    let read: Vec<String> = stage
        .read
        .iter()
        .filter_map(|r| match check_grant(&r.value, "the input directory") {
            Ok(g) => Some(g),
            Err(why) => {
                errors.push(Diagnostic::new(format!("read grant `{}` {why}", r.value), pos(r)).help("grants are directories relative to the run's `--input` directory, e.g. `read: [reports]`"));
                None
            }
        })
        .collect();
    let write = stage.write.as_ref().and_then(|w| {
        match check_grant(&w.value, "the stage's files directory") {
            Ok(g) => Some(g),
            Err(why) => {
                errors.push(
                    Diagnostic::new(format!("write grant `{}` {why}", w.value), pos(w))
                        .help(WRITE_HELP),
                );
                None
            }
        }
    });
    if let Some(w) = stage
        .write
        .as_ref()
        .filter(|_| write.as_ref().is_some_and(|w| read.contains(w)))
    {
        errors.push(
            Diagnostic::new(
                format!("write grant `{}` has the name of a read grant", w.value),
                pos(w),
            )
            .help(WRITE_HELP),
        );
    }
    Stage {
        id: stage.id.value.clone(),
        plugin: located(&stage.plugin),
        config,
        config_positions,
        prompt: stage.prompt.as_ref().map(located),
        needs: stage.needs.iter().map(located).collect(),
        model,
        timeout,
        read,
        write,
        write_limit,
        memory_limit,
        allowed_models: stage.models.as_ref().map(|m| m.value.clone()),
        max_llm_calls: stage
            .max_llm_calls
            .as_ref()
            .map_or(DEFAULT_MAX_LLM_CALLS, |m| m.value),
        max_llm_tokens: stage.max_llm_tokens.as_ref().map(|m| m.value),
    }
}

const WRITE_HELP: &str = "`write:` names the one directory the plugin may write, e.g. `write: out`; it is kept in the run record under `files/<agent>/<stage>/`";

/// A grant is a relative path that stays inside `root` (named for messages).
fn check_grant(grant: &str, root: &str) -> Result<String, String> {
    let path = std::path::Path::new(grant);
    if grant.trim().is_empty() {
        return Err("is empty".into());
    }
    if path.is_absolute() || grant.starts_with('/') || grant.starts_with('\\') {
        return Err("is an absolute path".into());
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!("leaves {root} with `..`"));
    }
    let normal: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    if normal.is_empty() {
        return Err(format!("names {root} itself; grant a subdirectory"));
    }
    Ok(normal.join("/"))
}

/// Template names are relative to the template search path.
fn check_template_name(name: &Spanned<String>, errors: &mut Vec<Diagnostic>) {
    if let Err(why) = super::sources::check_template_name(&name.value) {
        errors.push(
            Diagnostic::new(format!("template name `{}` {why}", name.value), pos(name)).help(
                "name templates relative to a `templates/` directory, e.g. `prompts/analyze.md.j2`",
            ),
        );
    }
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// `600s`, `10m`, `1h30m`, `1.5s`, or a number of seconds.
pub fn parse_duration(v: &Value) -> Option<Duration> {
    if let Some(n) = v.as_f64() {
        return (n > 0.0 && n.is_finite()).then(|| Duration::from_secs_f64(n));
    }
    let s = v.as_str()?.trim();
    let d: jiff::SignedDuration = s.parse().ok()?;
    (d.is_positive()).then(|| d.unsigned_abs())
}

/// `256MiB`, `1GiB`, `512MB`, or a number of bytes.
pub fn parse_bytes(v: &Value) -> Option<usize> {
    if let Some(n) = v.as_u64() {
        return usize::try_from(n).ok().filter(|n| *n > 0);
    }
    let s = v.as_str()?.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: usize = num.parse().ok()?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    num.checked_mul(mult).filter(|n| *n > 0)
}

/// Stage over agent over workflow, field by field; options merge by name.
fn merge_models(
    levels: &[Option<&RawModel>],
    stage: &Spanned<String>,
    errors: &mut Vec<Diagnostic>,
) -> Option<ModelSpec> {
    if levels.iter().all(Option::is_none) {
        return None;
    }
    let mut backend: Option<&Spanned<String>> = None;
    let mut name = None;
    let mut host = None;
    let mut hosts: Vec<super::PoolHost> = Vec::new();
    let mut api_key_env = None;
    let mut keep_alive = None;
    let mut options = indexmap::IndexMap::new();
    for level in levels.iter().flatten() {
        backend = level.backend.as_ref().or(backend);
        name = level.name.as_ref().or(name);
        // A level's `host:` pins what a level above pooled, and its
        // `hosts:` pools what a level above pinned.
        if let Some(h) = &level.host {
            host = Some(h);
            hosts.clear();
        }
        if let Some(pool) = &level.hosts {
            if let Some(h) = &level.host {
                let d = Diagnostic::new("a model has `host:` or `hosts:`, not both", pos(h))
                    .help("one server: `host:`; a pool: `hosts:`");
                if !errors.contains(&d) {
                    errors.push(d);
                }
            }
            let mut problem = |message: &str, help: &str| {
                let d = Diagnostic::new(message, pos(pool)).help(help);
                if !errors.contains(&d) {
                    errors.push(d);
                }
            };
            if pool.value.is_empty() {
                problem(
                    "`hosts:` is empty",
                    "list at least one server, or write `host:`",
                );
            }
            host = None;
            hosts = pool
                .value
                .iter()
                .map(|h| match h {
                    super::schema::RawPoolHost::Url(url) => super::PoolHost {
                        url: url.clone(),
                        max_concurrency: None,
                    },
                    super::schema::RawPoolHost::Full(full) => super::PoolHost {
                        url: full.url.clone(),
                        max_concurrency: full.max_concurrency,
                    },
                })
                .collect();
            if hosts.iter().any(|h| h.max_concurrency == Some(0)) {
                problem(
                    "a host of `hosts:` has `max_concurrency: 0` and would never take a call",
                    "at least 1, or leave it out for no bound",
                );
            }
        }
        api_key_env = level.api_key_env.as_ref().or(api_key_env);
        keep_alive = level.keep_alive.as_ref().or(keep_alive);
        for (k, v) in &level.options {
            if let Err((msg, help)) = options::check(&k.value, &v.value) {
                let at = if msg.starts_with("unknown") {
                    pos(k)
                } else {
                    pos(v)
                };
                let d = Diagnostic::new(msg, at).help_opt(help);
                if !errors.contains(&d) {
                    errors.push(d);
                }
            }
            options.insert(k.value.clone(), v.value.clone());
        }
    }
    let backend_kind = match backend {
        None => BackendKind::Ollama,
        Some(b) => BackendKind::parse(&b.value).unwrap_or_else(|| {
            let help = crate::suggest::help(&b.value, BackendKind::NAMES, "backends", "");
            let d = Diagnostic::new(format!("unknown backend `{}`", b.value), pos(b)).help(help);
            if !errors.contains(&d) {
                errors.push(d);
            }
            BackendKind::Ollama
        }),
    };
    let Some(name) = name else {
        errors.push(
            Diagnostic::new(
                format!("stage `{}` has a model without a `name`", stage.value),
                pos(stage),
            )
            .help("set `model: {name: gemma3:latest}` on the workflow, the agent or the stage"),
        );
        return None;
    };
    Some(ModelSpec {
        backend: backend_kind,
        name: name.value.clone(),
        host: host.map(|h| h.value.clone()),
        hosts,
        api_key_env: api_key_env.map(|k| k.value.clone()),
        keep_alive: keep_alive.map(|k| k.value.clone()),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_and_sizes_parse_as_documented() {
        assert_eq!(
            parse_duration(&json!("600s")),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            parse_duration(&json!("10m")),
            Some(Duration::from_secs(600))
        );
        assert_eq!(parse_duration(&json!(2)), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration(&json!("soon")), None);
        assert_eq!(parse_duration(&json!(-1)), None);
        assert_eq!(parse_bytes(&json!("256MiB")), Some(256 << 20));
        assert_eq!(parse_bytes(&json!("lots")), None);
    }

    #[test]
    fn grants_must_stay_inside_the_input_directory() {
        assert_eq!(
            check_grant("reports/", "the input directory"),
            Ok("reports".into())
        );
        assert_eq!(
            check_grant("./csv_data", "the input directory"),
            Ok("csv_data".into())
        );
        assert!(check_grant("../etc", "the input directory").is_err());
        assert!(check_grant("reports/../../etc", "the input directory").is_err());
        assert!(check_grant("/etc", "the input directory").is_err());
        assert!(check_grant(".", "the input directory").is_err());
    }
}
