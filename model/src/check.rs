//! Running the checker and reporting: unique states, depth, each property's result, and a
//! readable trace for every counterexample.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use stateright::{Checker, Expectation, HasDiscoveries, Model, Path};

use crate::system::{
    representative, representative_composed, Action, CaptureModel, Options, State,
};

/// How to search the state space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// Breadth first, no symmetry: the first counterexample found is a shortest one (with one
    /// thread).
    Bfs,
    /// Depth first with symmetry reduction over the identical containers: less memory, fewer
    /// states, traces not the shortest.
    DfsSymmetric,
}

/// One property's result.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// Its name.
    pub name: &'static str,
    /// always, eventually or sometimes.
    pub expectation: Expectation,
    /// Whether the run found a discovery for it (a counterexample, or for `sometimes` an
    /// example).
    pub discovered: bool,
    /// The discovery, as readable lines.
    pub trace: Vec<String>,
    /// The discovery's length in actions.
    pub steps: usize,
}

impl Verdict {
    /// Whether the property holds: no counterexample, or for `sometimes` an example found.
    pub fn holds(&self) -> bool {
        match self.expectation {
            Expectation::Sometimes => self.discovered,
            Expectation::Always | Expectation::Eventually => !self.discovered,
        }
    }

    /// `always`, `eventually` or `sometimes`.
    pub fn kind(&self) -> &'static str {
        match self.expectation {
            Expectation::Always => "always",
            Expectation::Eventually => "eventually",
            Expectation::Sometimes => "sometimes",
        }
    }
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Distinct states visited (representatives, with symmetry).
    pub unique_states: usize,
    /// States generated, duplicates included.
    pub states: usize,
    /// The deepest path explored.
    pub max_depth: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Every property, in the model's order.
    pub verdicts: Vec<Verdict>,
    /// Whether the run stopped early at a requested discovery (not exhaustive).
    pub stopped_early: bool,
}

impl Outcome {
    /// Whether every property holds.
    pub fn all_hold(&self) -> bool {
        self.verdicts.iter().all(Verdict::holds)
    }

    /// The verdict of the property `name`.
    pub fn verdict(&self, name: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.name == name)
    }
}

/// Checks `opts` exhaustively; with `until`, stops as soon as one of those properties has a
/// discovery (for finding a mutant's counterexample fast).
pub fn run(opts: Options, search: Search, threads: usize, until: &[&'static str]) -> Outcome {
    let symmetry = if opts.compose {
        representative_composed
    } else {
        representative
    };
    let model = CaptureModel::new(opts);
    let properties = model.properties();
    let mut builder = model.clone().checker().threads(threads.max(1));
    if !until.is_empty() {
        builder = builder.finish_when(HasDiscoveries::AnyOf(
            until.iter().copied().collect::<BTreeSet<_>>(),
        ));
    }
    let started = Instant::now();
    let (unique_states, states, max_depth, discoveries) = match search {
        Search::Bfs => {
            let c = builder.spawn_bfs().join();
            (
                c.unique_state_count(),
                c.state_count(),
                c.max_depth(),
                c.discoveries(),
            )
        }
        Search::DfsSymmetric => {
            let c = builder.symmetry_fn(symmetry).spawn_dfs().join();
            (
                c.unique_state_count(),
                c.state_count(),
                c.max_depth(),
                c.discoveries(),
            )
        }
    };
    let elapsed = started.elapsed();
    let stopped_early = !until.is_empty() && until.iter().any(|n| discoveries.contains_key(n));
    let verdicts = properties
        .iter()
        .map(|p| {
            let path = discoveries.get(p.name);
            let (trace, steps) = match path {
                Some(path) => (
                    render(&model, path.clone()),
                    path.clone().into_actions().len(),
                ),
                None => (Vec::new(), 0),
            };
            Verdict {
                name: p.name,
                expectation: p.expectation.clone(),
                discovered: path.is_some(),
                trace,
                steps,
            }
        })
        .collect();
    Outcome {
        unique_states,
        states,
        max_depth,
        elapsed,
        verdicts,
        stopped_early,
    }
}

/// A path as numbered steps: each world action, then the commands the machine emitted, then
/// the final state of every container.
pub fn render(model: &CaptureModel, path: Path<State, Action>) -> Vec<String> {
    let mut out = Vec::new();
    let mut last = None;
    let steps = path.into_vec();
    if let Some((first, _)) = steps.first() {
        for (j, line) in model.describe_init(first).into_iter().enumerate() {
            if j == 0 {
                out.push(format!("  0. {line}"));
            } else {
                out.push(format!("     {line}"));
            }
        }
    }
    for (i, (state, action)) in steps.into_iter().enumerate() {
        match action {
            Some(a) => {
                for (j, line) in model.describe_step(&state, a).into_iter().enumerate() {
                    if j == 0 {
                        out.push(format!("{:>3}. {line}", i + 1));
                    } else {
                        out.push(format!("     {line}"));
                    }
                }
            }
            None => last = Some(state),
        }
    }
    if let Some(s) = last {
        out.push("   final state:".to_string());
        for line in model.describe_state(&s) {
            out.push(format!("     {line}"));
        }
    }
    out
}

/// A shortest path (fewest world actions) to a discovery of property `name`, found by a plain
/// breadth-first search over the model (stateright's BFS reports the LAST discovery it made,
/// not the first). For `always` a state that breaks it, for `sometimes` one that satisfies
/// it, for `eventually` a terminal state where it does not hold (every `eventually` condition
/// of this model is evaluated at terminal states). Gives up after `max_states` states.
pub fn shortest(
    model: &CaptureModel,
    name: &str,
    max_states: usize,
) -> Option<Path<State, Action>> {
    use std::collections::hash_map::DefaultHasher;
    use std::collections::{HashSet, VecDeque};
    use std::hash::{Hash, Hasher};

    let property = model.properties().into_iter().find(|p| p.name == name)?;
    let hit = |s: &State| match property.expectation {
        Expectation::Always => !(property.condition)(model, s),
        Expectation::Sometimes => (property.condition)(model, s),
        Expectation::Eventually => model.is_terminal(s) && !(property.condition)(model, s),
    };
    let fp = |s: &State| {
        let mut h = DefaultHasher::new();
        s.hash(&mut h);
        h.finish()
    };
    // Every node: its state, its parent and the action from the parent.
    let mut nodes: Vec<(State, Option<(usize, Action)>)> = Vec::new();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::new();
    for s in model.init_states() {
        if seen.insert(fp(&s)) {
            nodes.push((s, None));
            queue.push_back(nodes.len() - 1);
        }
    }
    let mut actions = Vec::new();
    while let Some(i) = queue.pop_front() {
        if hit(&nodes[i].0) {
            let mut steps = Vec::new();
            let mut at = i;
            while let Some((parent, action)) = nodes[at].1 {
                steps.push(action);
                at = parent;
            }
            steps.reverse();
            return Path::from_actions(model, nodes[at].0.clone(), steps.iter());
        }
        if nodes.len() >= max_states {
            return None;
        }
        actions.clear();
        model.actions(&nodes[i].0, &mut actions);
        for &a in &actions {
            if let Some(next) = model.next_state(&nodes[i].0, a) {
                if seen.insert(fp(&next)) {
                    nodes.push((next, Some((i, a))));
                    queue.push_back(nodes.len() - 1);
                }
            }
        }
    }
    None
}

/// What [`crash_census`] counts: the terminal states of the histories through crashes, where
/// exactly-once is judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashCensus {
    /// Distinct (state, history) pairs visited: a state is counted once per combination of the
    /// three facts below about the histories that reach it.
    pub visited: usize,
    /// Terminal states, over all histories.
    pub terminal: usize,
    /// Terminal states reached through at least one crash.
    pub after_crash: usize,
    /// Of those, the ones where every line is in the output exactly once (the judgement of
    /// "at quiescence every line was delivered exactly once").
    pub after_crash_exactly_once: usize,
    /// Terminal states reached through a power loss that erased written lines.
    pub after_loss: usize,
    /// Terminal states reached through a crash after which the output was past the persisted
    /// cursor (the start-up had to resume from the output).
    pub after_output_ahead: usize,
}

