//! The pages of a plan: `summary.html` of repeats (each metric's samples
//! and the interval of its mean) and `comparison.html` (per metric the
//! candidate against the baseline: the ratio of medians, its bootstrap
//! interval and the verdict).

use super::chart::{self, Row};
use super::{HtmlError, fixed, render};
use plotters::style::RGBColor;
use serde_json::{Value, json};

/// Samples per metric, as the plan's summary was computed from them.
pub type MetricSamples = std::collections::BTreeMap<String, Vec<f64>>;

const NEUTRAL: RGBColor = RGBColor(40, 90, 160);
const BETTER: RGBColor = RGBColor(26, 127, 55);
const WORSE: RGBColor = RGBColor(200, 40, 40);
const SAME: RGBColor = RGBColor(120, 120, 120);

/// `summary.html` of `runs:` repeats from `summary.json`.
///
/// # Errors
/// When the chart cannot be drawn or the page template fails.
pub fn repeat_page(
    title: &str,
    summary: &Value,
    samples: &MetricSamples,
) -> Result<String, HtmlError> {
    let metrics = summary["metrics"].as_object().cloned().unwrap_or_default();
    let mut chart_rows = Vec::new();
    let mut rows = Vec::new();
    for (name, s) in &metrics {
        let p50 = s["p50"].as_f64().filter(|m| *m != 0.0);
        let rel = |v: f64| p50.map_or(f64::NAN, |m| v / m * 100.0);
        let ci = s["ci95"]
            .as_array()
            .and_then(|c| Some((c.first()?.as_f64()?, c.get(1)?.as_f64()?)));
        chart_rows.push(Row {
            label: name.clone(),
            dots: samples
                .get(name)
                .map(|v| v.iter().map(|x| rel(*x)).collect())
                .unwrap_or_default(),
            center: s["mean"].as_f64().map(rel),
            interval: ci.map(|(a, b)| (rel(a), rel(b))),
            color: NEUTRAL,
        });
        let cell = |key: &str, places: usize| json!({"key": key, "raw": s[key], "text": fixed(s[key].as_f64(), places)});
        rows.push(json!({
            "metric": name,
            "cells": [
                {"key": "n", "raw": s["n"], "text": s["n"].to_string()},
                cell("mean", 1), cell("sd", 1), cell("cv", 3), cell("min", 1), cell("p50", 1), cell("p95", 1), cell("max", 1),
                {"key": null, "raw": null, "text": ci.map_or_else(|| "n/a".to_owned(), |(a, b)| format!("{a:.1} – {b:.1}"))},
            ],
        }));
    }
    let runs = summary["runs"].as_u64().unwrap_or(0);
    let context = json!({
        "style": super::STYLE,
        "title": format!("{title}: {}", crate::words::plural(runs, "measured run")),
        "subtitle": format!("after {} left out; cold calls {}", summary["warmup"].as_u64().map_or_else(|| "n/a warm-up runs".to_owned(), |n| crate::words::plural(n, "warm-up run")), if summary["include_cold"] == true { "included".to_owned() } else { format!("left out ({})", summary["cold_calls_left_out"]) }),
        "chart_title": "Spread of every metric",
        "chart_note": "Each dot is one sample, as a percentage of the metric's median; the bar is the mean and the line its 95 % t interval.",
        "chart_svg": chart::forest(&chart_rows, "% of the metric's median").map_err(HtmlError::Chart)?,
        "header": ["metric", "n", "mean", "sd", "CV", "min", "p50", "p95", "max", "95 % CI of the mean"],
        "rows": rows,
        "notes": [],
    });
    render("plan.html", &context)
}

/// `comparison.html` from `comparison.json` and the candidate's samples.
///
/// # Errors
/// When the chart cannot be drawn or the page template fails.
pub fn comparison_page(
    title: &str,
    comparison: &Value,
    candidate: &MetricSamples,
) -> Result<String, HtmlError> {
    let mut chart_rows = Vec::new();
    let mut rows = Vec::new();
    for m in comparison["metrics"].as_array().into_iter().flatten() {
        let name = m["metric"].as_str().unwrap_or_default().to_owned();
        let base = m["baseline"]["p50"].as_f64().filter(|b| *b != 0.0);
        let rel = |v: f64| base.map_or(f64::NAN, |b| v / b * 100.0);
        let verdict = m["verdict"].as_str().unwrap_or_default().to_owned();
        let (color, class) = match verdict.as_str() {
            "better" => (BETTER, "better"),
            "worse" => (WORSE, "worse"),
            _ => (SAME, "same"),
        };
        let ci = m["ratio_ci95"]
            .as_array()
            .and_then(|c| Some((c.first()?.as_f64()?, c.get(1)?.as_f64()?)));
        chart_rows.push(Row {
            label: name.clone(),
            dots: candidate
                .get(&name)
                .map(|v| v.iter().map(|x| rel(*x)).collect())
                .unwrap_or_default(),
            center: m["candidate"]["p50"].as_f64().map(rel),
            interval: ci.map(|(a, b)| (a * 100.0, b * 100.0)),
            color,
        });
        rows.push(json!({
            "metric": name,
            "cells": [
                {"key": "baseline_p50", "raw": m["baseline"]["p50"], "text": fixed(m["baseline"]["p50"].as_f64(), 1)},
                {"key": "candidate_p50", "raw": m["candidate"]["p50"], "text": fixed(m["candidate"]["p50"].as_f64(), 1)},
                {"key": "relative_percent", "raw": m["relative_percent"], "text": m["relative_percent"].as_f64().map_or_else(|| "n/a".to_owned(), |p| format!("{p:+.1} %"))},
                {"key": null, "raw": null, "text": ci.map_or_else(|| "n/a".to_owned(), |(a, b)| format!("{a:.3} – {b:.3}"))},
                {"key": "p_value", "raw": m["p_value"], "text": fixed(m["p_value"].as_f64(), 4)},
            ],
            "verdict": verdict.replace('_', " "),
            "verdict_class": class,
        }));
    }
    let notes: Vec<String> = comparison["provenance_differences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(|d| format!("provenance differs: {d}")))
        .collect();
    let context = json!({
        "style": super::STYLE,
        "title": format!("{title}: {} against {}", comparison["candidate"].as_str().unwrap_or("candidate"), comparison["baseline"].as_str().unwrap_or("baseline")),
        "subtitle": format!("{}; α = {}; {} bootstrap resamples (seed {})", comparison["test"].as_str().unwrap_or_default(), comparison["alpha"], comparison["bootstrap_resamples"], comparison["seed"]),
        "chart_title": "The candidate against the baseline",
        "chart_note": "Per metric, as a percentage of the baseline's median: the candidate's samples (dots), the ratio of medians (bar) and its 95 % bootstrap interval (line); green better, red worse, grey no detectable difference. Whether higher is better depends on the metric.",
        "chart_svg": chart::forest(&chart_rows, "% of the baseline's median").map_err(HtmlError::Chart)?,
        "header": ["metric", "baseline p50", "candidate p50", "change", "ratio 95 % CI", "p", "verdict"],
        "rows": rows,
        "notes": notes,
    });
    render("plan.html", &context)
}
