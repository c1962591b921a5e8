//! `capturer-model`: check the model exhaustively, or serve stateright's Explorer.
//!
//! ```text
//! capturer-model check   [OPTIONS]          exhaustive check under both since rules
//! capturer-model explore ADDR [OPTIONS]      serve the Explorer on ADDR (e.g. 127.0.0.1:3000)
//!
//! OPTIONS
//!   --containers K         containers listed at the first start, 0 with births (default 1)
//!   --lines N              log entries per container, 1 to 7 (default 6)
//!   --rotations R          rotation deadlines, in all (default 2)
//!   --restarts S           container restarts, in all (default 1)
//!   --daemon-restarts D    daemon restarts (default 1)
//!   --errors E             reader errors, in all (default 0)
//!   --ticks T              heartbeat ticks, in all, each half an interval on (default 0)
//!   --heartbeat-losses L   heartbeats exiting on their own, in all (default 0)
//!   --removals             a stopped container may be removed
//!   --no-tails             every reopen asks for `since` (no `tail=K` reopens)
//!   --capturer-stops C     capturer stops, graceful or crashes (default 1)
//!   --capturer-restarts C  capturer restarts after a stop, from the checkpoints (default 1)
//!   --in-flight F          frames a cancelled reader may still deliver (default 1)
//!   --split W|all          the first run writes W entries, or (default) every boundary
//!   --resends N            daemon re-sends within a stream, in all (default 1)
//!   --early-ends N         follow streams ending early once the container stopped (default 1)
//!   --births N             containers created while the capturer is stopped (default 0)
//!   --crashes N            capturer crashes, SIGKILL or power loss (default 1): each
//!                          is one of the capturer stops, and a start-up recovers
//!   --syncs N              sink ticks per container: fsync, then persist (default 0)
//!   --old-discovery        the pre-fix start-up listing (no watermark: only running
//!                          containers and those with a saved cursor are taken on)
//!   --rule A|B|both        the daemon's since rule (default both)
//!   --mutant NAME          the machine's: shared-scope | strictly-greater |
//!                          whole-second | eager-rotation | trust-resends |
//!                          trust-draining-end | trust-tail; the runtime's: persist-before-ack |
//!                          no-recovery | sync-own-writes-only | unnoticed-heartbeat-exit
//!   --bfs                  breadth first without symmetry (shortest traces, more states)
//!   --product              interleave the containers' steps in every order (a product)
//!                          instead of running them one after the other
//!   --threads N            checker threads (default: the machine's cores)
//! ```

use std::process::ExitCode;

use capturer_core::Mutant;
use capturer_model::check::{run, Search};
use capturer_model::{Bounds, CaptureModel, Options, RuntimeMutant, SinceRule};
use stateright::Model;

struct Cli {
    bounds: Bounds,
    rules: Vec<SinceRule>,
    mutant: Option<Mutant>,
    runtime_mutant: Option<RuntimeMutant>,
    search: Search,
    threads: usize,
    compose: bool,
    old_discovery: bool,
}