/// Walks every history of `model` (no symmetry) and counts the terminal states reached through
/// crashes, telling apart the histories by what their crashes did (a fact of the history, not
/// of the state: the model forgets it at the start-up so that states merge). `None` if more
/// than `max_states` (state, history) pairs are visited.
pub fn crash_census(model: &CaptureModel, max_states: usize) -> Option<CrashCensus> {
    use std::collections::hash_map::DefaultHasher;
    use std::collections::HashSet;
    use std::hash::{Hash, Hasher};

    use crate::system::{names, Capturer};

    const CRASH: u8 = 1;
    const LOSS: u8 = 2;
    const AHEAD: u8 = 4;
    let fp = |s: &State, facts: u8| {
        let mut h = DefaultHasher::new();
        s.hash(&mut h);
        facts.hash(&mut h);
        h.finish()
    };
    let once = model
        .properties()
        .into_iter()
        .find(|p| p.name == names::EXACTLY_ONCE)?
        .condition;
    let mut seen = HashSet::new();
    let mut stack = Vec::new();
    for s in model.init_states() {
        if seen.insert(fp(&s, 0)) {
            stack.push((s, 0u8));
        }
    }
    let mut census = CrashCensus::default();
    let mut actions = Vec::new();
    while let Some((s, facts)) = stack.pop() {
        if seen.len() > max_states {
            return None;
        }
        actions.clear();
        model.actions(&s, &mut actions);
        if actions.is_empty() {
            census.terminal += 1;
            if facts & CRASH != 0 {
                census.after_crash += 1;
                census.after_crash_exactly_once += usize::from(once(model, &s));
            }
            census.after_loss += usize::from(facts & LOSS != 0);
            census.after_output_ahead += usize::from(facts & AHEAD != 0);
        }
        for &a in &actions {
            let Some(next) = model.next_state(&s, a) else {
                continue;
            };
            let mut f = facts;
            if matches!(a, Action::Crash(_) | Action::CrashAll) {
                f |= CRASH;
            }
            for k in next
                .containers
                .iter()
                .filter(|k| k.capturer == Capturer::Down)
            {
                if k.lost_on_crash {
                    f |= LOSS;
                }
                if model.output_ahead(k) {
                    f |= AHEAD;
                }
            }
            if seen.insert(fp(&next, f)) {
                stack.push((next, f));
            }
        }
    }
    census.visited = seen.len();
    Some(census)
}
