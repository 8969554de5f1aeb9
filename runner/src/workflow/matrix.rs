//! `matrix:`: a sweep's axes and its cells, expanded as GitHub Actions
//! expands a job matrix. Each axis is a setting (`model.options.num_ctx`,
//! `model.name`, `model.backend`, `model.host`, `persona`, optionally scoped
//! to an agent or stage: `collector/analyze:model.options.num_ctx`) with a
//! list of values; the cells are every combination, minus those an
//! `exclude` entry matches, plus what `include` adds.

use super::node::Node;
use super::overrides::{self, Overrides, Scope};
use super::{Agent, Diagnostic, Located, Pos};
use indexmap::IndexMap;
use serde_json::Value;
use serde_saphyr::Spanned;

/// `matrix:` as written: axis → values, plus `include:`, `exclude:` and
/// `order:` (read as nodes, so every value keeps its position).
pub type RawMatrix = IndexMap<Spanned<String>, Spanned<Node>>;

// The shape of `matrix:` for the JSON Schema only (the loader reads nodes).
/// A sweep: axes (a setting and its values), `include:`, `exclude:` and `order:`.
#[derive(schemars::JsonSchema)]
#[schemars(rename = "Matrix")]
#[allow(dead_code)]
pub struct MatrixSchema {
    /// Settings added to the combinations they fit, or cells of their own.
    include: Option<Vec<std::collections::BTreeMap<String, Value>>>,
    /// Combinations to leave out (each entry matches on all its settings).
    exclude: Option<Vec<std::collections::BTreeMap<String, Value>>>,
    order: Option<SweepOrder>,
    /// Axes: a setting and its values.
    #[serde(flatten)]
    axes: std::collections::BTreeMap<String, Vec<Value>>,
}

/// Most cells a matrix may expand to.
pub const MAX_CELLS: usize = 10_000;

/// A checked matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// The axes in the order written, with their values.
    pub axes: Vec<(Located<String>, Vec<Value>)>,
    pub cells: Vec<Cell>,
    pub order: SweepOrder,
}

/// The order a sweep's runs go in.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SweepOrder {
    /// Cell after cell: each cell finishes (and is kept by Ctrl-C) before
    /// the next starts; a machine that drifts makes later cells differ.
    #[default]
    Sequential,
    /// Round after round: warm-ups, then run 1 of every cell, run 2 of
    /// every cell, …; drift spreads over all cells, and cells finish
    /// together at the end.
    Interleave,
}

/// One combination of settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Setting → value, in axis order, then the keys `include` added.
    pub values: IndexMap<String, Value>,
}

impl Cell {
    /// A stable name for the cell: the first 12 hex digits of the SHA-256
    /// of its settings as canonical JSON (keys sorted), so the same values
    /// give the same key whatever their order or the workflow around them.
    pub fn key(&self) -> String {
        let sorted: std::collections::BTreeMap<&String, &Value> = self.values.iter().collect();
        let text = serde_json::to_string(&sorted).unwrap_or_default();
        crate::digest::sha256(text.as_bytes())[..12].to_owned()
    }

