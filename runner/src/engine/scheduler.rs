//! The stages as a graph ([`crate::workflow::dag`]): a stage starts once
//! everything it waits for ended `ok` (at most `max_parallel` at once), is
//! skipped once something it waits for failed or was skipped, and every
//! other stage goes on. All bookkeeping (outputs, the record, checkpoints,
//! reports) happens here, one completion at a time; only the stages
//! themselves run concurrently.

use super::stage::{StageContext, run_stage};
use crate::plugin::StageFailure;
use crate::record::calls::{CallEntry, call_summary};
use crate::record::checkpoint::Checkpoint;
use crate::record::{RunMetrics, RunStatus, StageMetrics, StageStatus, ms};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Map, Value};
use std::time::Instant;
use tracing::Instrument;

#[derive(Debug, Clone, PartialEq)]
enum State {
    Waiting,
    Running,
    Ok,
    Failed,
    Skipped,
    /// Not part of this run (past `stop_after`).
    Unwanted,
}

impl State {
    fn ended(&self) -> bool {
        matches!(
            self,
            Self::Ok | Self::Failed | Self::Skipped | Self::Unwanted
        )
    }
}

/// One run's schedule.
pub(super) struct Schedule<'a, 'b> {
    cx: &'b StageContext<'a>,
    metrics: &'b mut RunMetrics,
    checkpoint: &'b mut Checkpoint,
    clock: Instant,
    started: jiff::Timestamp,
    state: Vec<State>,
    records: Vec<Option<StageMetrics>>,
    outputs: Vec<Option<Value>>,
    reported: Vec<bool>,
}

fn blank_record(agent: &str, stage: &crate::workflow::Stage) -> StageMetrics {
    StageMetrics {
        agent: agent.to_owned(),
        stage: stage.id.clone(),
        plugin: stage.plugin.value.clone(),
        plugin_origin: String::new(),
        status: StageStatus::Skipped,
        error: None,
        skipped_because: None,
        started_ms: 0.0,
        wall_ms: 0.0,
        load_ms: 0.0,
        load_kind: None,
        instantiate_ms: 0.0,
        guest_ms: 0.0,
        llm_ms: 0.0,
        output_bytes: 0,
        resumed: false,
        files: Vec::new(),
    }
}

impl<'a, 'b> Schedule<'a, 'b> {
    pub fn new(
        cx: &'b StageContext<'a>,
        metrics: &'b mut RunMetrics,
        checkpoint: &'b mut Checkpoint,
        clock: Instant,
        started: jiff::Timestamp,
    ) -> Self {
        let dag = &cx.workflow.dag;
        let n = dag.nodes.len();
        let mut state = vec![State::Waiting; n];
        // `stop_after` (`chimera render`): only that stage and what it waits for.
        if let Some((agent, stage)) = &cx.options.stop_after
            && let Some(target) = (0..n).find(|&i| {
                let (a, s) = dag.nodes[i];
                cx.workflow.agents[a].id == *agent && cx.workflow.agents[a].stages[s].id == *stage
            })
        {
            let wanted = dag.ancestors(target);
            for (i, st) in state.iter_mut().enumerate() {
                if i != target && !wanted.contains(&i) {
                    *st = State::Unwanted;
                }
            }
        }
        Self {
            cx,
            metrics,
            checkpoint,
            clock,
            started,
            state,
            records: vec![None; n],
            outputs: vec![None; n],
            reported: vec![false; cx.workflow.agents.len()],
        }
    }

    fn names(&self, i: usize) -> (&'a crate::workflow::Agent, &'a crate::workflow::Stage) {
        let (a, s) = self.cx.workflow.dag.nodes[i];
        let agent = &self.cx.workflow.agents[a];
        (agent, &agent.stages[s])
    }

    /// What a stage receives: the outputs of its agent's earlier stages by
    /// stage id, and of the other agents' stages it needs as `<agent>/<stage>`.
    fn inputs(&self, i: usize) -> Map<String, Value> {
        let dag = &self.cx.workflow.dag;
        let (a, s) = dag.nodes[i];
        let mut inputs = Map::new();
        for j in (0..dag.nodes.len()).filter(|&j| dag.nodes[j].0 == a && dag.nodes[j].1 < s) {
            if let Some(out) = &self.outputs[j] {
                inputs.insert(self.names(j).1.id.clone(), out.clone());
            }
        }
        for &j in &dag.inputs_from[i] {
            if let Some(out) = &self.outputs[j] {
                let (agent, stage) = self.names(j);
                inputs.insert(format!("{}/{}", agent.id, stage.id), out.clone());
            }
        }
        inputs
    }

