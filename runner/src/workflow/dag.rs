//! Which stage waits for which: the agent's own earlier stage, every stage
//! of an agent it `needs:`, and the stages a stage `needs:`. Agents with no
//! such tie run concurrently. A cycle is refused with its path.

use super::{Agent, Diagnostic, Pos};

/// The stages as a graph: node `i` is the `i`-th stage of
/// [`super::Workflow::stages`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dag {
    /// (agent index, stage index) of each node.
    pub nodes: Vec<(usize, usize)>,
    /// The nodes each node waits for, sorted.
    pub deps: Vec<Vec<usize>>,
    /// The nodes of other agents whose outputs each node receives (as
    /// `<agent>/<stage>`): what it needs, directly or through its agent.
    pub inputs_from: Vec<Vec<usize>>,
}

impl Dag {
    /// Every node `node` waits for, directly or not.
    pub fn ancestors(&self, node: usize) -> Vec<usize> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            for &d in &self.deps[n] {
                if !seen[d] {
                    seen[d] = true;
                    stack.push(d);
                }
            }
        }
        (0..self.nodes.len()).filter(|&i| seen[i]).collect()
    }
}

/// An edge and where it was declared (`None`: the agent's stage order).
type Edge = (usize, Option<Pos>);

/// Builds the graph of `agents`; unknown names and cycles go to `errors`.
pub fn build(agents: &[Agent], errors: &mut Vec<Diagnostic>) -> Dag {
    let mut nodes = Vec::new();
    let mut first = Vec::new();
    for (a, agent) in agents.iter().enumerate() {
        first.push(nodes.len());
        nodes.extend((0..agent.stages.len()).map(|s| (a, s)));
    }
    let index = |a: usize, s: usize| first[a] + s;
    let label = |n: usize| {
        let (a, s) = nodes[n];
        format!("{}/{}", agents[a].id, agents[a].stages[s].id)
    };
    let mut edges: Vec<Vec<Edge>> = vec![Vec::new(); nodes.len()];
    let mut inputs_from: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let agent_ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    for (a, agent) in agents.iter().enumerate() {
        let mut from_agents = Vec::new();
        for need in &agent.needs {
            match agents.iter().position(|x| x.id == need.value) {
                Some(b) if b == a => errors.push(
                    Diagnostic::new(format!("agent `{}` needs itself", agent.id), need.pos)
                        .help("`needs:` names other agents"),
                ),
                Some(b) => from_agents
                    .extend((0..agents[b].stages.len()).map(|s| (index(b, s), Some(need.pos)))),
                None => errors.push(
                    Diagnostic::new(
                        format!(
                            "`needs:` names agent `{}`, which the workflow does not have",
                            need.value
                        ),
                        need.pos,
                    )
                    .help(crate::suggest::help(
                        &need.value,
                        agent_ids.iter().copied(),
                        "agents",
                        "",
                    )),
                ),
            }
        }
        for (s, stage) in agent.stages.iter().enumerate() {
            let n = index(a, s);
            if s > 0 {
                edges[n].push((n - 1, None));
            } else {
                edges[n].extend(from_agents.iter().copied());
            }
            inputs_from[n].extend(from_agents.iter().map(|(d, _)| *d));
            for need in &stage.needs {
                let (agent_id, stage_id) = need
                    .value
                    .split_once('/')
                    .unwrap_or((&agent.id, &need.value));
                let Some(b) = agents.iter().position(|x| x.id == agent_id) else {
                    errors.push(
                        Diagnostic::new(format!("`needs:` names agent `{agent_id}`, which the workflow does not have"), need.pos)
                            .help(crate::suggest::help(agent_id, agent_ids.iter().copied(), "agents", "")),
                    );
                    continue;
                };
                let Some(t) = agents[b].stages.iter().position(|x| x.id == stage_id) else {
                    errors.push(
                        Diagnostic::new(format!("`needs:` names stage `{agent_id}/{stage_id}`, which the workflow does not have"), need.pos)
                            .help(crate::suggest::help(stage_id, agents[b].stages.iter().map(|x| x.id.as_str()), &format!("stages of `{agent_id}`"), "")),
                    );
                    continue;
                };
                let d = index(b, t);
                if d == n {
                    errors.push(Diagnostic::new(
                        format!("stage `{}` needs itself", label(n)),
                        need.pos,
                    ));
                    continue;
                }
                edges[n].push((d, Some(need.pos)));
                if b != a {
                    inputs_from[n].push(d);
                }
            }
            // Later stages of the agent receive what its earlier ones did.
            if s > 0 {
                let earlier = inputs_from[n - 1].clone();
                inputs_from[n].extend(earlier);
            }
            inputs_from[n].sort_unstable();
            inputs_from[n].dedup();
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let path: Vec<String> = cycle
            .iter()
            .map(|(n, _)| format!("`{}`", label(*n)))
            .collect();
        let declared: Vec<Pos> = cycle.iter().filter_map(|(_, p)| *p).collect();
        let mut d = Diagnostic::new(
            format!(
                "`needs:` forms a cycle: {} → `{}`",
                path.join(" → "),
                label(cycle[0].0)
            ),
            declared.first().copied(),
        )
        .help("remove one of these `needs:` (an agent's stages already run in order)");
        for p in declared.iter().skip(1) {
            d = d.note(*p, "part of the cycle");
        }
        errors.push(d);
    }
    let deps = edges
        .into_iter()
        .map(|e| {
            let mut d: Vec<usize> = e.into_iter().map(|(n, _)| n).collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect();
    Dag {
        nodes,
        deps,
        inputs_from,
    }
}

/// A cycle as (node, where the edge into the next node was declared), if
/// there is one.
fn find_cycle(edges: &[Vec<Edge>]) -> Option<Vec<(usize, Option<Pos>)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Grey,
        Black,
    }
    let mut color = vec![Color::White; edges.len()];
    // The path from the root: (node, next edge to try, pos of the edge taken into it).
    for root in 0..edges.len() {
        if color[root] != Color::White {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        let mut via: Vec<Option<Pos>> = vec![None];
        color[root] = Color::Grey;
        while let Some(&mut (n, ref mut next)) = stack.last_mut() {
            if let Some(&(d, pos)) = edges[n].get(*next) {
                *next += 1;
                match color[d] {
                    Color::White => {
                        color[d] = Color::Grey;
                        stack.push((d, 0));
                        via.push(pos);
                    }
                    Color::Grey => {
                        // The cycle: d … n, then back to d. Edges point from a
                        // stage to what it waits for; print it in that order.
                        let start = stack.iter().position(|(x, _)| *x == d).unwrap_or(0);
                        let mut cycle: Vec<(usize, Option<Pos>)> = stack[start..]
                            .iter()
                            .zip(via[start + 1..].iter().copied().chain([pos]))
                            .map(|((x, _), p)| (*x, p))
                            .collect();
                        // Start at a declared edge, so the error points at a `needs:`.
                        if let Some(k) = cycle.iter().position(|(_, p)| p.is_some()) {
                            cycle.rotate_left(k);
                        }
                        return Some(cycle);
                    }
                    Color::Black => {}
                }
            } else {
                color[n] = Color::Black;
                stack.pop();
                via.pop();
            }
        }
    }
    None
}
