//! `objective:`: what a sweep's best cell is best at, e.g.
//! `max tokens_per_second p50`, `min ttft_ms p95`, `min run_total`.

use super::{Diagnostic, Pos};
use serde::{Deserialize, Serialize};

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    Max,
    Min,
}

/// The statistic of the metric's samples that is ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    P50,
    P95,
    Mean,
    Min,
    Max,
}

impl Stat {
    const NAMES: [&'static str; 5] = ["p50", "p95", "mean", "min", "max"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "p50" | "median" => Self::P50,
            "p95" => Self::P95,
            "mean" => Self::Mean,
            "min" => Self::Min,
            "max" => Self::Max,
            _ => return None,
        })
    }
}

/// A checked objective.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objective {
    pub goal: Goal,
    /// A call metric pooled over every stage's calls (`tokens_per_second`,
    /// `ttft_ms`, …), `run total_ms`, or one stage's metric by its full
    /// name (`collector/analyze tokens_per_second`, `collector/ingest wall_ms`).
    pub metric: String,
    pub stat: Stat,
}

/// The call metrics an objective may pool over every stage.
pub const CALL_METRICS: [&str; 6] = [
    "ttft_ms",
    "tokens_per_second",
    "prompt_eval_duration_ms",
    "eval_duration_ms",
    "load_duration_ms",
    "total_duration_ms",
];

impl Default for Objective {
    /// The whole run's median time, the one figure every run has.
    fn default() -> Self {
        Self {
            goal: Goal::Min,
            metric: "run total_ms".into(),
            stat: Stat::P50,
        }
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let goal = match self.goal {
            Goal::Max => "max",
            Goal::Min => "min",
        };
        write!(f, "{goal} {} {}", self.metric, self.stat.as_str())
    }
}

impl Objective {
    /// Whether the sample named `name` (as `record::samples` names
    /// them) counts towards this objective.
    pub fn selects(&self, name: &str) -> bool {
        if name == self.metric {
            return true;
        }
        // A pooled call metric: `<agent>/<stage> <metric>`, never an estimate.
        CALL_METRICS.contains(&self.metric.as_str())
            && name
                .split_once(' ')
                .is_some_and(|(stage, metric)| stage.contains('/') && metric == self.metric)
    }
}

fn alias(metric: &str) -> &str {
    match metric {
        "tok/s" | "tokens/s" => "tokens_per_second",
        "ttft" => "ttft_ms",
        "run_total" | "run total" | "total" | "run_total_ms" => "run total_ms",
        other => other,
    }
}

const HELP: &str = "write `<max|min> <metric> [p50|p95|mean|min|max]`, e.g. `max tokens_per_second p50`, `min ttft_ms p95`, `min run_total` or `min <agent>/<stage> wall_ms`";

/// Parses `objective:`.
pub fn check(text: &str, at: Pos, errors: &mut Vec<Diagnostic>) -> Objective {
    let words: Vec<&str> = text.split_whitespace().collect();
    let goal = match words.first() {
        Some(&"max") => Goal::Max,
        Some(&"min") => Goal::Min,
        _ => {
            errors.push(
                Diagnostic::new(
                    format!("objective `{text}` does not start with `max` or `min`"),
                    at,
                )
                .help(HELP),
            );
            return Objective::default();
        }
    };
    let (stat, metric_words) = match words.last().and_then(|w| Stat::parse(w)) {
        Some(stat) if words.len() > 2 => (stat, &words[1..words.len() - 1]),
        _ => (Stat::P50, &words[1..]),
    };
    let metric = alias(&metric_words.join(" ")).to_owned();
    let known = CALL_METRICS.contains(&metric.as_str())
        || metric == "run total_ms"
        || metric.split_once(' ').is_some_and(|(stage, m)| {
            stage.contains('/') && (CALL_METRICS.contains(&m) || m == "wall_ms")
        });
    if !known {
        let candidates = CALL_METRICS
            .iter()
            .copied()
            .chain(["run_total", "tok/s", "ttft"]);
        errors.push(
            Diagnostic::new(format!("unknown objective metric `{metric}`"), at).help(
                match crate::suggest::nearest(&metric, candidates) {
                    Some(s) => format!("did you mean `{s}`? {HELP}"),
                    None => HELP.to_owned(),
                },
            ),
        );
    }
    Objective { goal, metric, stat }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Objective, String> {
        let mut errors = Vec::new();
        let o = check(text, Pos::default(), &mut errors);
        match errors.first() {
            Some(e) => Err(format!(
                "{} ({})",
                e.message,
                e.help.clone().unwrap_or_default()
            )),
            None => Ok(o),
        }
    }

    #[test]
    fn objectives_parse_with_aliases_and_a_default_statistic() {
        let o = parse("max tok/s p50").unwrap();
        assert_eq!(
            (o.goal, o.metric.as_str(), o.stat),
            (Goal::Max, "tokens_per_second", Stat::P50)
        );
        assert_eq!(parse("min ttft p95").unwrap().metric, "ttft_ms");
        assert_eq!(parse("min ttft p95").unwrap().stat, Stat::P95);
        assert_eq!(parse("min run_total").unwrap(), Objective::default());
        let stage = parse("min a/analyze wall_ms mean").unwrap();
        assert_eq!(
            (stage.metric.as_str(), stage.stat),
            ("a/analyze wall_ms", Stat::Mean)
        );
        assert!(parse("fastest").unwrap_err().contains("`max` or `min`"));
        let typo = parse("max tokens_per_secnd").unwrap_err();
        assert!(typo.contains("did you mean `tokens_per_second`"), "{typo}");
    }

    #[test]
    fn a_pooled_metric_selects_every_stage_but_not_estimates() {
        let o = parse("max tokens_per_second").unwrap();
        assert!(o.selects("a/analyze tokens_per_second"));
        assert!(o.selects("b/report tokens_per_second"));
        assert!(!o.selects("a/analyze tokens_per_second (estimated)"));
        assert!(!o.selects("a/analyze ttft_ms"));
        let total = Objective::default();
        assert!(total.selects("run total_ms"));
        assert!(!total.selects("a/analyze total_duration_ms"));
    }
}