    /// Skips what can no longer run, takes over what `--resume` kept, and
    /// returns the stages ready to start, in workflow order.
    fn settle(&mut self, interrupted: bool) -> Vec<usize> {
        let dag = &self.cx.workflow.dag;
        loop {
            let mut changed = false;
            let mut ready = Vec::new();
            for i in 0..dag.nodes.len() {
                if self.state[i] != State::Waiting {
                    continue;
                }
                let deps = &dag.deps[i];
                let blocked = deps
                    .iter()
                    .find(|&&d| matches!(self.state[d], State::Failed | State::Skipped));
                let because = if interrupted {
                    Some("the run was interrupted".to_owned())
                } else {
                    // A stage skipped in turn passes on the first cause.
                    blocked.map(|&d| {
                        self.records[d]
                            .as_ref()
                            .and_then(|r| r.skipped_because.clone())
                            .unwrap_or_else(|| {
                                let (agent, stage) = self.names(d);
                                format!("`{}/{}` failed", agent.id, stage.id)
                            })
                    })
                };
                if let Some(because) = because {
                    let (agent, stage) = self.names(i);
                    let mut record = blank_record(&agent.id, stage);
                    record.skipped_because = Some(because);
                    self.cx.options.observer.stage_finished(&record);
                    self.records[i] = Some(record);
                    self.state[i] = State::Skipped;
                    changed = true;
                } else if deps.iter().all(|&d| self.state[d] == State::Ok) {
                    let (agent, stage) = self.names(i);
                    let earlier = self
                        .cx
                        .options
                        .resume
                        .as_ref()
                        .and_then(|r| r.take(&agent.id, &stage.id));
                    if let Some((record, output)) = earlier {
                        self.records[i] = Some(record);
                        self.outputs[i] = Some(output);
                        self.state[i] = State::Ok;
                        changed = true;
                    } else {
                        ready.push(i);
                    }
                }
            }
            if !changed {
                return ready;
            }
        }
    }

    /// Runs every stage; the record is complete (bar `finish`) when it returns.
    ///
    /// # Errors
    /// When the record cannot be written.
    pub async fn run(&mut self) -> std::io::Result<()> {
        let cx = self.cx;
        let limit = cx.workflow.max_parallel.map_or(usize::MAX, |m| m as usize);
        let clock = self.clock;
        let launch = |i: usize, inputs: Map<String, Value>| {
            let (a, s) = cx.workflow.dag.nodes[i];
            let agent = &cx.workflow.agents[a];
            let stage = &agent.stages[s];
            cx.options.observer.stage_started(&agent.id, &stage.id);
            async move {
                let mut record = blank_record(&agent.id, stage);
                record.started_ms = ms(clock.elapsed());
                let stage_clock = Instant::now();
                let span = tracing::info_span!("stage", agent = %agent.id, stage = %stage.id, plugin = %stage.plugin.value);
                let result = run_stage(cx, agent, stage, &inputs, &mut record)
                    .instrument(span)
                    .await;
                record.wall_ms = ms(stage_clock.elapsed());
                (i, record, result)
            }
        };
        let mut running = FuturesUnordered::new();
        let mut started_at: Vec<(usize, f64)> = Vec::new();
        let mut interrupt = cx.options.interrupt.clone();
        let mut interrupted = false;
        loop {
            for i in self.settle(interrupted) {
                if running.len() >= limit {
                    break;
                }
                self.state[i] = State::Running;
                started_at.push((i, ms(clock.elapsed())));
                running.push(launch(i, self.inputs(i)));
            }
            self.report_finished_agents()?;
            if running.is_empty() {
                break;
            }
            let next = match interrupt.as_mut() {
                Some(stop) => tokio::select! {
                    next = running.next() => next,
                    _ = stop.wait_for(|s| *s) => None,
                },
                None => running.next().await,
            };
            let Some((i, record, result)) = next else {
                // Ctrl-C: every running stage ends interrupted, the rest is skipped.
                interrupted = true;
                drop(std::mem::take(&mut running));
                for (i, at) in std::mem::take(&mut started_at) {
                    if self.state[i] == State::Running {
                        let (agent, stage) = self.names(i);
                        let mut record = blank_record(&agent.id, stage);
                        record.started_ms = at;
                        record.wall_ms = ms(clock.elapsed()) - at;
                        self.complete(i, record, Err(StageFailure::Interrupted))?;
                    }
                }
                continue;
            };
            started_at.retain(|(j, _)| *j != i);
            self.complete(i, record, result)?;
            if cx.options.stop_after.as_ref().is_some_and(|(a, s)| {
                let (agent, stage) = self.names(i);
                agent.id == *a && stage.id == *s
            }) {
                break;
            }
        }
        self.report_finished_agents()?;
        self.metrics.stages = self.records.iter().flatten().cloned().collect();
        Ok(())
    }

