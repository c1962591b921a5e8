//! `log-capturer audit`: compares what the file sink's output holds with what the daemon still
//! holds, per container and stream, by position; the operator's proof of exactly once (see
//! `docs/audit.md`).
//!
//! Read-only: it changes neither the output, nor the state directory, nor the daemon.

mod captured;
mod compare;
mod daemon;
mod report;
mod select;

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use capturer_core::Timestamp;

use crate::state::StateStore;
use compare::Lower;
use daemon::{Daemon, Held};
use report::{Named, Report, Verdict};
pub use select::Selectors;
use select::{Candidate, Selection};

/// Everything an audit needs: plain values, so any command-line parser can fill it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditOptions {
    /// The file sink's output directory.
    pub output: PathBuf,
    /// The state directory (`None`: `<output>/.state`, as `run` defaults it).
    pub state_dir: Option<PathBuf>,
    /// The daemon's address.
    pub docker_host: String,
    /// Which containers to judge.
    pub selectors: Selectors,
    /// Print the report as JSON.
    pub json: bool,
}

/// Why an audit could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A selector does not compile.
    #[error("bad argument: {0}")]
    Argument(String),
    /// The output or the state directory cannot be read.
    #[error("{0}")]
    Files(String),
    /// The daemon does not answer, or not as expected.
    #[error("{0}")]
    Daemon(String),
}

/// `log-capturer audit`: audits, prints the report, and returns the exit status.
pub fn main(opts: AuditOptions) -> ExitCode {
    // Unreadable cursor files are reported as `run` reports them.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("log-capturer audit: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    runtime.block_on(run(opts))
}

/// Audits, prints the report (text, or JSON with `--json`) and says how to exit: 0 exact, 1
/// different, 2 bad argument, 3 cannot audit.
pub async fn run(opts: AuditOptions) -> ExitCode {
    match audit(&opts).await {
        Ok(report) => {
            let text = if opts.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(j) => j + "\n",
                    Err(e) => {
                        eprintln!("log-capturer audit: cannot encode the report: {e}");
                        return ExitCode::from(3);
                    }
                }
            } else {
                report.text()
            };
            // A reader that stops early (`| head`) does not change the verdict.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            if report.is_exact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e @ AuditError::Argument(_)) => {
            eprintln!("log-capturer audit: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("log-capturer audit: {e}");
            ExitCode::from(3)
        }
    }
}

/// Makes the audit: the report, or why it could not be made.
pub async fn audit(opts: &AuditOptions) -> Result<Report, AuditError> {
    let selection = Selection::new(&opts.selectors).map_err(AuditError::Argument)?;
    let output = &opts.output;
    let state_dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| output.join(".state"));
    let in_output = captured::container_ids(output).map_err(|e| {
        AuditError::Files(format!(
            "cannot read the output directory {}: {e}",
            output.display()
        ))
    })?;
    let store = StateStore::existing(&state_dir);
    let (cursors, state_found) = match store.load_all() {
        Ok(c) => (c, true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (HashMap::new(), false),
        Err(e) => {
            return Err(AuditError::Files(format!(
                "cannot read the state directory {}: {e}",
                state_dir.display()
            )))
        }
    };
    let daemon = Daemon::connect(&opts.docker_host).await.map_err(|e| {
        AuditError::Daemon(format!(
            "cannot reach the Docker daemon at {}: {e}",
            opts.docker_host
        ))
    })?;
    let listed = daemon.list().await.map_err(|e| {
        AuditError::Daemon(format!(
            "cannot list the containers of {}: {e}",
            opts.docker_host
        ))
    })?;
    let listed: HashMap<&str, &crate::docker::Summary> =
        listed.iter().map(|s| (s.id.as_str(), s)).collect();

    // What the capture knows; the daemon's other containers are only named.
    let mut ids: BTreeSet<String> = in_output;
    ids.extend(cursors.keys().cloned());
    let mut not_captured = Vec::new();
    for s in listed.values() {
        if ids.contains(&s.id) {
            continue;
        }
        let candidate = Candidate {
            id: &s.id,
            name: &s.name,
            labels: Some(&s.labels),
        };
        if selection.selects(candidate) {
            not_captured.push(Named {
                id: s.id.clone(),
                name: s.name.clone(),
            });
        }
    }
    not_captured.sort_by(|a, b| a.name.cmp(&b.name));

    let mut containers = Vec::new();
    for id in &ids {
        let held = captured::read(output, id)
            .map_err(|e| AuditError::Files(format!("cannot read the output of {id}: {e}")))?;
        let summary = listed.get(id.as_str());
        let name = summary
            .map(|s| s.name.clone())
            .or_else(|| held.name.clone())
            .unwrap_or_default();
        let candidate = Candidate {
            id,
            name: &name,
            labels: summary.map(|s| &s.labels),
        };
        if !selection.selects(candidate) {
            continue;
        }
        let cursor = cursors.get(id).map(|s| &s.cursor);
        let lower = match (cursor, held.trimmed) {
            (_, true) => Lower::Output { retention: true },
            (Some(c), false) => Lower::Start(c.start()),
            (None, false) => Lower::Output { retention: false },
        };
        // Lines before the capture's start are not positioned; for the other ranges every
        // line is, and the range cuts them.
        let start = match lower {
            Lower::Start(t) => t,
            _ => Timestamp(0),
        };
        let log = if summary.is_some() {
            daemon
                .log(id, start)
                .await
                .map_err(|e| AuditError::Daemon(format!("cannot read the log of {id}: {e}")))?
        } else {
            Held::Gone
        };
        let mut judged = compare::judge(id, &name, &held, log.log(), cursor, lower);
        if let (Held::Unreadable(why), Verdict::NotInDaemon) = (&log, judged.verdict) {
            judged.verdict = Verdict::Unreadable;
            judged.why = Some(why.clone());
        }
        containers.push(judged);
    }
    Ok(Report {
        output: output.display().to_string(),
        state_dir: state_dir.display().to_string(),
        state_found,
        containers,
        not_captured,
    })
}
