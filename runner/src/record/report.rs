//! The report a person reads: `report.md`, rendered host-side from the
//! agent's report template over the run's outputs, timings and LLM metrics.

use super::calls::CallEntry;
use super::{StageMetrics, StageStatus};
use crate::llm::CallRecord;
use crate::workflow::{Agent, ModelSpec};
use serde_json::{Map, Value, json};

/// Options shown in the Configuration line even when not set, as the seed
/// report does; (option name, label).
const SHOWN_OPTIONS: &[(&str, &str)] = &[
    ("num_gpu", "num_gpu"),
    ("num_ctx", "num_ctx"),
    ("temperature", "temp"),
    ("top_p", "top_p"),
    ("top_k", "top_k"),
    ("repeat_penalty", "repeat_penalty"),
];

/// `num_gpu=80, num_ctx=512, temp=0.8, top_p=default, …` plus any other declared option.
pub fn configuration_line(model: Option<&ModelSpec>) -> String {
    let empty = indexmap::IndexMap::new();
    let options = model.map_or(&empty, |m| &m.options);
    let plain = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let mut parts: Vec<String> = SHOWN_OPTIONS
        .iter()
        .map(|(name, label)| {
            format!(
                "{label}={}",
                options
                    .get(*name)
                    .map_or_else(|| "default".to_owned(), plain)
            )
        })
        .collect();
    parts.extend(
        options
            .iter()
            .filter(|(k, _)| !SHOWN_OPTIONS.iter().any(|(n, _)| n == k))
            .map(|(k, v)| format!("{k}={}", plain(v))),
    );
    parts.join(", ")
}

/// Totals and ratios over an agent's successful LLM calls, as the Metrics
/// section shows them.
///
/// A total is given only when every successful call reported the figure (a
/// sum over some of them would read as the whole); otherwise it is `null`,
/// which reports print as `n/a`. `estimated` lists the figures built from a
/// call's estimate (see [`CallRecord::estimated`]).
pub fn aggregate(calls: &[&CallEntry]) -> Value {
    let ok: Vec<&CallRecord> = calls
        .iter()
        .map(|c| &c.record)
        .filter(|r| r.error.is_none())
        .collect();
    let total = |f: fn(&CallRecord) -> Option<f64>| -> Option<f64> {
        if ok.is_empty() {
            return None;
        }
        ok.iter().map(|r| f(r)).sum()
    };
    let count = |f: fn(&CallRecord) -> Option<u64>| -> Option<u64> {
        if ok.is_empty() {
            return None;
        }
        ok.iter().map(|r| f(r)).sum()
    };
    let eval_count = count(|r| r.eval_count);
    let eval_ms = total(|r| r.eval_duration_ms);
    #[allow(clippy::cast_precision_loss)]
    let throughput = match (eval_count, eval_ms) {
        (Some(n), Some(ms)) if ms > 0.0 => Some(n as f64 / (ms / 1000.0)),
        _ => None,
    };
    let ttfts: Vec<f64> = ok.iter().filter_map(|r| r.ttft_ms).collect();
    #[allow(clippy::cast_precision_loss)]
    let ttft = (!ttfts.is_empty()).then(|| ttfts.iter().sum::<f64>() / ttfts.len() as f64);
    let estimated_count = ok
        .iter()
        .any(|r| r.estimated.iter().any(|f| f == "eval_count"));
    let estimated: Vec<&str> = if estimated_count {
        [
            ("eval_count", eval_count.is_some()),
            ("throughput", throughput.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, present)| present.then_some(field))
        .collect()
    } else {
        Vec::new()
    };
    json!({
        "calls": calls.len(),
        "failed_calls": calls.len() - ok.len(),
        "throughput": throughput,
        "ttft_ms": ttft,
        "total_duration_ms": total(|r| r.total_duration_ms),
        "eval_count": eval_count,
        "prompt_eval_count": count(|r| r.prompt_eval_count),
        "prompt_eval_duration_ms": total(|r| r.prompt_eval_duration_ms),
        "eval_duration_ms": eval_ms,
        "load_duration_ms": total(|r| r.load_duration_ms),
        "wall_ms": total(|r| Some(r.wall_ms)),
        "estimated": estimated,
    })
}

/// The first output (in stage order) that has a string or array at `key`.
fn find<'a>(
    outputs: &'a Map<String, Value>,
    key: &str,
    pred: fn(&Value) -> bool,
) -> Option<&'a Value> {
    outputs
        .values()
        .find_map(|o| o.get(key).filter(|v| pred(v)))
}

