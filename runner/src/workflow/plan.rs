//! How often a workflow runs and what it compares: `runs:` (measured
//! repeats), `warmup:` (runs before them, recorded but not counted) and a
//! `compare:` block of a baseline and a candidate that differ in model,
//! backend, options or persona. Each side is a set of overrides applied to
//! the workflow, checked here with the positions of its keys.

use super::overrides::Overrides;
use super::{BackendKind, Diagnostic, Located, Pos};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

/// `compare:` as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Compare")]
pub struct RawCompare {
    /// Seeds the shuffled order and the bootstrap (default 1).
    #[serde(default)]
    pub seed: Option<u64>,
    /// `alternate` (baseline, candidate, baseline, …; the default) or
    /// `shuffle` (a seeded random order of all the runs).
    #[serde(default)]
    #[schemars(with = "Option<OrderName>")]
    pub order: Option<Spanned<String>>,
    pub baseline: RawSide,
    pub candidate: RawSide,
}

/// The names `order:` takes, for the schema.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum OrderName {
    Alternate,
    Shuffle,
}

/// One side of a comparison: overrides of the workflow's models and persona.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Side")]
pub struct RawSide {
    /// What the record and tables call this side (default `baseline` / `candidate`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub label: Option<Spanned<String>>,
    /// Every stage's backend.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub backend: Option<Spanned<String>>,
    /// Every stage's model name.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub model: Option<Spanned<String>>,
    /// Settings as `--set` takes them: `model.options.num_ctx: 512`,
    /// `model.host: http://…`, `model.keep_alive: 5m`.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, Value>")]
    pub set: IndexMap<Spanned<String>, Spanned<Value>>,
    /// Every agent's persona template.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub persona: Option<Spanned<String>>,
    /// Prompt templates by stage id: `{analyze: prompts/terse.md.j2}`.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    pub prompt: IndexMap<Spanned<String>, Spanned<String>>,
}

/// The checked plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Measured runs (of each side, when comparing).
    pub runs: u32,
    /// Warm-up runs before them (of each side).
    pub warmup: u32,
    pub compare: Option<Compare>,
    /// A sweep's cells.
    pub matrix: Option<super::matrix::Matrix>,
    /// What a sweep ranks its cells by.
    pub objective: super::objective::Objective,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            runs: 1,
            warmup: 0,
            compare: None,
            matrix: None,
            objective: super::objective::Objective::default(),
        }
    }
}

/// A checked comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    pub seed: u64,
    pub order: Order,
    pub baseline: Side,
    pub candidate: Side,
}

/// The order of a comparison's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Alternate,
    Shuffle,
}

/// A checked side.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    pub label: String,
    pub overrides: Overrides,
    pub persona: Option<Located<String>>,
    /// (stage id, prompt template) for every stage with that id.
    pub prompts: Vec<(Located<String>, Located<String>)>,
}

/// Most runs a plan may ask for, per side.
pub const MAX_RUNS: u32 = 10_000;

fn pos<T>(s: &Spanned<T>) -> Pos {
    s.referenced.into()
}

/// Checks `runs`, `warmup` and `compare`; problems go to `errors`.
pub fn check(
    runs: Option<&Spanned<u32>>,
    warmup: Option<&Spanned<u32>>,
    compare: Option<&RawCompare>,
    errors: &mut Vec<Diagnostic>,
) -> Plan {
    let mut plan = Plan::default();
    if let Some(r) = runs {
        if r.value == 0 || r.value > MAX_RUNS {
            errors.push(
                Diagnostic::new(format!("`runs: {}` is out of range", r.value), pos(r))
                    .help(format!("measure at least 1 run and at most {MAX_RUNS}")),
            );
        } else {
            plan.runs = r.value;
        }
    }
    if let Some(w) = warmup {
        if w.value > MAX_RUNS {
            errors.push(
                Diagnostic::new(format!("`warmup: {}` is out of range", w.value), pos(w))
                    .help(format!("at most {MAX_RUNS} warm-up runs")),
            );
        } else {
            plan.warmup = w.value;
        }
    }
    plan.compare = compare.map(|c| {
        let order = match c.order.as_ref().map(|o| o.value.as_str()) {
            None | Some("alternate") => Order::Alternate,
            Some("shuffle") => Order::Shuffle,
            Some(other) => {
                let o = c.order.as_ref().expect("present");
                errors.push(
                    Diagnostic::new(format!("unknown `order: {other}`"), pos(o))
                        .help("write `order: alternate` (baseline, candidate, …) or `order: shuffle` (seeded)"),
                );
                Order::Alternate
            }
        };
        let baseline = side(&c.baseline, "baseline", errors);
        let candidate = side(&c.candidate, "candidate", errors);
        if baseline.label == candidate.label {
            let at = c.candidate.label.as_ref().map(pos);
            errors.push(
                Diagnostic::new(
                    format!("both sides of `compare:` are labelled `{}`", baseline.label),
                    at,
                )
                .help("give the candidate a `label:` of its own"),
            );
        }
        Compare {
            seed: c.seed.unwrap_or(1),
            order,
            baseline,
            candidate,
        }
    });
    plan
}

