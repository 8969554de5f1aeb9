//! The charts of `report.html`, drawn with plotters' SVG backend into
//! strings that the page inlines (text stays `<text>`, so the browser lays
//! it out and nothing is fetched).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

/// One bar of the timeline: a stage of an agent.
#[derive(Debug, Clone)]
pub struct Span {
    /// `agent/stage`.
    pub label: String,
    pub start_ms: f64,
    /// Plugin wait, instantiation, the guest's run, and the part of the run
    /// inside LLM calls (drawn over the guest's bar).
    pub load_ms: f64,
    pub instantiate_ms: f64,
    pub guest_ms: f64,
    pub llm_ms: f64,
    pub failed: bool,
}

const LOAD: RGBColor = RGBColor(150, 150, 150);
const INSTANTIATE: RGBColor = RGBColor(110, 170, 220);
const GUEST: RGBColor = RGBColor(40, 90, 160);
const LLM: RGBColor = RGBColor(235, 140, 40);
const FAILED: RGBColor = RGBColor(200, 40, 40);

/// The stages of a record as spans; a stage without `started_ms` (records
/// before it existed) starts where the agent's previous stage ended.
pub fn spans(stages: &[Value]) -> Vec<Span> {
    let mut ends: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    stages
        .iter()
        .map(|s| {
            let num = |k: &str| s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            let agent = s["agent"].as_str().unwrap_or_default().to_owned();
            let start = s
                .get("started_ms")
                .and_then(Value::as_f64)
                .unwrap_or_else(|| ends.get(&agent).copied().unwrap_or(0.0));
            ends.insert(agent.clone(), start + num("wall_ms"));
            Span {
                label: format!("{agent}/{}", s["stage"].as_str().unwrap_or_default()),
                start_ms: start,
                load_ms: num("load_ms"),
                instantiate_ms: num("instantiate_ms"),
                guest_ms: num("guest_ms"),
                llm_ms: num("llm_ms"),
                failed: s["status"] == "failed",
            }
        })
        .collect()
}