/// The top-level variables of the report template's context ([`context`]
/// builds exactly these; a test keeps the two together).
pub const CONTEXT: &[&str] = &[
    "workflow",
    "agent",
    "title",
    "date",
    "model",
    "configuration",
    "body",
    "files_analyzed",
    "data_summary",
    "execution",
    "metrics",
    "calls",
    "key_findings",
    "recommendations",
    "persona_prompt",
    "stages",
    "outputs",
    "status",
    "failures",
];

/// Everything the report template sees.
pub fn context(
    workflow: &str,
    agent: &Agent,
    started: jiff::Timestamp,
    agent_seconds: f64,
    stages: &[&StageMetrics],
    outputs: &Map<String, Value>,
    calls: &[&CallEntry],
) -> Value {
    let model = agent.stages.iter().find_map(|s| s.model.as_ref());
    let inventory = outputs.values().find(|o| o.get("total_files").is_some());
    let failures: Vec<Value> = stages
        .iter()
        .filter(|s| s.status == StageStatus::Failed)
        .map(|s| json!({"stage": s.stage, "error": s.error.as_ref().map(ToString::to_string)}))
        .collect();
    json!({
        "workflow": workflow,
        "agent": agent.id,
        "title": agent.title,
        "date": started.strftime("%Y-%m-%d").to_string(),
        "model": calls.first().map(|c| c.record.model.clone()).or_else(|| model.map(|m| m.name.clone())).unwrap_or_else(|| "none".into()),
        "configuration": configuration_line(model),
        "body": find(outputs, "body", Value::is_string),
        "files_analyzed": inventory.and_then(|o| o.get("total_files")),
        "data_summary": inventory.and_then(|o| o.get("summary")),
        "execution": {
            "total_s": agent_seconds,
            "stages": stages.iter().map(|s| json!({"id": s.stage, "seconds": s.wall_ms / 1000.0, "status": s.status})).collect::<Vec<_>>(),
        },
        "metrics": aggregate(calls),
        "calls": calls.iter().map(|c| json!({
            "stage": c.stage, "prompt_truncated": c.record.prompt_truncated,
            "prompt_eval_count": c.record.prompt_eval_count, "ttft_ms": c.record.ttft_ms,
            "tokens_per_second": c.record.tokens_per_second, "eval_count": c.record.eval_count,
        })).collect::<Vec<_>>(),
        "key_findings": find(outputs, "key_findings", Value::is_array).cloned().unwrap_or_else(|| json!([])),
        "recommendations": find(outputs, "recommendations", Value::is_array).cloned().unwrap_or_else(|| json!([])),
        "persona_prompt": find(outputs, "persona_prompt", Value::is_string),
        "stages": stages,
        "outputs": outputs,
        "status": if failures.is_empty() { "ok" } else { "failed" },
        "failures": failures,
    })
}

#[cfg(test)]
mod tests {
    use super::{CONTEXT, configuration_line, context};
    use crate::workflow::{Agent, BackendKind, ModelSpec};
    use serde_json::json;

    #[test]
    fn the_declared_report_context_is_the_one_built() {
        let agent = Agent {
            id: "a".into(),
            title: "A".into(),
            description: None,
            report: None,
            persona: None,
            needs: Vec::new(),
            stages: Vec::new(),
        };
        let built = context(
            "w",
            &agent,
            jiff::Timestamp::UNIX_EPOCH,
            0.0,
            &[],
            &serde_json::Map::new(),
            &[],
        );
        let mut names: Vec<&str> = built
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut declared = CONTEXT.to_vec();
        names.sort_unstable();
        declared.sort_unstable();
        assert_eq!(names, declared);
    }

    #[test]
    fn configuration_line_has_the_seed_form() {
        let mut options = indexmap::IndexMap::new();
        options.insert("num_gpu".to_owned(), json!(80));
        options.insert("num_ctx".to_owned(), json!(512));
        options.insert("temperature".to_owned(), json!(0.8));
        options.insert("seed".to_owned(), json!(7));
        let model = ModelSpec {
            hosts: Vec::new(),
            backend: BackendKind::Ollama,
            name: "gemma3:latest".into(),
            host: None,
            api_key_env: None,
            keep_alive: None,
            options,
        };
        assert_eq!(
            configuration_line(Some(&model)),
            "num_gpu=80, num_ctx=512, temp=0.8, top_p=default, top_k=default, repeat_penalty=default, seed=7"
        );
    }
}
