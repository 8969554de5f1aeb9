//! A sweep's `summary.json`, `summary.md` and `summary.csv`: every cell,
//! ranked by the objective, computed from the raw samples of the cells'
//! run records (never from the cells' own summaries), the best cell
//! marked, and the cells the comparison's test cannot tell from the best
//! marked as ties.

use super::RunDir;
use super::samples::Samples;
use super::sweep::{CellStatus, Fingerprint, PlannedCell, SweepManifest, cell_dir, read_cell};
use crate::stats::compare::{self, Better, Verdict};
use crate::stats::{Summary, summarize};
use crate::workflow::matrix::{SweepOrder, scalar_text, short};
use crate::workflow::objective::{Goal, Objective, Stat};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// How a cell stands against the best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Best,
    /// No detectable difference from the best.
    Tie,
    /// Detectably worse than the best.
    Worse,
    /// Nothing to rank: no measured sample of the objective.
    Unranked,
}

/// One cell of the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRow {
    /// 1 for the best; `None` when unranked.
    pub rank: Option<usize>,
    pub key: String,
    pub values: IndexMap<String, Value>,
    pub status: CellStatus,
    /// Measured runs that ended `ok` (the ones whose samples count).
    pub runs: usize,
    /// The objective's statistic over the cell's samples.
    pub objective: Option<f64>,
    pub mark: Mark,
    /// Two-sided Mann-Whitney U p-value against the best cell's samples.
    pub p_value_against_best: Option<f64>,
    /// The pooled headline metrics: `tokens_per_second`, `ttft_ms` (over
    /// every warm call) and `run total_ms`.
    pub metrics: BTreeMap<String, Summary>,
    /// The cell's directory, relative to the sweep's.
    pub dir: String,
}

/// `summary.json` of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    pub workflow: String,
    pub objective: Objective,
    /// How ties are found.
    pub test: String,
    pub alpha: f64,
    pub runs: u32,
    pub warmup: u32,
    pub include_cold: bool,
    #[serde(default)]
    pub order: SweepOrder,
    /// Ranked cells first (best first), then unranked ones.
    pub cells: Vec<CellRow>,
    /// Cells of the sweep with no finished record here.
    pub missing: Vec<PlannedCell>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<PathBuf>,
}

/// The headline metrics every row shows.
const HEADLINE: [&str; 3] = ["tokens_per_second", "ttft_ms", "run total_ms"];

/// Every sample of `samples` that `objective` selects, pooled.
pub fn pooled(samples: &Samples, objective: &Objective) -> Vec<f64> {
    samples
        .metrics
        .iter()
        .filter(|(name, _)| objective.selects(name))
        .flat_map(|(_, (_, v))| v.iter().copied())
        .collect()
}

fn stat(s: &Summary, which: Stat) -> f64 {
    match which {
        Stat::P50 => s.p50,
        Stat::P95 => s.p95,
        Stat::Mean => s.mean,
        Stat::Min => s.min,
        Stat::Max => s.max,
    }
}

/// The measured runs of a cell that ended `ok`, from its `cell.json`.
fn measured(cell: &Path, runs: &[super::summary::RunRef]) -> Vec<PathBuf> {
    runs.iter()
        .filter(|r| r.kind == "run" && r.status == "ok")
        .map(|r| cell.join(&r.dir))
        .collect()
}

