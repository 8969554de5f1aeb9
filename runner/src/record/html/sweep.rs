//! `summary.html` of a sweep: the objective as a heat-map over two axes,
//! tok/s against TTFT with the best cell and its ties marked, and the
//! ranked cells.

use super::sweep_chart::{self as chart, Cell};
use super::{HtmlError, fixed, render};
use serde_json::{Value, json};

/// The page for a sweep's `summary.json`.
///
/// # Errors
/// When a chart cannot be drawn or the page template fails.
pub fn sweep_page(summary: &Value) -> Result<String, HtmlError> {
    let rows = summary["cells"].as_array().cloned().unwrap_or_default();
    let axes: Vec<String> = rows
        .first()
        .and_then(|c| c["values"].as_object())
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default();
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let p50 = |c: &Value, metric: &str| c["metrics"][metric]["p50"].as_f64();
    let cells: Vec<Cell> = rows
        .iter()
        .map(|c| Cell {
            key: text(&c["key"]),
            values: axes.iter().map(|a| text(&c["values"][a])).collect(),
            objective: c["objective"].as_f64(),
            mark: text(&c["mark"]),
            ttft_p50: p50(c, "ttft_ms"),
            tps_p50: p50(c, "tokens_per_second"),
        })
        .collect();
    // The first two axes that take more than one value.
    let varying: Vec<usize> = (0..axes.len())
        .filter(|&i| {
            let first = cells.first().map(|c| &c.values[i]);
            cells.iter().any(|c| Some(&c.values[i]) != first)
        })
        .collect();
    let higher = summary["objective"]["goal"] == "max";
    let heatmap = match varying.as_slice() {
        [x, y, ..] => Some((
            *x,
            *y,
            chart::heatmap(&cells, *x, *y, higher).map_err(HtmlError::Chart)?,
        )),
        _ => None,
    };
    let objective = format!(
        "{} {} {}",
        text(&summary["objective"]["goal"]),
        text(&summary["objective"]["metric"]),
        text(&summary["objective"]["stat"])
    );
    let best = rows.iter().find(|c| c["mark"] == "best");
    let context = json!({
        "style": super::STYLE,
        "workflow": summary["workflow"],
        "objective": objective,
        "runs": summary["runs"], "warmup": summary["warmup"],
        "test": summary["test"], "alpha": summary["alpha"],
        "missing": summary["missing"],
        "best": best.map(|b| json!({
            "key": b["key"],
            "values": axes.iter().map(|a| format!("{a} = {}", text(&b["values"][a]))).collect::<Vec<_>>().join(", "),
            "objective": fixed(b["objective"].as_f64(), 2),
        })),
        "ties": rows.iter().filter(|c| c["mark"] == "tie").map(|c| text(&c["key"])).collect::<Vec<_>>(),
        "heatmap_svg": heatmap.as_ref().map(|h| h.2.clone()),
        "axis_x": heatmap.as_ref().map(|h| axes[h.0].clone()),
        "axis_y": heatmap.as_ref().map(|h| axes[h.1].clone()),
        "folded": heatmap.as_ref().map(|h| {
            let rest: Vec<&str> = axes.iter().enumerate().filter(|(i, _)| *i != h.0 && *i != h.1).map(|(_, a)| a.as_str()).collect();
            if rest.is_empty() { "the cells with those two values".to_owned() } else { format!("the cells with those two values, whatever their {}", rest.join(", ")) }
        }),
        "pareto_svg": chart::pareto(&cells).map_err(HtmlError::Chart)?,
        "axes": axes,
        "cells": rows.iter().zip(&cells).map(|(c, cell)| json!({
            "rank": c["rank"].as_u64().map_or_else(|| "–".to_owned(), |r| r.to_string()),
            "key": cell.key, "values": cell.values,
            "objective": fixed(cell.objective, 2), "objective_raw": c["objective"],
            "mark": cell.mark,
            "p": fixed(c["p_value_against_best"].as_f64(), 3),
            "tps": fixed(cell.tps_p50, 1), "tps_raw": cell.tps_p50,
            "ttft": fixed(cell.ttft_p50, 1), "ttft_raw": cell.ttft_p50,
            "runs": c["runs"],
        })).collect::<Vec<_>>(),
    });
    render("sweep.html", &context)
}