fn parse(args: &[String]) -> Result<Cli, String> {
    let mut cli = Cli {
        bounds: Bounds::default(),
        rules: SinceRule::ALL.to_vec(),
        mutant: None,
        runtime_mutant: None,
        search: Search::DfsSymmetric,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        compose: true,
        old_discovery: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: &String| v.parse::<u8>().map_err(|e| format!("{flag} {v}: {e}"));
        let b = &mut cli.bounds;
        match flag.as_str() {
            "--containers" => b.containers = usize::from(number(value()?)?),
            "--lines" => b.lines = usize::from(number(value()?)?),
            "--rotations" => b.rotations = number(value()?)?,
            "--restarts" => b.restarts = number(value()?)?,
            "--daemon-restarts" => b.daemon_restarts = number(value()?)?,
            "--errors" => b.reader_errors = number(value()?)?,
            "--ticks" => b.ticks = number(value()?)?,
            "--heartbeat-losses" => b.heartbeat_losses = number(value()?)?,
            "--removals" => b.removals = true,
            "--no-tails" => b.tails = false,
            "--capturer-restarts" => b.capturer_restarts = number(value()?)?,
            "--capturer-stops" => b.capturer_stops = number(value()?)?,
            "--in-flight" => b.in_flight = number(value()?)?,
            "--resends" => b.resends = number(value()?)?,
            "--early-ends" => b.early_ends = number(value()?)?,
            "--births" => b.births = usize::from(number(value()?)?),
            "--crashes" => b.crashes = number(value()?)?,
            "--syncs" => b.syncs = number(value()?)?,
            "--old-discovery" => cli.old_discovery = true,
            "--split" => {
                b.split = match value()?.as_str() {
                    "all" => None,
                    v => Some(usize::from(number(&v.to_string())?)),
                }
            }
            "--threads" => cli.threads = usize::from(number(value()?)?),
            "--bfs" => cli.search = Search::Bfs,
            "--product" => cli.compose = false,
            "--rule" => {
                cli.rules = match value()?.as_str() {
                    "A" | "a" => vec![SinceRule::SkipAllOlder],
                    "B" | "b" => vec![SinceRule::StopAtFirstNewer],
                    "both" => SinceRule::ALL.to_vec(),
                    other => return Err(format!("--rule {other}: A, B or both")),
                }
            }
            "--mutant" => {
                let name = value()?;
                if let Some(m) = capturer_model::runtime_mutant_named(name) {
                    cli.runtime_mutant = Some(m);
                } else {
                    cli.mutant = Some(capturer_model::mutant_named(name).ok_or_else(|| {
                        let runtime = capturer_model::RUNTIME_MUTANTS.map(|(n, _)| n);
                        format!(
                            "--mutant {name}: {}, {}",
                            capturer_model::MUTANT_NAMES.join(", "),
                            runtime.join(", ")
                        )
                    })?)
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if !(1..=capturer_model::log::MAX_ENTRIES).contains(&cli.bounds.lines) {
        return Err(format!(
            "--lines must be 1 to {}",
            capturer_model::log::MAX_ENTRIES
        ));
    }
    if cli.bounds.containers + cli.bounds.births == 0 {
        return Err("--containers and --births leave no container".to_string());
    }
    Ok(cli)
}

fn check(cli: &Cli) -> bool {
    let b = &cli.bounds;
    println!(
        "bounds: {} containers, {} log entries each, {} rotation(s), {} container restart(s), \
         {} daemon restart(s), {} reader error(s), {} tick(s), {} heartbeat loss(es), removals {}, {} capturer stop(s) and {} restart(s), \
         {} frame(s) in flight, {} re-send(s), {} early end(s), {} birth(s), {} crash(es), \
         {} sink tick(s), tails {}; mutant {:?}, runtime mutant {:?}, {} discovery; {:?}, {} thread(s), {}",
        b.containers,
        b.lines,
        b.rotations,
        b.restarts,
        b.daemon_restarts,
        b.reader_errors,
        b.ticks,
        b.heartbeat_losses,
        b.removals,
        b.capturer_stops,
        b.capturer_restarts,
        b.in_flight,
        b.resends,
        b.early_ends,
        b.births,
        b.crashes,
        b.syncs,
        b.tails,
        cli.mutant,
        cli.runtime_mutant,
        if cli.old_discovery { "old (no watermark)" } else { "watermark" },
        cli.search,
        cli.threads,
        if cli.compose { "containers one after the other" } else { "containers interleaved" },
    );
    let mut ok = true;
    for &rule in &cli.rules {
        let opts = Options {
            bounds: b.clone(),
            since_rule: rule,
            mutant: cli.mutant,
            compose: cli.compose,
            old_discovery: cli.old_discovery,
            runtime_mutant: cli.runtime_mutant,
        };
        println!("\nsince rule {}", rule.name());
        let out = run(opts, cli.search, cli.threads, &[]);
        println!(
            "  {} unique states ({} generated), max depth {}, {:.1} s, exhaustive (no depth bound)",
            out.unique_states,
            out.states,
            out.max_depth,
            out.elapsed.as_secs_f64()
        );
        for v in &out.verdicts {
            let result = match (v.holds(), v.kind()) {
                (true, "sometimes") => "REACHED",
                (false, "sometimes") => "NOT REACHED",
                (true, _) => "HOLDS",
                (false, _) => "FAILS",
            };
            println!("  {result:<11} {:<10} {}", v.kind(), v.name);
            if !v.holds() && !v.trace.is_empty() {
                println!("      counterexample ({} steps):", v.steps);
                for line in &v.trace {
                    println!("      {line}");
                }
            }
        }
        ok &= out.all_hold();
    }
    println!(
        "\n{}",
        if ok {
            "all properties hold"
        } else {
            "SOME PROPERTIES FAIL"
        }
    );
    ok
}

fn explore(cli: &Cli, addr: &str) {
    let opts = Options {
        bounds: cli.bounds.clone(),
        since_rule: cli
            .rules
            .first()
            .copied()
            .unwrap_or(SinceRule::SkipAllOlder),
        mutant: cli.mutant,
        compose: cli.compose,
        old_discovery: cli.old_discovery,
        runtime_mutant: cli.runtime_mutant,
    };
    println!(
        "serving stateright's Explorer on http://{addr} ({})",
        opts.since_rule.name()
    );
    // Blocks while the Explorer serves.
    let _checker = CaptureModel::new(opts).checker().serve(addr);
}

/// The usage text: this file's doc, between its fences.
fn usage() -> String {
    let doc = include_str!("main.rs")
        .lines()
        .skip_while(|l| *l != "//! ```text")
        .skip(1)
        .take_while(|l| *l != "//! ```")
        .map(|l| l.strip_prefix("//! ").unwrap_or(""))
        .collect::<Vec<_>>();
    format!("usage:\n{}", doc.join("\n"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = usage();
    match args.first().map(String::as_str) {
        Some("check") => match parse(&args[1..]) {
            Ok(cli) => {
                if check(&cli) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("{e}\n{usage}");
                ExitCode::from(2)
            }
        },
        Some("explore") => match (args.get(1), parse(args.get(2..).unwrap_or_default())) {
            (Some(addr), Ok(cli)) => {
                explore(&cli, addr);
                ExitCode::SUCCESS
            }
            (_, Err(e)) => {
                eprintln!("{e}\n{usage}");
                ExitCode::from(2)
            }
            (None, _) => {
                eprintln!("explore needs an address\n{usage}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("{usage}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `(default N)` the usage text states is the default the checker uses.
    #[test]
    fn the_usage_states_the_true_defaults() {
        let b = Bounds::default();
        let stated = |flag: &str| -> String {
            let line = usage()
                .lines()
                .find(|l| l.trim_start().starts_with(flag))
                .unwrap_or_else(|| panic!("{flag} is not in the usage"))
                .to_string();
            let at = line.find("(default ").unwrap_or_else(|| panic!("{line}"));
            line[at + 9..].split(')').next().unwrap_or("").to_string()
        };
        for (flag, value) in [
            ("--containers", b.containers.to_string()),
            ("--lines", b.lines.to_string()),
            ("--rotations", b.rotations.to_string()),
            ("--restarts", b.restarts.to_string()),
            ("--daemon-restarts", b.daemon_restarts.to_string()),
            ("--errors", b.reader_errors.to_string()),
            ("--ticks", b.ticks.to_string()),
            ("--heartbeat-losses", b.heartbeat_losses.to_string()),
            ("--capturer-stops", b.capturer_stops.to_string()),
            ("--capturer-restarts", b.capturer_restarts.to_string()),
            ("--in-flight", b.in_flight.to_string()),
            ("--resends", b.resends.to_string()),
            ("--early-ends", b.early_ends.to_string()),
            ("--births", b.births.to_string()),
            ("--crashes", b.crashes.to_string()),
            ("--syncs", b.syncs.to_string()),
        ] {
            assert_eq!(stated(flag), value, "{flag}");
        }
        assert!(!b.removals && b.split.is_none() && b.tails);
    }
}