/// A timeline of `spans`: one row each, time in ms across.
///
/// # Errors
/// When plotters fails to draw (it should not for finite numbers).
pub fn timeline(spans: &[Span]) -> Result<String, String> {
    let rows = spans.len().max(1);
    let end = spans
        .iter()
        .map(|s| s.start_ms + s.load_ms + s.instantiate_ms + s.guest_ms)
        .fold(1.0_f64, f64::max);
    let height = 60 + 26 * u32::try_from(rows).unwrap_or(u32::MAX / 32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let label_width = spans
            .iter()
            .map(|s| s.label.chars().count())
            .max()
            .unwrap_or(8);
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(u32::try_from(label_width * 7 + 12).unwrap_or(200).min(360))
            .build_cartesian_2d(0.0..end * 1.02, 0.0..rows as f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .label_style(("sans-serif", 12))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc("ms from the start of the run")
            .draw()
            .map_err(|e| e.to_string())?;
        // Stage names beside their rows, right-aligned against the axis
        // (a numeric axis would place its own ticks, not one per row).
        let style = TextStyle::from(("sans-serif", 12).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        // The first stage on top.
        let row_of = |i: usize| rows - 1 - i;
        for (i, s) in spans.iter().enumerate() {
            let (_, y) = chart.backend_coord(&(0.0, row_of(i) as f64 + 0.5));
            let (x, _) = chart.backend_coord(&(0.0, 0.0));
            root.draw(&Text::new(s.label.clone(), (x - 6, y), style.clone()))
                .map_err(|e| e.to_string())?;
        }
        let bar = |from: f64, len: f64, row: usize, color: RGBColor, inset: f64| {
            let y = row as f64;
            Rectangle::new(
                [(from, y + 0.15 + inset), (from + len, y + 0.85 - inset)],
                color.filled(),
            )
        };
        let mut bars = Vec::new();
        for (i, s) in spans.iter().enumerate() {
            let row = row_of(i);
            let guest_at = s.start_ms + s.load_ms + s.instantiate_ms;
            bars.push(bar(s.start_ms, s.load_ms, row, LOAD, 0.0));
            bars.push(bar(
                s.start_ms + s.load_ms,
                s.instantiate_ms,
                row,
                INSTANTIATE,
                0.0,
            ));
            bars.push(bar(
                guest_at,
                s.guest_ms,
                row,
                if s.failed { FAILED } else { GUEST },
                0.0,
            ));
            // LLM time lies inside the guest's run; drawn as an inner band.
            bars.push(bar(guest_at, s.llm_ms.min(s.guest_ms), row, LLM, 0.2));
        }
        chart.draw_series(bars).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The legend of [`timeline`], as (colour, meaning) for the page to print.
pub fn timeline_legend() -> [(&'static str, &'static str); 5] {
    [
        ("#969696", "waiting for the plugin"),
        ("#6eaadc", "instantiating"),
        ("#285aa0", "the plugin's run"),
        ("#eb8c28", "inside LLM calls"),
        ("#c82828", "a failed stage's run"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stage_without_a_start_follows_its_agents_previous_stage() {
        let stages = [
            json!({"agent": "a", "stage": "one", "wall_ms": 10.0, "guest_ms": 9.0, "status": "ok"}),
            json!({"agent": "a", "stage": "two", "wall_ms": 5.0, "guest_ms": 5.0, "status": "failed"}),
            json!({"agent": "b", "stage": "one", "started_ms": 2.0, "wall_ms": 5.0, "status": "ok"}),
        ];
        let spans = spans(&stages);
        assert_eq!(spans[1].start_ms, 10.0);
        assert!(spans[1].failed);
        assert_eq!(spans[2].start_ms, 2.0);
        let svg = timeline(&spans).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("a/two") && svg.contains("b/one"), "{svg}");
        assert!(
            svg.contains("#C82828") || svg.contains("#c82828"),
            "a failed bar"
        );
    }
}

/// One row of [`forest`]: a metric's samples and an interval, all as
/// percentages of a reference (100 = the reference).
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub dots: Vec<f64>,
    /// The point estimate (drawn as a bar across the row).
    pub center: Option<f64>,
    /// The confidence interval (drawn as a line with ends).
    pub interval: Option<(f64, f64)>,
    pub color: RGBColor,
}

/// Rows of samples and intervals on one percentage axis, with a line at
/// 100: a repeat's spread per metric, or a comparison's ratios.
///
/// # Errors
/// When plotters fails to draw.
pub fn forest(rows: &[Row], x_desc: &str) -> Result<String, String> {
    let finite = |v: &f64| v.is_finite();
    let all: Vec<f64> = rows
        .iter()
        .flat_map(|r| {
            let mut v = r.dots.clone();
            v.extend(r.center);
            if let Some((lo, hi)) = r.interval {
                v.extend([lo, hi]);
            }
            v
        })
        .filter(finite)
        .chain([100.0])
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.08).max(1.0);
    let n = rows.len().max(1);
    let mut svg = String::new();
    {
        let height = 70 + 34 * u32::try_from(n).unwrap_or(64);
        let root = SVGBackend::with_string(&mut svg, (900, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(230)
            .build_cartesian_2d((lo - pad)..(hi + pad), 0.0..n as f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .label_style(("sans-serif", 12))
            .x_label_formatter(&|x| format!("{x:.0}%"))
            .x_desc(x_desc)
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                [(100.0, 0.0), (100.0, n as f64)],
                BLACK.mix(0.5).stroke_width(1),
            ))
            .map_err(|e| e.to_string())?;
        let style = TextStyle::from(("sans-serif", 12).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        for (i, r) in rows.iter().enumerate() {
            let y = (n - 1 - i) as f64 + 0.5;
            let (x0, py) = chart.backend_coord(&(lo - pad, y));
            root.draw(&Text::new(r.label.clone(), (x0 - 6, py), style.clone()))
                .map_err(|e| e.to_string())?;
            // Samples spread a little up and down so equal ones stay visible.
            let dots = r
                .dots
                .iter()
                .filter(|v| v.is_finite())
                .enumerate()
                .map(|(k, v)| {
                    let jitter = ((k % 5) as f64 - 2.0) * 0.05;
                    Circle::new((*v, y + jitter), 3, r.color.mix(0.45).filled())
                });
            chart.draw_series(dots).map_err(|e| e.to_string())?;
            if let Some((a, b)) = r.interval.filter(|(a, b)| a.is_finite() && b.is_finite()) {
                chart
                    .draw_series([
                        PathElement::new([(a, y), (b, y)], r.color.stroke_width(2)),
                        PathElement::new([(a, y - 0.2), (a, y + 0.2)], r.color.stroke_width(2)),
                        PathElement::new([(b, y - 0.2), (b, y + 0.2)], r.color.stroke_width(2)),
                    ])
                    .map_err(|e| e.to_string())?;
            }
            if let Some(c) = r.center.filter(|c| c.is_finite()) {
                chart
                    .draw_series([PathElement::new(
                        [(c, y - 0.32), (c, y + 0.32)],
                        r.color.stroke_width(4),
                    )])
                    .map_err(|e| e.to_string())?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
