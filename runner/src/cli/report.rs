//! `chimera report <dir>`: a record's pages drawn again without a model.
//!
//! For a run: each agent's report template is rendered again from what
//! the record holds (stage metrics, outputs, calls), with the workflow,
//! overrides and search paths `run.json` names, so an edited template shows
//! at once; `metrics.json`'s provenance notes the re-render (when, by which
//! chimera, the templates and their hashes); `report.html` follows. For a
//! sweep: `summary.html` from `summary.json`.

use super::prepare::prepare;
use super::{RunArgs, fail, host};
use crate::record::calls::CallEntry;
use crate::record::resume::Invocation;
use crate::record::{RunDir, StageMetrics};
use serde_json::{Map, Value, json};
use std::path::Path;

pub(super) async fn report(dir: &Path) -> Result<(), u8> {
    let read = |name: &str| -> Option<Result<Value, String>> {
        let text = std::fs::read_to_string(dir.join(name)).ok()?;
        Some(serde_json::from_str(&text).map_err(|e| format!("{name} does not parse: {e}")))
    };
    let bad = |e: String| fail(2, &format!("error: {}: {e}", dir.display()));
    if let Some(summary) = read("summary.json") {
        let summary = summary.map_err(bad)?;
        if summary.get("objective").is_none() {
            return Err(fail(
                2,
                &format!(
                    "error: {} holds a repeat's or comparison's summary; its page is written when the plan runs\n  = help: give one of its runs' directories (`run-N/`) to draw that run's pages again",
                    dir.display()
                ),
            ));
        }
        let page = crate::record::html::sweep_page(&summary)
            .map_err(|e| fail(1, &format!("error: {e}")))?;
        write(dir, "summary.html", page.as_bytes())?;
        println!("{}", dir.join("summary.html").display());
        return Ok(());
    }
    let Some(metrics) = read("metrics.json") else {
        return Err(fail(
            2,
            &format!(
                "error: {} is not a record: it has no metrics.json or summary.json\n  = help: give the directory `chimera run` printed as `run record:`, or a sweep's `--out` directory",
                dir.display()
            ),
        ));
    };
    let mut metrics = metrics.map_err(bad)?;
    let has_reports = metrics["reports"].as_array().is_some_and(|r| !r.is_empty())
        || metrics["report_errors"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
    if has_reports {
        let rendered = rerender_reports(dir, &metrics).await?;
        // A report whose template failed in the run and renders now joins
        // the list (its old error stays, with the note saying when it was
        // fixed).
        if let Some(list) = metrics["reports"].as_array_mut() {
            for name in &rendered.files {
                if !list.iter().any(|n| n == name.as_str()) {
                    list.push(json!(name));
                }
            }
        }
        for name in &rendered.files {
            println!("{}", dir.join(name).display());
        }
        let note = json!({
            "at": jiff::Timestamp::now().to_string(),
            "chimera_version": env!("CARGO_PKG_VERSION"),
            "files": rendered.files,
            "templates": rendered.templates,
        });
        match metrics["provenance"]["rerendered"].as_array_mut() {
            Some(notes) => notes.push(note),
            None => metrics["provenance"]["rerendered"] = json!([note]),
        }
        let text = serde_json::to_vec_pretty(&metrics).unwrap_or_default();
        write(dir, "metrics.json", &text)?;
    }
    crate::record::html::write_run_page(dir, &metrics, true)
        .map_err(|e| fail(1, &format!("error: {e}")))?;
    println!("{}", dir.join("report.html").display());
    Ok(())
}

/// What a re-render wrote, and the templates it loaded (name, sha256).
struct Rendered {
    files: Vec<String>,
    templates: Vec<Value>,
}

/// Renders each agent's report again into the files the run wrote.
async fn rerender_reports(dir: &Path, metrics: &Value) -> Result<Rendered, u8> {
    let invocation: Invocation = std::fs::read_to_string(dir.join("run.json"))
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .map_err(|e| {
            fail(
                2,
                &format!(
                    "error: cannot render the reports of {} again: its run.json is missing or bad ({e})\n  = help: `chimera report` needs the record `chimera run` wrote, with its run.json",
                    dir.display()
                ),
            )
        })?;
    let args = RunArgs {
        input: invocation.input.clone(),
        backend: invocation.backend.clone(),
        model: invocation.model.clone(),
        set: invocation.set.clone(),
        connect_timeout: std::time::Duration::from_secs(10),
        read_timeout: std::time::Duration::from_secs(120),
    };
    let host = host()?;
    let checked = prepare(
        &invocation.workflow,
        &host,
        Some(&args),
        invocation.search.as_ref(),
    )
    .await?;
    let workflow = &checked.workflow;
    let record_err = |what: &str, e: String| {
        fail(
            1,
            &format!("error: cannot read {what} of {}: {e}", dir.display()),
        )
    };
    let stages: Vec<StageMetrics> = serde_json::from_value(metrics["stages"].clone())
        .map_err(|e| record_err("the stages in metrics.json", e.to_string()))?;
    let calls: Vec<CallEntry> = std::fs::read_to_string(dir.join("calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| record_err("calls.jsonl", e.to_string()))?;
    let started: jiff::Timestamp = metrics["started_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(jiff::Timestamp::now);
    let listed: Vec<&str> = metrics["reports"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let reporting = workflow
        .agents
        .iter()
        .filter(|a| a.report.is_some())
        .count();
    let mut files = Vec::new();
    for agent in &workflow.agents {
        let Some(template) = &agent.report else {
            continue;
        };
        let name = if reporting == 1 {
            "report.md".to_owned()
        } else {
            format!("report-{}.md", agent.id)
        };
        let records: Vec<&StageMetrics> = stages.iter().filter(|s| s.agent == agent.id).collect();
        // An agent none of whose stages ran wrote no report in the run either.
        if records.is_empty() && !listed.contains(&name.as_str()) {
            continue;
        }
        let mut outputs = Map::new();
        for s in &records {
            let path = dir
                .join("outputs")
                .join(&s.agent)
                .join(format!("{}.json", s.stage));
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(output) = serde_json::from_str(&text)
            {
                outputs.insert(s.stage.clone(), output);
            }
        }
        let agent_calls: Vec<&CallEntry> = calls.iter().filter(|c| c.agent == agent.id).collect();
        let measured = records.iter().filter(|r| !r.resumed && r.wall_ms > 0.0);
        let end = measured
            .clone()
            .map(|r| r.started_ms + r.wall_ms)
            .fold(0.0, f64::max);
        let begin = measured.map(|r| r.started_ms).fold(f64::INFINITY, f64::min);
        let seconds = if begin.is_finite() {
            (end - begin).max(0.0) / 1000.0
        } else {
            0.0
        };
        let context = crate::record::report::context(
            &workflow.name,
            agent,
            started,
            seconds,
            &records,
            &outputs,
            &agent_calls,
        );
        let text = checked
            .templates
            .render_for(
                &template.value,
                &context,
                Some(&crate::template::AgentInfo::of(agent)),
            )
            .map_err(|e| {
                fail(
                    1,
                    &format!("error: the report of agent `{}`: {e}", agent.id),
                )
            })?;
        write(dir, &name, text.as_bytes())?;
        files.push(name);
    }
    // With several reports, the combined one is rebuilt from them and the
    // concurrency analysis the run wrote.
    if listed.first() == Some(&"report.md") && reporting > 1 {
        let analysis = std::fs::read_to_string(dir.join("concurrency.md")).unwrap_or_default();
        let mut reports = Vec::new();
        // In the order the run wrote them (agents as they finished).
        let mut order: Vec<&str> = listed
            .iter()
            .copied()
            .filter(|f| f.starts_with("report-"))
            .collect();
        for f in &files {
            if f.starts_with("report-") && !order.contains(&f.as_str()) {
                order.push(f);
            }
        }
        for name in order {
            let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            let agent = crate::record::concurrency::agent_of_report(name);
            reports.push((agent.to_owned(), text));
        }
        let md = crate::record::concurrency::combined(&workflow.name, &reports, &analysis);
        write(dir, "report.md", md.as_bytes())?;
        files.insert(0, "report.md".into());
    }
    let templates = checked
        .templates
        .loaded()
        .into_iter()
        .map(|t| json!({"name": t.name, "file": t.file, "sha256": t.sha256}))
        .collect();
    Ok(Rendered { files, templates })
}

/// Writes a record file atomically.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), u8> {
    RunDir::at(dir.to_path_buf())
        .and_then(|d| d.write(name, bytes))
        .map(drop)
        .map_err(|e| {
            fail(
                1,
                &format!("error: cannot write {}: {e}", dir.join(name).display()),
            )
        })
}