    /// The settings for people: `num_ctx=512 temperature=0.8`.
    pub fn label(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{}={}", short(k), scalar_text(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The cell as overrides of the workflow, and the personas it sets (by
    /// agent scope, placed at their axis in `axes` for error messages).
    pub fn overrides(
        &self,
        axes: &[(Located<String>, Vec<Value>)],
    ) -> (Overrides, Vec<(Scope, Located<String>)>) {
        let mut set = Vec::new();
        let mut personas = Vec::new();
        for (key, value) in &self.values {
            let (scope, bare) = overrides::split_scope(key);
            if bare == "persona" {
                let pos = axes
                    .iter()
                    .find(|(k, _)| &k.value == key)
                    .map(|(k, _)| k.pos)
                    .unwrap_or_default();
                personas.push((
                    scope,
                    Located {
                        value: scalar_text(value),
                        pos,
                    },
                ));
            } else {
                set.push(format!("{key}={}", scalar_text(value)));
            }
        }
        (
            Overrides {
                set,
                ..Overrides::default()
            },
            personas,
        )
    }
}

/// A setting's name without its `model.options.` prefix, for tables.
pub fn short(key: &str) -> &str {
    let (_, bare) = overrides::split_scope(key);
    if bare.len() == key.len() {
        key.strip_prefix("model.options.").unwrap_or(key)
    } else {
        key
    }
}

/// A value as it would be typed: strings unquoted.
pub fn scalar_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn pos<T>(s: &Spanned<T>) -> Pos {
    s.referenced.into()
}

/// Checks one axis key and value (without the scope: that needs the
/// agents, see [`check_scopes`]).
fn check_setting(key: &Spanned<String>, value: &Spanned<Node>, errors: &mut Vec<Diagnostic>) {
    let (_, bare) = overrides::split_scope(&key.value);
    let Node::Scalar(v) = &value.value else {
        errors.push(
            Diagnostic::new(
                format!("`{}` takes a single value here", key.value),
                pos(value),
            )
            .help("each value of an axis is a number, a string or a boolean"),
        );
        return;
    };
    if bare == "persona" {
        match v.as_str().map(super::sources::check_template_name) {
            Some(Ok(())) => {}
            Some(Err(why)) => errors.push(Diagnostic::new(
                format!("template name `{}` {why}", scalar_text(v)),
                pos(value),
            )),
            None => errors.push(
                Diagnostic::new("a `persona` value is a template name", pos(value))
                    .help("write e.g. `personas/terse.md.j2`"),
            ),
        }
        return;
    }
    if let Err(e) = overrides::check_key(bare, v) {
        let (message, help) = if e.message.starts_with("unknown setting") {
            (
                format!("unknown matrix axis `{}`", key.value),
                Some(format!(
                    "axes are {}, or `persona`; scope one with `<agent>:`, `<agent>/<stage>:` or `*/<stage>:`",
                    overrides::SET_KEYS
                )),
            )
        } else {
            (e.message, e.help)
        };
        let d =
            Diagnostic::new(message, if e.at_key { pos(key) } else { pos(value) }).help_opt(help);
        // A bad key is reported once, not once per value.
        if !errors.contains(&d) {
            errors.push(d);
        }
    }
}

/// A list of `{setting: value}` maps (`include:`, `exclude:`), checked.
fn entries(
    node: &Spanned<Node>,
    what: &str,
    errors: &mut Vec<Diagnostic>,
) -> Vec<IndexMap<String, Value>> {
    let Node::Seq(items) = &node.value else {
        errors.push(
            Diagnostic::new(format!("`{what}` is a list"), pos(node)).help(format!(
                "write `{what}:` as a list of maps, e.g. `- {{model.options.num_ctx: 512}}`"
            )),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Node::Map(pairs) = &item.value else {
            errors.push(
                Diagnostic::new(
                    format!("each `{what}` entry is a map of settings"),
                    pos(item),
                )
                .help(
                    "write e.g. `- {model.options.num_ctx: 512, model.options.temperature: 0.8}`",
                ),
            );
            continue;
        };
        let mut entry = IndexMap::new();
        for (k, v) in pairs {
            check_setting(k, v, errors);
            if let Node::Scalar(value) = &v.value {
                entry.insert(k.value.clone(), value.clone());
            }
        }
        out.push(entry);
    }
    out
}

/// Checks `matrix:` and expands its cells.
pub fn check(raw: &RawMatrix, at: Pos, errors: &mut Vec<Diagnostic>) -> Matrix {
    let mut axes = Vec::new();
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    let mut order = SweepOrder::default();
    let before = errors.len();
    for (key, node) in raw {
        match key.value.as_str() {
            "include" => include = entries(node, "include", errors),
            "exclude" => exclude = entries(node, "exclude", errors),
            "order" => match &node.value {
                Node::Scalar(Value::String(o)) if o == "sequential" => order = SweepOrder::Sequential,
                Node::Scalar(Value::String(o)) if o == "interleave" => order = SweepOrder::Interleave,
                _ => errors.push(
                    Diagnostic::new("`order:` of a matrix is `sequential` or `interleave`", pos(node))
                        .help("`sequential` runs cell after cell (the default); `interleave` runs round after round, spreading the machine's drift over every cell"),
                ),
            },
            _ => {
                let Node::Seq(items) = &node.value else {
                    errors.push(
                        Diagnostic::new(
                            format!("axis `{}` takes a list of values", key.value),
                            pos(node),
                        )
                        .help(format!("write e.g. `{}: [256, 512]`", key.value)),
                    );
                    continue;
                };
                if items.is_empty() {
                    errors.push(
                        Diagnostic::new(format!("axis `{}` has no values", key.value), pos(node))
                            .help("give it at least one value, or remove it"),
                    );
                }
                let mut values: Vec<Value> = Vec::new();
                for item in items {
                    check_setting(key, item, errors);
                    if let Node::Scalar(v) = &item.value {
                        if values.contains(v) {
                            errors.push(
                                Diagnostic::new(
                                    format!(
                                        "axis `{}` lists `{}` twice",
                                        key.value,
                                        scalar_text(v)
                                    ),
                                    pos(item),
                                )
                                .help("each value once: the same cell would run twice"),
                            );
                        }
                        values.push(v.clone());
                    }
                }
                axes.push((
                    Located {
                        value: key.value.clone(),
                        pos: pos(key),
                    },
                    values,
                ));
            }
        }
    }
    // GitHub Actions refuses an `exclude` that names no axis: it could
    // never match.
    for entry in &exclude {
        for (key, value) in entry {
            let (_, bare) = overrides::split_scope(key);
            // An unknown setting was reported already.
            let known = bare == "persona" || overrides::check_key(bare, value).is_ok();
            if known && !axes.iter().any(|(k, _)| &k.value == key) {
                errors.push(
                    Diagnostic::new(
                        format!("`exclude:` names `{key}`, which is not an axis"),
                        at,
                    )
                    .help("an `exclude` entry matches on axes only; add the axis or drop the key"),
                );
            }
        }
    }
    // Bounded before expanding: a few long axes multiply past memory.
    let combinations = axes
        .iter()
        .fold(1usize, |n, (_, v)| n.saturating_mul(v.len().max(1)))
        .saturating_add(include.len());
    let cells = if errors.len() == before && combinations <= MAX_CELLS.saturating_mul(4) {
        expand(&axes, &include, &exclude)
    } else {
        if errors.len() == before {
            errors.push(
                Diagnostic::new(format!("the matrix has {combinations} combinations"), at)
                    .help(format!("at most {MAX_CELLS} cells: shorten an axis")),
            );
        }
        Vec::new()
    };
    if errors.len() == before && cells.is_empty() && combinations <= MAX_CELLS.saturating_mul(4) {
        errors.push(
            Diagnostic::new("the matrix has no cells", at)
                .help("`exclude:` removes every combination; loosen it or `include:` a cell"),
        );
    }
    if cells.len() > MAX_CELLS {
        errors.push(
            Diagnostic::new(format!("the matrix has {} cells", cells.len()), at).help(format!(
                "at most {MAX_CELLS}: shorten an axis or `exclude:` part of it"
            )),
        );
    }
    Matrix { axes, cells, order }
}

/// The cells, as GitHub Actions builds a job matrix: every combination of
/// the axes (the first axis varies slowest); minus each combination that
/// matches every setting of some `exclude` entry; then each `include` entry
/// is added to every combination whose original values it does not
/// change (it may change what an earlier `include` added), or, when it
/// fits none, becomes a cell of its own.
pub fn expand(
    axes: &[(Located<String>, Vec<Value>)],
    include: &[IndexMap<String, Value>],
    exclude: &[IndexMap<String, Value>],
) -> Vec<Cell> {
    let mut combos: Vec<IndexMap<String, Value>> = if axes.is_empty() {
        Vec::new()
    } else {
        vec![IndexMap::new()]
    };
    for (key, values) in axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut next = c.clone();
                    next.insert(key.value.clone(), v.clone());
                    next
                })
            })
            .collect();
    }
    combos.retain(|c| {
        !exclude
            .iter()
            .any(|e| e.iter().all(|(k, v)| c.get(k) == Some(v)))
    });
    let original: Vec<IndexMap<String, Value>> = combos.clone();
    let mut extra: Vec<IndexMap<String, Value>> = Vec::new();
    for entry in include {
        let mut fitted = false;
        for (combo, base) in combos.iter_mut().zip(&original) {
            let keeps_originals = entry
                .iter()
                .all(|(k, v)| base.get(k).is_none_or(|b| b == v));
            if keeps_originals {
                for (k, v) in entry {
                    combo.insert(k.clone(), v.clone());
                }
                fitted = true;
            }
        }
        if !fitted {
            extra.push(entry.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut cells: Vec<Cell> = Vec::new();
    for values in combos.into_iter().chain(extra) {
        let cell = Cell { values };
        if seen.insert(cell.key()) {
            cells.push(cell);
        }
    }
    cells
}

/// Every axis scope must name an agent and stage the workflow has.
pub fn check_scopes(agents: &[Agent], matrix: &Matrix, errors: &mut Vec<Diagnostic>) {
    for (key, _) in &matrix.axes {
        let (scope, _) = overrides::split_scope(&key.value);
        if let Err(e) = scope.check(agents) {
            errors.push(Diagnostic::new(e.message, key.pos).help_opt(e.help));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn axis(key: &str, values: &[Value]) -> (Located<String>, Vec<Value>) {
        (
            Located {
                value: key.into(),
                pos: Pos::default(),
            },
            values.to_vec(),
        )
    }

    fn map(pairs: &[(&str, Value)]) -> IndexMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn labels(cells: &[Cell]) -> Vec<String> {
        cells.iter().map(Cell::label).collect()
    }

    #[test]
    fn combinations_vary_the_last_axis_fastest_and_exclude_drops_partial_matches() {
        let axes = [
            axis("model.options.num_ctx", &[json!(256), json!(512)]),
            axis("model.options.temperature", &[json!(0.6), json!(0.8)]),
        ];
        let all = expand(&axes, &[], &[]);
        assert_eq!(
            labels(&all),
            [
                "num_ctx=256 temperature=0.6",
                "num_ctx=256 temperature=0.8",
                "num_ctx=512 temperature=0.6",
                "num_ctx=512 temperature=0.8"
            ]
        );
        let exclude = [map(&[("model.options.num_ctx", json!(256))])];
        assert_eq!(
            labels(&expand(&axes, &[], &exclude)),
            ["num_ctx=512 temperature=0.6", "num_ctx=512 temperature=0.8"]
        );
    }

    /// The example of GitHub's documentation ("Expanding or adding matrix
    /// configurations"), with its expected combinations.
    #[test]
    fn include_follows_github_actions() {
        let axes = [
            axis("fruit", &[json!("apple"), json!("pear")]),
            axis("animal", &[json!("cat"), json!("dog")]),
        ];
        let include = [
            map(&[("color", json!("green"))]),
            map(&[("color", json!("pink")), ("animal", json!("cat"))]),
            map(&[("fruit", json!("apple")), ("shape", json!("circle"))]),
            map(&[("fruit", json!("banana"))]),
            map(&[("fruit", json!("banana")), ("animal", json!("cat"))]),
        ];
        let cells = expand(&axes, &include, &[]);
        assert_eq!(
            labels(&cells),
            [
                "fruit=apple animal=cat color=pink shape=circle",
                "fruit=apple animal=dog color=green shape=circle",
                "fruit=pear animal=cat color=pink",
                "fruit=pear animal=dog color=green",
                "fruit=banana",
                "fruit=banana animal=cat",
            ]
        );
    }

    #[test]
    fn a_cells_key_depends_on_its_values_only() {
        let a = Cell {
            values: map(&[("x", json!(1)), ("y", json!("a"))]),
        };
        let b = Cell {
            values: map(&[("y", json!("a")), ("x", json!(1))]),
        };
        let c = Cell {
            values: map(&[("x", json!(2)), ("y", json!("a"))]),
        };
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        assert_eq!(a.key().len(), 12);
        assert!(a.key().chars().all(|ch| ch.is_ascii_hexdigit()));
    }

    #[test]
    fn cells_become_scoped_overrides_and_personas() {
        let cell = Cell {
            values: map(&[
                ("collector/analyze:model.options.num_ctx", json!(512)),
                ("model.name", json!("gemma3:latest")),
                ("persona", json!("personas/terse.md.j2")),
            ]),
        };
        let (overrides, personas) = cell.overrides(&[]);
        assert_eq!(
            overrides.set,
            [
                "collector/analyze:model.options.num_ctx=512",
                "model.name=gemma3:latest"
            ]
        );
        assert_eq!(personas.len(), 1);
        assert_eq!(personas[0].0, Scope::default());
        assert_eq!(personas[0].1.value, "personas/terse.md.j2");
        assert_eq!(
            cell.label(),
            "collector/analyze:model.options.num_ctx=512 model.name=gemma3:latest persona=personas/terse.md.j2"
        );
    }
}