    /// Records a stage's end: its output, its state, the checkpoint.
    fn complete(
        &mut self,
        i: usize,
        mut record: StageMetrics,
        result: Result<Value, StageFailure>,
    ) -> std::io::Result<()> {
        let (agent, stage) = self.names(i);
        match result {
            Ok(output) => {
                let text = serde_json::to_vec_pretty(&output).unwrap_or_default();
                record.output_bytes = text.len();
                self.cx
                    .dir
                    .write(&format!("outputs/{}/{}.json", agent.id, stage.id), &text)?;
                record.status = StageStatus::Ok;
                self.outputs[i] = Some(output);
                self.state[i] = State::Ok;
                tracing::info!(agent = %agent.id, stage = %stage.id, wall_ms = record.wall_ms, "stage finished");
            }
            Err(failure) => {
                // The command line prints the failure once, from the record;
                // the log has it with -v.
                tracing::info!(agent = %agent.id, stage = %stage.id, error = %failure, "stage failed");
                if matches!(failure, StageFailure::Interrupted) {
                    self.metrics.status = RunStatus::Interrupted;
                } else if self.metrics.status == RunStatus::Ok {
                    self.metrics.status = RunStatus::Failed;
                }
                record.status = StageStatus::Failed;
                record.error = Some(failure);
                self.state[i] = State::Failed;
            }
        }
        self.cx.options.observer.stage_finished(&record);
        self.records[i] = Some(record);
        self.metrics.stages = self.records.iter().flatten().cloned().collect();
        self.metrics.total_ms = ms(self.clock.elapsed());
        let entries = self.cx.calls.entries();
        if self.checkpoint.append_calls(self.cx.dir, &entries)? {
            self.metrics.calls = entries.iter().map(call_summary).collect();
        }
        if self.state.iter().any(|s| !s.ended()) {
            self.checkpoint.metrics(self.cx.dir, self.metrics)?;
        }
        Ok(())
    }

    /// Renders the report of every agent whose stages have all ended.
    fn report_finished_agents(&mut self) -> std::io::Result<()> {
        let cx = self.cx;
        // `chimera render` stops at a stage; no report is asked for.
        if cx.options.stop_after.is_some() {
            return Ok(());
        }
        let dag = &cx.workflow.dag;
        let reporting = cx
            .workflow
            .agents
            .iter()
            .filter(|a| a.report.is_some())
            .count();
        for (a, agent) in cx.workflow.agents.iter().enumerate() {
            let nodes: Vec<usize> = (0..dag.nodes.len())
                .filter(|&i| dag.nodes[i].0 == a)
                .collect();
            if self.reported[a] || !nodes.iter().all(|&i| self.state[i].ended()) {
                continue;
            }
            self.reported[a] = true;
            let Some(template) = &agent.report else {
                continue;
            };
            if nodes.iter().all(|&i| self.state[i] == State::Unwanted) {
                continue;
            }
            let entries = cx.calls.entries();
            let agent_calls: Vec<&CallEntry> =
                entries.iter().filter(|c| c.agent == agent.id).collect();
            let stage_records: Vec<&StageMetrics> = nodes
                .iter()
                .filter_map(|&i| self.records[i].as_ref())
                .collect();
            let seconds = stage_records
                .iter()
                .filter(|r| !r.resumed && r.wall_ms > 0.0)
                .map(|r| r.started_ms + r.wall_ms)
                .fold(0.0, f64::max)
                - stage_records
                    .iter()
                    .filter(|r| !r.resumed && r.wall_ms > 0.0)
                    .map(|r| r.started_ms)
                    .fold(f64::INFINITY, f64::min);
            let mut outputs = Map::new();
            for &i in &nodes {
                if let Some(out) = &self.outputs[i] {
                    outputs.insert(self.names(i).1.id.clone(), out.clone());
                }
            }
            let context = crate::record::report::context(
                &cx.workflow.name,
                agent,
                self.started,
                if seconds.is_finite() {
                    seconds.max(0.0) / 1000.0
                } else {
                    0.0
                },
                &stage_records,
                &outputs,
                &agent_calls,
            );
            let name = if reporting == 1 {
                "report.md".to_owned()
            } else {
                format!("report-{}.md", agent.id)
            };
            match cx.templates.render_for(
                &template.value,
                &context,
                Some(&crate::template::AgentInfo::of(agent)),
            ) {
                Ok(text) => {
                    cx.dir.write(&name, text.as_bytes())?;
                    self.metrics.reports.push(name);
                }
                Err(e) => {
                    tracing::info!(agent = %agent.id, error = %e, "report template failed");
                    self.metrics
                        .report_errors
                        .push(format!("agent `{}`: {e}", agent.id));
                    if self.metrics.status == RunStatus::Ok {
                        self.metrics.status = RunStatus::Failed;
                    }
                }
            }
        }
        Ok(())
    }
}
