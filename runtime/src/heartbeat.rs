//! The heartbeat: one task per container, in the container's scope. Every interval it asks
//! the daemon whether the container runs and tells the supervisor; the machine decides whether
//! a quiet stream is stalled.

use std::sync::Arc;

use capturer_core::scope::ScopeGuard;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::conn;
use crate::container::Shared;
use crate::docker::Endpoint;

/// A heartbeat's report to the supervisor.
#[derive(Debug)]
pub struct Tick {
    /// The container.
    pub id: Arc<str>,
    /// Whether it runs (false if it is gone).
    pub running: bool,
}

/// The task body: tick until cancelled, then leave the scope.
pub async fn run(
    guard: ScopeGuard,
    shared: Arc<Shared>,
    clock: Clock,
    endpoint: Endpoint,
    api_version: String,
    ticks: mpsc::Sender<Tick>,
    cancel: CancellationToken,
) {
    let every = shared.machine().config().heartbeat_every;
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = interval.tick() => {}
        }
        // While logs flow the answer could change nothing: skip the request.
        if !shared.machine().wants_heartbeat_tick(clock.now()) {
            continue;
        }
        let id = &shared.id;
        let answer = tokio::select! {
            _ = cancel.cancelled() => break,
            // Over a connection of its own, inside this task: a bollard request would spawn
            // a task per inspect, and 500 heartbeats would briefly double the task count.
            r = conn::is_running(&endpoint, &api_version, id, every) => r,
        };
        let running = match answer {
            Ok(r) => r.unwrap_or(false),
            // The daemon is down: say nothing; the readers' errors and the events stream
            // tell that story.
            Err(e) => {
                tracing::debug!(container = %id, error = %e, "heartbeat: inspect failed");
                continue;
            }
        };
        let tick = Tick {
            id: id.clone(),
            running,
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = ticks.send(tick) => if r.is_err() { break },
        }
    }
    drop(guard);
}
