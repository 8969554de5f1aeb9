//! How much a run's agents overlapped: each agent's time (first stage start
//! to last stage end), the sequential-equivalent time (their sum), the
//! wall time, speedup = sequential / wall and efficiency = speedup /
//! agents; and a timeline of every stage. Kept in `metrics.json`, and as
//! `concurrency.md` for people.

use super::StageMetrics;
use serde::{Deserialize, Serialize};

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

    /// `concurrency.md`: the figures, then each stage on a timeline.
    pub fn markdown(&self, stages: &[StageMetrics]) -> String {
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
