//! How much a run's agents overlapped: each agent's time (first stage start
//! to last stage end), the sequential-equivalent time (their sum), the
//! wall time, speedup = sequential / wall and efficiency = speedup /
//! agents; and a timeline of every stage. Kept in `metrics.json`, and as
//! `concurrency.md` for people; with several reports, the combined report
//! (`report.md`, `report.json`) that joins them to this analysis.

use super::calls::CallEntry;
use super::{RunDir, RunMetrics, StageMetrics};
use crate::llm::pool::HostUsage;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// One agent's span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpan {
    pub agent: String,
    pub start_ms: f64,
    pub end_ms: f64,
    /// The sum of its stages' wall times: what the agent would take on its
    /// own (time spent waiting for a `needs:` is not counted).
    pub elapsed_ms: f64,
}

/// The concurrency section of `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Concurrency {
    pub agents: Vec<AgentSpan>,
    /// The sum of the agents' times (their stages' wall times): the run's
    /// time had they run one after another.
    pub sequential_equivalent_ms: f64,
    /// From the first stage's start to the last stage's end.
    pub wall_ms: f64,
    /// `sequential_equivalent_ms / wall_ms`.
    pub speedup: f64,
    /// `speedup / agents`: 1 when every agent ran the whole time.
    pub efficiency: f64,
    /// The bound on stages at once (`None`: every ready stage).
    pub max_parallel: Option<u32>,
}

impl Concurrency {
    /// From the stages that ran (resumed and skipped stages have no time
    /// here); `None` with fewer than two agents that ran.
    pub fn of(stages: &[StageMetrics], max_parallel: Option<u32>) -> Option<Self> {
        let mut agents: Vec<AgentSpan> = Vec::new();
        for s in stages.iter().filter(|s| !s.resumed && s.wall_ms > 0.0) {
            let end = s.started_ms + s.wall_ms;
            match agents.iter_mut().find(|a| a.agent == s.agent) {
                Some(a) => {
                    a.start_ms = a.start_ms.min(s.started_ms);
                    a.end_ms = a.end_ms.max(end);
                    a.elapsed_ms += s.wall_ms;
                }
                None => agents.push(AgentSpan {
                    agent: s.agent.clone(),
                    start_ms: s.started_ms,
                    end_ms: end,
                    elapsed_ms: s.wall_ms,
                }),
            }
        }
        if agents.len() < 2 {
            return None;
        }
        let start = agents
            .iter()
            .map(|a| a.start_ms)
            .fold(f64::INFINITY, f64::min);
        let end = agents.iter().map(|a| a.end_ms).fold(0.0, f64::max);
        let wall_ms = end - start;
        let sequential_equivalent_ms: f64 = agents.iter().map(|a| a.elapsed_ms).sum();
        let speedup = if wall_ms > 0.0 {
            sequential_equivalent_ms / wall_ms
        } else {
            1.0
        };
        #[allow(clippy::cast_precision_loss)]
        let efficiency = speedup / agents.len() as f64;
        Some(Self {
            agents,
            sequential_equivalent_ms,
            wall_ms,
            speedup,
            efficiency,
            max_parallel,
        })
    }