/// Ranks the cells recorded under `root` for `manifest`'s objective.
/// With `current` (a sweep that just ran), only cells whose fingerprint is
/// the one the sweep has now count: a cell left from before an edit is
/// missing, never mixed in.
///
/// # Errors
/// When a finished cell's run records cannot be read.
pub fn summarize_sweep(
    root: &Path,
    manifest: &SweepManifest,
    seed: u64,
    current: Option<&HashMap<String, Fingerprint>>,
) -> std::io::Result<SweepSummary> {
    let objective = &manifest.objective;
    let better = match objective.goal {
        Goal::Max => Better::Higher,
        Goal::Min => Better::Lower,
    };
    let mut rows = Vec::new();
    let mut pools = Vec::new();
    let mut missing = Vec::new();
    for planned in &manifest.cells {
        let Some(record) = read_cell(root, &planned.key).filter(|r| {
            r.status != CellStatus::Interrupted
                && current.is_none_or(|c| {
                    c.get(&planned.key)
                        .is_some_and(|f| r.fingerprint.same_as(f))
                })
        }) else {
            if manifest.assigned.contains(&planned.key) || manifest.shard.is_none() {
                missing.push(planned.clone());
            }
            continue;
        };
        let dir = cell_dir(root, &planned.key);
        let runs = measured(&dir, &record.runs);
        let samples = Samples::of_runs(&runs, manifest.include_cold)?;
        let pool = pooled(&samples, objective);
        let metrics = HEADLINE
            .iter()
            .filter_map(|m| {
                let o = Objective {
                    goal: objective.goal,
                    metric: (*m).to_owned(),
                    stat: Stat::P50,
                };
                summarize(&pooled(&samples, &o)).map(|s| ((*m).to_owned(), s))
            })
            .collect();
        rows.push(CellRow {
            rank: None,
            key: planned.key.clone(),
            values: planned.values.clone(),
            status: record.status,
            runs: runs.len(),
            objective: summarize(&pool).map(|s| stat(&s, objective.stat)),
            mark: Mark::Unranked,
            p_value_against_best: None,
            metrics,
            dir: format!("cells/{}", planned.key),
        });
        pools.push(pool);
    }
    // Best first; cells without a figure last, in plan order.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| match (rows[a].objective, rows[b].objective) {
        (Some(x), Some(y)) => match objective.goal {
            Goal::Max => y.total_cmp(&x),
            Goal::Min => x.total_cmp(&y),
        },
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(&b),
    });
    let best = order
        .first()
        .copied()
        .filter(|&i| rows[i].objective.is_some());
    for (rank, &i) in order.iter().enumerate() {
        if rows[i].objective.is_none() {
            continue;
        }
        rows[i].rank = Some(rank + 1);
        let Some(b) = best else { continue };
        if i == b {
            rows[i].mark = Mark::Best;
            continue;
        }
        let test = compare::compare(&objective.metric, better, &pools[b], &pools[i], seed);
        rows[i].p_value_against_best = test.as_ref().map(|t| t.p_value);
        // The test compares the two cells' samples as wholes (by rank), so
        // only a cell it finds worse is worse; one it finds better on that
        // measure but ranked lower by the objective's statistic is no
        // clear loser either.
        rows[i].mark = match test.map(|t| t.verdict) {
            Some(Verdict::Worse) => Mark::Worse,
            _ => Mark::Tie,
        };
    }
    let cells = order.into_iter().map(|i| rows[i].clone()).collect();
    Ok(SweepSummary {
        workflow: manifest.workflow.clone(),
        objective: objective.clone(),
        test: "Mann-Whitney U, two-sided".into(),
        alpha: compare::ALPHA,
        runs: manifest.runs,
        warmup: manifest.warmup,
        include_cold: manifest.include_cold,
        order: manifest.order,
        cells,
        missing,
        merged_from: manifest.merged_from.clone(),
    })
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

impl SweepSummary {
    /// The axes, in the order the cells list them.
    fn axes(&self) -> Vec<String> {
        let mut axes: Vec<String> = Vec::new();
        for c in self
            .cells
            .iter()
            .map(|c| &c.values)
            .chain(self.missing.iter().map(|m| &m.values))
        {
            for k in c.keys() {
                if !axes.contains(k) {
                    axes.push(k.clone());
                }
            }
        }
        axes
    }

    fn headline(row: &CellRow, metric: &str) -> Option<f64> {
        row.metrics.get(metric).map(|s| s.p50)
    }

    fn value(row_values: &IndexMap<String, Value>, axis: &str) -> String {
        row_values
            .get(axis)
            .map_or_else(|| "–".to_owned(), scalar_text)
    }

