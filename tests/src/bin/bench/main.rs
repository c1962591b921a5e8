//! Benchmarks of log-capturer against the real test-bed daemon. Each part prints its figures
//! and its verdict against the target, and exits non-zero if a target is missed.
//!
//! ```text
//! cargo run --release -p capturer-tests --bin bench -- drain [--lines N] [--rounds R] [--sink nats|loki]
//! cargo run --release -p capturer-tests --bin bench -- cpu      (the same runs as drain)
//! cargo run --release -p capturer-tests --bin bench -- latency  (--read-pause on and off)
//! cargo run --release -p capturer-tests --bin bench -- nats-cost [--lines N] [--rounds R]
//! cargo run --release -p capturer-tests --bin bench -- scale [--containers N] [--seconds S]
//! cargo run --release -p capturer-tests --bin bench -- soak [--containers N] [--minutes M | --duration 180s]
//!     [--png FILE] [--both-streams] [--sink nats]
//! cargo run --release -p capturer-tests --bin bench -- torture [--seed S] [--duration D] [--seeds N]
//!     [--daemon-restarts | --no-daemon-restarts] [--shared-daemon] [--quiet Q] [--keep]
//! ```
//!
//! `torture` runs seeded random chaos (container restarts, capturer SIGTERM/SIGKILL, daemon
//! restarts) against a private dockerd of its own and prints one `TORTURE seed=...` line per
//! round; see `torture/mod.rs`.
//!
//! `--sink nats` (drain, soak): the capturer publishes to a `nats-server -js` the bench starts on
//! a loopback port of its own (`sink.rs`); the default is the file sink. `--sink loki` (drain):
//! the capturer pushes to the tests' Loki receiver, serving on a thread of the bench.

// A benchmark harness: a failed set-up step must stop it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod chart;
mod drain;
mod latency;
mod nats_cost;
mod procfs;
mod scale;
mod sink;
mod soak;
mod torture;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Prints one verdict line; returns whether it passed.
pub fn verdict(what: &str, value: f64, op: &str, target: f64) -> bool {
    let pass = match op {
        ">=" => value >= target,
        "<=" => value <= target,
        "<" => value < target,
        _ => false,
    };
    println!(
        "VERDICT {what}: {value:.3} (target {op} {target}): {}",
        if pass { "PASS" } else { "FAIL" }
    );
    pass
}

/// Waits until the capturer holds no container any more, or `limit` passes.
pub async fn until_no_containers(cap: &capturer_tests::capturer::Capturer, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while cap.debug_tasks()["containers"]
        .as_array()
        .is_some_and(|c| !c.is_empty())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The median of some figures.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `--duration 180s` (or `3m`, or bare seconds), else `--minutes M`, else `minutes` minutes.
fn duration(args: &[String], minutes: u64) -> Option<Duration> {
    let Some(text) = args
        .windows(2)
        .find(|w| w[0] == "--duration")
        .map(|w| &w[1])
    else {
        return Some(Duration::from_secs(60 * flag(args, "--minutes", minutes)));
    };
    let (digits, unit) = match text.strip_suffix('m') {
        Some(d) => (d, 60),
        None => (text.strip_suffix('s').unwrap_or(text), 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .map(|n| Duration::from_secs(n * unit))
}

fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("torture") {
        // It brings its own daemon (or falls back to the test bed's by itself).
        return if torture::run(&args).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let Some(docker) = capturer_tests::docker().await else {
        eprintln!("bench: no Docker daemon; run scripts/testbed.sh first");
        return ExitCode::from(2);
    };
    let Some(sink) = sink::Sink::parse(&flag(&args, "--sink", "file".to_owned())) else {
        eprintln!("bench: --sink file|nats|loki");
        return ExitCode::from(2);
    };
    if sink == sink::Sink::Loki && args.first().map(String::as_str) == Some("soak") {
        eprintln!("bench: the soak reads back files or a NATS stream; --sink loki is for drain");
        return ExitCode::from(2);
    }
    let pass = match args.first().map(String::as_str) {
        Some("drain" | "cpu") => {
            drain::run(
                &docker,
                sink,
                flag(&args, "--lines", 1_000_000),
                flag(&args, "--rounds", 5),
            )
            .await
        }
        Some("latency") => latency::run(&docker).await,
        Some("nats-cost") => {
            nats_cost::run(flag(&args, "--lines", 300_000), flag(&args, "--rounds", 3)).await
        }
        Some("scale") => {
            scale::run(
                &docker,
                flag(&args, "--containers", 500),
                flag(&args, "--seconds", 60),
            )
            .await
        }
        Some("soak") => {
            // The NATS soak's chart is not the one docs/benchmarks.md shows.
            let chart = match sink {
                sink::Sink::File => "docs/soak.png",
                sink::Sink::Nats | sink::Sink::Loki => "target/soak-nats.png",
            };
            let png = PathBuf::from(flag(&args, "--png", chart.to_owned()));
            let Some(duration) = duration(&args, 10) else {
                eprintln!("bench: --duration 180s, 3m or 180");
                return ExitCode::from(2);
            };
            soak::run(
                &docker,
                sink,
                flag(&args, "--containers", 55),
                duration,
                &png,
                args.iter().any(|a| a == "--both-streams"),
            )
            .await
        }
        _ => {
            eprintln!(
                "usage: bench drain|cpu|latency|nats-cost|scale|soak|torture [options] (see the source's header)"
            );
            return ExitCode::from(2);
        }
    };
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