    /// `concurrency.md`: the figures, each pooled host's share, then each
    /// stage on a timeline.
    pub fn markdown(&self, stages: &[StageMetrics], hosts: &[HostUsage]) -> String {
        let mut md = format!(
            "# Concurrency\n\n{} agents; sequential-equivalent time {:.1} ms (the sum of the agents' times), \
             wall time {:.1} ms: **speedup {:.2}×**, **efficiency {:.2}** (speedup / agents){}.\n\n\
             | agent | start ms | end ms | time ms |\n|---|---:|---:|---:|\n",
            self.agents.len(),
            self.sequential_equivalent_ms,
            self.wall_ms,
            self.speedup,
            self.efficiency,
            self.max_parallel.map_or_else(String::new, |m| format!(
                "; at most {} at once",
                crate::words::plural(m, "stage")
            )),
        );
        for a in &self.agents {
            md.push_str(&format!(
                "| {} | {:.1} | {:.1} | {:.1} |\n",
                a.agent, a.start_ms, a.end_ms, a.elapsed_ms
            ));
        }
        if !hosts.is_empty() {
            md.push_str(
                "\n## Hosts\n\nEach pooled host: calls sent (a call moved on counts on each host it tried), \
                 failures before any token, time with a call in flight, time calls waited for a free slot, \
                 and utilisation (busy time over the run's wall time).\n\n\
                 | host | calls | failures | busy ms | queued ms | utilisation |\n|---|---:|---:|---:|---:|---:|\n",
            );
            for h in hosts {
                md.push_str(&format!(
                    "| {} | {} | {} | {:.1} | {:.1} | {} |\n",
                    h.host,
                    h.calls,
                    h.failures,
                    h.busy_ms,
                    h.queue_ms,
                    h.utilisation
                        .map_or_else(|| "n/a".to_owned(), |u| format!("{:.0} %", u * 100.0))
                ));
            }
        }
        md.push_str("\n## Timeline\n\nEach stage from its start to its end; one column is 1/60 of the run.\n\n```\n");
        let end = self
            .agents
            .iter()
            .map(|a| a.end_ms)
            .fold(0.0, f64::max)
            .max(1.0);
        let width = 60.0;
        let label_width = stages
            .iter()
            .map(|s| s.agent.len() + s.stage.len() + 1)
            .max()
            .unwrap_or(0);
        for s in stages.iter().filter(|s| !s.resumed && s.wall_ms > 0.0) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let (from, to) = (
                (s.started_ms / end * width).floor() as usize,
                (((s.started_ms + s.wall_ms) / end * width).ceil() as usize).max(1),
            );
            let to = to.max(from + 1);
            md.push_str(&format!(
                "{:<label_width$} |{}{}{}| {:.1} ms\n",
                format!("{}/{}", s.agent, s.stage),
                " ".repeat(from),
                "#".repeat(to - from),
                " ".repeat(60usize.saturating_sub(to)),
                s.wall_ms
            ));
        }
        md.push_str("```\n");
        md
    }
}

/// The agent a report file belongs to: `report-collector.md` → `collector`.
pub fn agent_of_report(file: &str) -> &str {
    file.strip_prefix("report-")
        .and_then(|n| n.strip_suffix(".md"))
        .unwrap_or(file)
}

/// Writes `concurrency.md` for a run whose agents overlapped and, when
/// several agents wrote reports, the combined report: `report.md` (each
/// agent's report, then the analysis) and `report.json` (each agent's
/// figures over its calls, every stage, the pooled hosts and the
/// concurrency figures), listed first among the run's reports.
///
/// # Errors
/// A report that cannot be read back, or a file that cannot be written.
pub fn write(dir: &RunDir, metrics: &mut RunMetrics, calls: &[CallEntry]) -> std::io::Result<()> {
    let Some(concurrency) = metrics.concurrency.clone() else {
        return Ok(());
    };
    let analysis = concurrency.markdown(&metrics.stages, &metrics.hosts);
    dir.write("concurrency.md", analysis.as_bytes())?;
    if metrics.reports.len() < 2 {
        return Ok(());
    }
    let mut reports = Vec::new();
    let mut agents = Vec::new();
    for file in &metrics.reports {
        let agent = agent_of_report(file);
        let own: Vec<&CallEntry> = calls.iter().filter(|c| c.agent == agent).collect();
        agents.push(json!({
            "agent": agent,
            "report": file,
            "metrics": super::report::aggregate(&own),
        }));
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot read back {}: {e}", path.display()),
            )
        })?;
        reports.push((agent.to_owned(), text));
    }
    let md = combined(&metrics.workflow, &reports, &analysis);
    dir.write("report.md", md.as_bytes())?;
    dir.write_json(
        "report.json",
        &json!({
            "workflow": metrics.workflow,
            "reports": metrics.reports,
            "agents": agents,
            "stages": metrics.stages,
            "hosts": metrics.hosts,
            "concurrency": concurrency,
        }),
    )?;
    metrics.reports.insert(0, "report.md".into());
    Ok(())
}

/// The combined report of a run with several reporting agents: each
/// agent's report, then the concurrency analysis.
pub fn combined(workflow: &str, reports: &[(String, String)], concurrency: &str) -> String {
    let mut md = format!("# {workflow}: combined report\n\n");
    for (agent, _) in reports {
        md.push_str(&format!("- [{agent}](#agent-{agent})\n"));
    }
    md.push_str("- [Concurrency](#concurrency)\n\n");
    for (agent, text) in reports {
        md.push_str(&format!("<a id=\"agent-{agent}\"></a>\n\n"));
        // Each agent's headings one level down, under the combined title.
        for line in text.lines() {
            if line.starts_with('#') {
                md.push('#');
            }
            md.push_str(line);
            md.push('\n');
        }
        md.push_str("\n---\n\n");
    }
    for line in concurrency.lines() {
        if line.starts_with('#') {
            md.push('#');
        }
        md.push_str(line);
        md.push('\n');
    }
    md
}