fn side(raw: &RawSide, default_label: &str, errors: &mut Vec<Diagnostic>) -> Side {
    let label = raw
        .label
        .as_ref()
        .map_or_else(|| default_label.to_owned(), |l| l.value.clone());
    if let Some(l) = raw.label.as_ref().filter(|l| {
        !l.value.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !l
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    }) {
        errors.push(
            Diagnostic::new(format!("label `{}` is not a valid name", l.value), pos(l)).help(
                "labels name directories of the record: use letters, digits, `-`, `_` and `.`, starting with a letter or digit",
            ),
        );
    }
    if let Some(b) = raw
        .backend
        .as_ref()
        .filter(|b| BackendKind::parse(&b.value).is_none())
    {
        errors.push(
            Diagnostic::new(format!("unknown backend `{}`", b.value), pos(b)).help(
                crate::suggest::help(&b.value, BackendKind::NAMES, "backends", ""),
            ),
        );
    }
    let mut set = Vec::new();
    for (key, value) in &raw.set {
        let text = value
            .value
            .as_str()
            .map_or_else(|| value.value.to_string(), str::to_owned);
        let (_, bare) = super::overrides::split_scope(&key.value);
        if let Err(e) = super::overrides::check_key(bare, &value.value) {
            let at = if e.at_key { pos(key) } else { pos(value) };
            let message = if e.message.starts_with("unknown setting") {
                format!("unknown `set:` key `{}`", key.value)
            } else {
                e.message
            };
            errors.push(Diagnostic::new(message, at).help_opt(e.help));
        }
        set.push(format!("{}={text}", key.value));
    }
    let located = |s: &Spanned<String>| Located {
        value: s.value.clone(),
        pos: pos(s),
    };
    for t in raw.persona.iter().chain(raw.prompt.values()) {
        if let Err(why) = super::sources::check_template_name(&t.value) {
            errors.push(Diagnostic::new(
                format!("template name `{}` {why}", t.value),
                pos(t),
            ));
        }
    }
    Side {
        label,
        overrides: Overrides {
            backend: raw.backend.as_ref().map(|b| b.value.clone()),
            model: raw.model.as_ref().map(|m| m.value.clone()),
            set,
        },
        persona: raw.persona.as_ref().map(located),
        prompts: raw
            .prompt
            .iter()
            .map(|(stage, template)| (located(stage), located(template)))
            .collect(),
    }
}

/// A side's `prompt:` must name stages the workflow has.
pub fn check_prompt_stages(plan: &Plan, stage_ids: &[&str], errors: &mut Vec<Diagnostic>) {
    let Some(compare) = &plan.compare else {
        return;
    };
    for side in [&compare.baseline, &compare.candidate] {
        for (stage, _) in &side.prompts {
            if !stage_ids.contains(&stage.value.as_str()) {
                errors.push(
                    Diagnostic::new(
                        format!(
                            "`prompt:` names stage `{}`, which the workflow does not have",
                            stage.value
                        ),
                        stage.pos,
                    )
                    .help(crate::suggest::help(
                        &stage.value,
                        stage_ids.iter().copied(),
                        "stages",
                        "",
                    )),
                );
            }
        }
    }
}
