//! `report.html`: one self-contained page per run record, to look at rather
//! than read. It opens from disk with nothing fetched (inline CSS, charts
//! as inline SVG, no script; a Content-Security-Policy of `default-src
//! 'none'` makes any request a visible error) and prints.
//!
//! The page is a minijinja template (`run.html`, auto-escaped as HTML)
//! over the record's `metrics.json` as JSON, so `chimera report` can draw it
//! again from any record without the run's types.

pub mod chart;
mod plan;
mod sweep;
pub mod sweep_chart;

pub use plan::{MetricSamples, comparison_page, repeat_page};
pub use sweep::sweep_page;

use minijinja::Environment;
use serde_json::{Value, json};

/// The pages, by name (`.html`: minijinja escapes what they print).
const PAGES: [(&str, &str); 3] = [
    ("run.html", include_str!("run.html")),
    ("sweep.html", include_str!("sweep.html")),
    ("plan.html", include_str!("plan.html")),
];

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222}\
h1{margin:.2em 0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}\
table{border-collapse:collapse;width:100%;margin:.6em 0}th,td{border-bottom:1px solid #eee;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f6f6f6}.n{text-align:right;font-variant-numeric:tabular-nums}.meta{color:#555}\
.status.ok{color:#1a7f37}.status.failed,.status.interrupted{color:#c82828;font-weight:bold}\
.estimated{font-style:italic}.warn{background:#fff3cd;padding:0 .3em;border-radius:3px}\
.legend span{margin-right:1.2em;white-space:nowrap}.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-1px}\
.chart svg{max-width:100%;height:auto}pre{background:#f8f8f8;padding:.8em;overflow-x:auto;white-space:pre-wrap}\
details summary{cursor:pointer;font-weight:bold}footer{margin-top:2em;color:#777;font-size:12px}\
@media print{details{display:block}details>*{display:block}.chart{break-inside:avoid}}";

/// Why a page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("cannot draw the timeline: {0}")]
    Chart(String),
    #[error("cannot render report.html: {0}")]
    Render(#[from] minijinja::Error),
}

/// A report file of the run, shown as written.
#[derive(Debug, Clone)]
pub struct ReportText {
    pub name: String,
    pub text: String,
}

/// `report.html` for one run, from its `metrics.json` and the reports it wrote.
///
/// # Errors
/// When the timeline cannot be drawn or the page template fails.
pub fn run_page(
    metrics: &Value,
    reports: &[ReportText],
    rerendered: bool,
) -> Result<String, HtmlError> {
    let stages = metrics["stages"].as_array().cloned().unwrap_or_default();
    let spans = chart::spans(&stages);
    let timeline = chart::timeline(&spans).map_err(HtmlError::Chart)?;
    let stage_rows: Vec<Value> = stages
        .iter()
        .zip(&spans)
        .map(|(s, span)| {
            json!({
                "label": span.label,
                "status": s["status"],
                "error": s["error"].get("message"),
                "start": ms(Some(span.start_ms)),
                "wall": ms(s["wall_ms"].as_f64()),
                "wall_raw": s["wall_ms"],
                "load": ms(s["load_ms"].as_f64()),
                "instantiate": ms(s["instantiate_ms"].as_f64()),
                "guest": ms(s["guest_ms"].as_f64()),
                "llm": ms(s["llm_ms"].as_f64()),
            })
        })
        .collect();
    let calls: Vec<Value> = metrics["calls"]
        .as_array()
        .map(|calls| calls.iter().map(call_row).collect())
        .unwrap_or_default();
    let concurrency = metrics
        .get("concurrency")
        .filter(|c| !c.is_null())
        .map(|c| {
            json!({
                "agents": c["agents"].as_array().map_or(0, Vec::len),
                "sequential": ms(c["sequential_equivalent_ms"].as_f64()),
                "wall": ms(c["wall_ms"].as_f64()),
                "speedup": fixed(c["speedup"].as_f64(), 2),
                "speedup_raw": c["speedup"],
                "efficiency": fixed(c["efficiency"].as_f64(), 3),
                "efficiency_raw": c["efficiency"],
            })
        });
    let hosts: Vec<Value> = metrics["hosts"]
        .as_array()
        .map(|hosts| {
            hosts
                .iter()
                .map(|h| {
                    json!({
                        "url": h["url"], "calls": h["calls"], "failures": h["failures"],
                        "busy": ms(h["busy_ms"].as_f64()), "queued": ms(h["queue_ms"].as_f64()),
                        "utilisation": fixed(h["utilisation"].as_f64(), 2),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let context = json!({
        "style": STYLE,
        "workflow": metrics["workflow"],
        "status": metrics["status"],
        "started_at": metrics["started_at"],
        "total_ms": metrics["total_ms"],
        "total_ms_text": ms(metrics["total_ms"].as_f64()),
        "chimera_version": metrics["chimera_version"],
        "legend": chart::timeline_legend(),
        "timeline_svg": timeline,
        "stages": stage_rows,
        "calls": calls,
        "concurrency": concurrency,
        "hosts": hosts,
        "reports": reports.iter().map(|r| json!({"name": r.name, "text": r.text})).collect::<Vec<_>>(),
        "provenance": serde_json::to_string_pretty(&metrics["provenance"]).unwrap_or_default(),
        "rerendered": rerendered,
    });
    render("run.html", &context)
}

/// Renders page `name` with `context`.
fn render(name: &str, context: &Value) -> Result<String, HtmlError> {
    let mut env = Environment::new();
    for (page, text) in PAGES {
        env.add_template(page, text)?;
    }
    Ok(env.get_template(name)?.render(context)?)
}

/// Writes `report.html` into the run directory `dir` from its metrics and
/// the report files they list (read from `dir`).
///
/// # Errors
/// When a report cannot be read, the page cannot be made, or written.
pub fn write_run_page(
    dir: &std::path::Path,
    metrics: &Value,
    rerendered: bool,
) -> Result<(), String> {
    let mut reports = Vec::new();
    for name in metrics["reports"].as_array().into_iter().flatten() {
        let Some(name) = name.as_str() else { continue };
        let text = std::fs::read_to_string(dir.join(name))
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        reports.push(ReportText {
            name: name.to_owned(),
            text,
        });
    }
    let page = run_page(metrics, &reports, rerendered).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("report.html"), page)
        .map_err(|e| format!("cannot write report.html: {e}"))
}

/// The figures of one call, each with its raw value (for checks) and its
/// text: `n/a` when the backend did not give it, marked when estimated.
fn call_row(c: &Value) -> Value {
    let estimated: Vec<&str> = c["estimated"]
        .as_array()
        .map(|e| e.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let figure = |key: &str, text: String| {
        json!({
            "key": key,
            "raw": c.get(key).filter(|v| v.is_number()),
            "text": text,
            "estimated": estimated.contains(&key),
        })
    };
    let count = |key: &str| {
        c[key]
            .as_u64()
            .map_or_else(|| "n/a".to_owned(), |n| n.to_string())
    };
    let mut warnings = Vec::new();
    if c["prompt_truncated"] == true {
        warnings.push("prompt truncated: it did not fit num_ctx".to_owned());
    }
    if let Some(e) = c["error"].as_str() {
        warnings.push(format!("failed: {e}"));
    }
    if c["done_reason"] == "length" {
        warnings.push("stopped at num_predict".to_owned());
    }
    json!({
        "label": format!("{}/{}", c["agent"].as_str().unwrap_or_default(), c["stage"].as_str().unwrap_or_default()),
        "model": c["model"],
        "figures": [
            figure("ttft_ms", ms(c["ttft_ms"].as_f64())),
            figure("tokens_per_second", fixed(c["tokens_per_second"].as_f64(), 1)),
            figure("prompt_eval_count", count("prompt_eval_count")),
            figure("eval_count", count("eval_count")),
        ],
        "cold": match c["cold"].as_bool() {
            Some(true) => "cold (loaded the model)",
            Some(false) => "warm",
            None => "n/a",
        },
        "warnings": warnings,
    })
}

/// Milliseconds as the page prints them: one decimal, `n/a` when absent.
pub fn ms(v: Option<f64>) -> String {
    fixed(v, 1)
}

/// `v` with `places` decimals, `n/a` when absent or not finite.
pub fn fixed(v: Option<f64>, places: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.places$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_figures_are_na_and_the_page_escapes_what_the_model_wrote() {
        let metrics = json!({
            "workflow": "w", "status": "ok", "started_at": "2026-12-03T00:00:00Z",
            "total_ms": 12.5, "chimera_version": "0.1.0",
            "stages": [{"agent": "a", "stage": "s", "status": "ok", "started_ms": 0.0,
                        "wall_ms": 10.0, "load_ms": 1.0, "instantiate_ms": 1.0, "guest_ms": 8.0, "llm_ms": 6.0}],
            "calls": [{"agent": "a", "stage": "s", "model": "m", "ttft_ms": 5.25,
                       "tokens_per_second": null, "eval_count": 7, "estimated": ["eval_count"],
                       "prompt_truncated": true}],
            "provenance": {"workflow": {"sha256": "abc"}},
        });
        let reports = [ReportText {
            name: "report.md".into(),
            text: "<script>alert(1)</script>".into(),
        }];
        let page = run_page(&metrics, &reports, false).unwrap();
        assert!(page.contains("&lt;script&gt;alert(1)"));
        assert!(!page.contains("<script>alert"));
        assert!(
            page.contains(r#"data-metric="ttft_ms" data-value="5.25">5.2"#),
            "{page}"
        );
        assert!(
            page.contains(r#"data-metric="tokens_per_second">n&#x2f;a"#),
            "{page}"
        );
        assert!(page.contains("(estimated)"));
        assert!(page.contains("prompt truncated"));
        assert!(page.contains("default-src 'none'"));
        assert!(
            page.contains("font:14px/1.45"),
            "the stylesheet is not escaped"
        );
    }
}
