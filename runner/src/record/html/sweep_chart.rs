//! The charts of a sweep's `summary.html`: the objective as a heat-map
//! over two axes, and tok/s against TTFT per cell.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One cell of a sweep, as its charts need it.
#[derive(Debug, Clone)]
pub struct Cell {
    pub key: String,
    /// The axes' values, as the page prints them.
    pub values: Vec<String>,
    pub objective: Option<f64>,
    /// `best`, `tie`, `worse` or `unranked`.
    pub mark: String,
    pub ttft_p50: Option<f64>,
    pub tps_p50: Option<f64>,
}

const BEST: RGBColor = RGBColor(200, 40, 40);
const TIE: RGBColor = RGBColor(235, 140, 40);
const OTHER: RGBColor = RGBColor(40, 90, 160);

/// A heat-map of the objective over axes `x` and `y` (indices into each
/// cell's values): each square holds the best objective among the cells
/// with those two values (so other axes are folded in), ringed when the
/// best cell or a tie is among them. `higher_is_better` colours the goal.
///
/// # Errors
/// When plotters fails to draw.
pub fn heatmap(
    cells: &[Cell],
    x: usize,
    y: usize,
    higher_is_better: bool,
) -> Result<String, String> {
    let distinct = |axis: usize| {
        let mut seen: Vec<String> = Vec::new();
        for c in cells {
            if !seen.contains(&c.values[axis]) {
                seen.push(c.values[axis].clone());
            }
        }
        seen
    };
    let (xs, ys) = (distinct(x), distinct(y));
    let better = |a: f64, b: f64| if higher_is_better { a > b } else { a < b };
    // (value, best mark among the folded cells) per square.
    let mut grid: Vec<Vec<Option<(f64, &str)>>> = vec![vec![None; xs.len()]; ys.len()];
    for c in cells {
        let (Some(i), Some(j), Some(v)) = (
            xs.iter().position(|v| *v == c.values[x]),
            ys.iter().position(|v| *v == c.values[y]),
            c.objective,
        ) else {
            continue;
        };
        let square = &mut grid[j][i];
        let mark = match (square.map(|s| s.1), c.mark.as_str()) {
            (Some("best"), _) | (_, "best") => "best",
            (Some("tie"), _) | (_, "tie") => "tie",
            _ => "other",
        };
        let value = match *square {
            Some((old, _)) if !better(v, old) => old,
            _ => v,
        };
        *square = Some((value, mark));
    }
    let values: Vec<f64> = grid.iter().flatten().flatten().map(|s| s.0).collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    let mut svg = String::new();
    {
        let (w, h) = (160 + 110 * xs.len() as u32, 80 + 56 * ys.len() as u32);
        let root = SVGBackend::with_string(&mut svg, (w.min(1000), h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(120)
            .build_cartesian_2d(0.0..xs.len() as f64, 0.0..ys.len() as f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .draw()
            .map_err(|e| e.to_string())?;
        let text = |s: &str, pos: (i32, i32), h: HPos| {
            Text::new(
                s.to_owned(),
                pos,
                TextStyle::from(("sans-serif", 12).into_font())
                    .color(&BLACK)
                    .pos(Pos::new(h, VPos::Center)),
            )
        };
        for (j, row) in grid.iter().enumerate() {
            for (i, square) in row.iter().enumerate() {
                let (x0, y0) = (i as f64, j as f64);
                let Some((v, mark)) = square else { continue };
                // 0 (worst) to 1 (best) on the goal's scale.
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 1.0 };
                let t = if higher_is_better { t } else { 1.0 - t };
                let shade = |from: u8, to: u8| {
                    (f64::from(from) + (f64::from(to) - f64::from(from)) * t) as u8
                };
                let fill = RGBColor(shade(240, 30), shade(244, 120), shade(250, 60));
                chart
                    .draw_series([Rectangle::new(
                        [(x0 + 0.03, y0 + 0.05), (x0 + 0.97, y0 + 0.95)],
                        fill.filled(),
                    )])
                    .map_err(|e| e.to_string())?;
                if *mark != "other" {
                    let ring = if *mark == "best" { BEST } else { TIE };
                    chart
                        .draw_series([Rectangle::new(
                            [(x0 + 0.03, y0 + 0.05), (x0 + 0.97, y0 + 0.95)],
                            ring.stroke_width(3),
                        )])
                        .map_err(|e| e.to_string())?;
                }
                let at = chart.backend_coord(&(x0 + 0.5, y0 + 0.5));
                let label = text(&format!("{v:.1}"), at, HPos::Center);
                root.draw(&label).map_err(|e| e.to_string())?;
            }
        }
        for (i, v) in xs.iter().enumerate() {
            let at = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            root.draw(&text(v, (at.0, at.1 + 14), HPos::Center))
                .map_err(|e| e.to_string())?;
        }
        for (j, v) in ys.iter().enumerate() {
            let at = chart.backend_coord(&(0.0, j as f64 + 0.5));
            root.draw(&text(v, (at.0 - 8, at.1), HPos::Right))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// tok/s p50 against TTFT p50, one point per cell: the best red, ties
/// orange, the rest blue; the line joins the cells no other cell beats on
/// both (lower TTFT and higher tok/s).
///
/// # Errors
/// When plotters fails to draw.
pub fn pareto(cells: &[Cell]) -> Result<String, String> {
    let points: Vec<(f64, f64, &Cell)> = cells
        .iter()
        .filter_map(|c| Some((c.ttft_p50?, c.tps_p50?, c)))
        .collect();
    let (x_lo, x_hi, y_lo, y_hi) = points.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), (x, y, _)| (a.min(*x), b.max(*x), c.min(*y), d.max(*y)),
    );
    let pad = |lo: f64, hi: f64| {
        let span = (hi - lo).max(hi.abs() * 0.05).max(1e-9);
        ((lo - span * 0.1).max(0.0), hi + span * 0.1)
    };
    let ((x_lo, x_hi), (y_lo, y_hi)) = if points.is_empty() {
        ((0.0, 1.0), (0.0, 1.0))
    } else {
        (pad(x_lo, x_hi), pad(y_lo, y_hi))
    };
    let mut front: Vec<(f64, f64)> = Vec::new();
    let mut sorted: Vec<(f64, f64)> = points.iter().map(|(x, y, _)| (*x, *y)).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    for (x, y) in sorted {
        if front.last().is_none_or(|last| y > last.1) {
            front.push((x, y));
        }
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 12))
            .x_desc("TTFT p50, ms (left is better)")
            .y_desc("tok/s p50 (up is better)")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                front,
                RGBColor(120, 120, 120).stroke_width(1),
            ))
            .map_err(|e| e.to_string())?;
        // The marked cells last, so they sit on top.
        let mut ordered = points.clone();
        ordered.sort_by_key(|(_, _, c)| match c.mark.as_str() {
            "best" => 2,
            "tie" => 1,
            _ => 0,
        });
        for (x, y, c) in ordered {
            let (color, size) = match c.mark.as_str() {
                "best" => (BEST, 7),
                "tie" => (TIE, 6),
                _ => (OTHER, 4),
            };
            chart
                .draw_series([Circle::new((x, y), size, color.filled())])
                .map_err(|e| e.to_string())?;
            if c.mark == "best" || c.mark == "tie" {
                chart
                    .draw_series([Text::new(
                        c.key.clone(),
                        (x, y),
                        TextStyle::from(("sans-serif", 11).into_font())
                            .color(&BLACK)
                            .pos(Pos::new(HPos::Left, VPos::Bottom)),
                    )])
                    .map_err(|e| e.to_string())?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