    /// The ranked table (markdown).
    pub fn table(&self) -> String {
        let axes = self.axes();
        let mut out = String::from("| rank | cell |");
        for a in &axes {
            out.push_str(&format!(" {} |", short(a)));
        }
        out.push_str(&format!(
            " {} | runs | tok/s p50 | TTFT p50 ms | run total p50 ms | p vs best | |\n|---:|---|",
            self.objective
        ));
        out.push_str(&"---|".repeat(axes.len()));
        out.push_str("---:|---:|---:|---:|---:|---:|---|\n");
        for row in &self.cells {
            let mark = match (row.mark, row.status) {
                (Mark::Best, _) => "**best**".to_owned(),
                (Mark::Tie, _) => "tie".to_owned(),
                (Mark::Worse, _) => "worse".to_owned(),
                (Mark::Unranked, s) => format!("no samples ({})", s.as_str()),
            };
            let mark = if row.status == CellStatus::Failed && row.mark != Mark::Unranked {
                format!("{mark} (a run failed)").trim().to_owned()
            } else {
                mark
            };
            out.push_str(&format!(
                "| {} | `{}` |",
                row.rank.map_or_else(|| "–".to_owned(), |r| r.to_string()),
                row.key
            ));
            for a in &axes {
                out.push_str(&format!(" {} |", Self::value(&row.values, a)));
            }
            out.push_str(&format!(
                " {} | {} | {} | {} | {} | {} | {mark} |\n",
                num(row.objective),
                row.runs,
                num(Self::headline(row, "tokens_per_second")),
                num(Self::headline(row, "ttft_ms")),
                num(Self::headline(row, "run total_ms")),
                row.p_value_against_best.map_or_else(
                    || "–".to_owned(),
                    |p| if p < 0.001 {
                        "< 0.001".into()
                    } else {
                        format!("{p:.3}")
                    }
                ),
            ));
        }
        out
    }

    /// `summary.md`.
    pub fn markdown(&self) -> String {
        let ties = self.cells.iter().filter(|c| c.mark == Mark::Tie).count();
        let mut md = format!(
            "# Sweep of `{}`: {} cell{} by `{}`\n\n",
            self.workflow,
            self.cells.len() + self.missing.len(),
            if self.cells.len() + self.missing.len() == 1 {
                ""
            } else {
                "s"
            },
            self.objective
        );
        md.push_str(&format!(
            "Each cell: {} measured run{} after {} warm-up{}. The objective pools each cell's samples \
             (every warm call's, for a call metric). A cell is a **tie** when the test of its samples \
             against the best cell's ({}, with a bootstrap interval of the ratio) detects no \
             difference at α = {}: pick among ties on other grounds, not on these figures.\n\n",
            self.runs,
            if self.runs == 1 { "" } else { "s" },
            self.warmup,
            if self.warmup == 1 { "" } else { "s" },
            self.test,
            self.alpha
        ));
        if self.objective.stat != Stat::P50 {
            md.push_str(&format!(
                "The tie test compares the cells' samples by rank (their medians, roughly), while the ranking uses the {}: a tie here says the cells' samples are not told apart, not that their {} match.\n\n",
                self.objective.stat.as_str(),
                self.objective.stat.as_str()
            ));
        }
        md.push_str(match self.order {
            SweepOrder::Sequential => "The cells ran one after another (`order: sequential`): a machine whose speed drifts \
                 during the sweep makes later cells differ from earlier ones even where a setting cannot \
                 matter. `order: interleave` in `matrix:` runs round after round and spreads the drift over every cell.\n\n",
            SweepOrder::Interleave => "The runs went round after round over the cells (`order: interleave`), so drift \
                 of the machine is spread over every cell.\n\n",
        });
        md.push_str(&self.table());
        if ties > 0 {
            md.push_str(&format!(
                "\n{ties} cell{} tied with the best.\n",
                if ties == 1 { "" } else { "s" }
            ));
        }
        if !self.missing.is_empty() {
            md.push_str("\n## Missing cells\n\nNo finished record here (not run yet, interrupted, run from other sources since changed, or in another shard):\n\n");
            for m in &self.missing {
                let label = m
                    .values
                    .iter()
                    .map(|(k, v)| format!("{}={}", short(k), scalar_text(v)))
                    .collect::<Vec<_>>()
                    .join(" ");
                md.push_str(&format!("- `{}` {label}\n", m.key));
            }
        }
        if !self.merged_from.is_empty() {
            md.push_str("\n## Merged from\n\n");
            for d in &self.merged_from {
                md.push_str(&format!("- {}\n", d.display()));
            }
        }
        md
    }

    /// `summary.csv`: one line per cell, ranked first.
    ///
    /// # Errors
    /// Never in practice (the writer is in memory).
    pub fn csv(&self) -> std::io::Result<String> {
        let axes = self.axes();
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = ["rank", "key", "status", "mark"]
            .map(str::to_owned)
            .to_vec();
        header.extend(axes.iter().cloned());
        header.extend(
            [
                "runs",
                "objective",
                "p_value_against_best",
                "tokens_per_second_p50",
                "ttft_ms_p50",
                "run_total_ms_p50",
            ]
            .map(str::to_owned),
        );
        w.write_record(&header)?;
        let opt = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
        for row in &self.cells {
            let mark = serde_json::to_value(row.mark)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let mut line = vec![
                row.rank.map_or_else(String::new, |r| r.to_string()),
                row.key.clone(),
                row.status.as_str().to_owned(),
                mark,
            ];
            line.extend(
                axes.iter()
                    .map(|a| row.values.get(a).map(scalar_text).unwrap_or_default()),
            );
            line.extend([
                row.runs.to_string(),
                opt(row.objective),
                opt(row.p_value_against_best),
                opt(Self::headline(row, "tokens_per_second")),
                opt(Self::headline(row, "ttft_ms")),
                opt(Self::headline(row, "run total_ms")),
            ]);
            w.write_record(&line)?;
        }
        let bytes = w.into_inner().map_err(|e| e.into_error())?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Writes `summary.json`, `summary.md`, `summary.csv` and
    /// `summary.html`; the markdown.
    ///
    /// # Errors
    /// When a file cannot be written or the page cannot be made.
    pub fn write(&self, dir: &RunDir) -> std::io::Result<String> {
        dir.write_json("summary.json", self)?;
        dir.write("summary.csv", self.csv()?.as_bytes())?;
        let value = serde_json::to_value(self).map_err(std::io::Error::other)?;
        let page = crate::record::html::sweep_page(&value).map_err(std::io::Error::other)?;
        dir.write("summary.html", page.as_bytes())?;
        let md = self.markdown();
        dir.write("summary.md", md.as_bytes())?;
        Ok(md)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary_of(p50: f64) -> Summary {
        crate::stats::summarize(&[p50 - 1.0, p50, p50 + 1.0]).expect("samples")
    }

    fn row(
        rank: Option<usize>,
        key: &str,
        ctx: u32,
        objective: Option<f64>,
        mark: Mark,
    ) -> CellRow {
        let metrics: BTreeMap<String, Summary> = objective
            .map(|o| {
                [
                    ("tokens_per_second".to_owned(), summary_of(o)),
                    ("ttft_ms".to_owned(), summary_of(40.0)),
                    ("run total_ms".to_owned(), summary_of(900.0)),
                ]
                .into_iter()
                .collect()
            })
            .unwrap_or_default();
        CellRow {
            rank,
            key: key.into(),
            values: [
                ("model.options.num_ctx".to_owned(), json!(ctx)),
                ("persona".to_owned(), json!("personas/a, b.md.j2")),
            ]
            .into_iter()
            .collect(),
            status: if objective.is_some() {
                CellStatus::Ok
            } else {
                CellStatus::Failed
            },
            runs: if objective.is_some() { 3 } else { 0 },
            objective,
            mark,
            p_value_against_best: match mark {
                Mark::Tie => Some(0.24),
                Mark::Worse => Some(0.0004),
                _ => None,
            },
            metrics,
            dir: format!("cells/{key}"),
        }
    }

    /// What people read: the ranked table with its best, tie, worse and
    /// unranked cells, the missing cells, and the CSV of the same.
    #[test]
    fn the_summary_reads_as_a_ranked_table() {
        let summary = SweepSummary {
            workflow: "demo-sweep".into(),
            objective: Objective {
                goal: Goal::Max,
                metric: "tokens_per_second".into(),
                stat: Stat::P50,
            },
            test: "Mann-Whitney U, two-sided".into(),
            alpha: 0.05,
            runs: 3,
            warmup: 1,
            include_cold: false,
            order: SweepOrder::Sequential,
            cells: vec![
                row(Some(1), "aaaaaaaaaaaa", 256, Some(120.0), Mark::Best),
                row(Some(2), "bbbbbbbbbbbb", 512, Some(119.5), Mark::Tie),
                row(Some(3), "cccccccccccc", 1024, Some(80.0), Mark::Worse),
                row(None, "dddddddddddd", 2048, None, Mark::Unranked),
            ],
            missing: vec![PlannedCell {
                key: "eeeeeeeeeeee".into(),
                values: [("model.options.num_ctx".to_owned(), json!(4096))]
                    .into_iter()
                    .collect(),
            }],
            merged_from: vec![
                PathBuf::from("/runs/shard-1"),
                PathBuf::from("/runs/shard-2"),
            ],
        };
        insta::assert_snapshot!("sweep_summary_md", summary.markdown());
        insta::assert_snapshot!("sweep_summary_csv", summary.csv().unwrap());
    }
}
