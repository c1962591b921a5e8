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

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// The usage of `log-capturer audit`.
pub const HELP: &str = "\
log-capturer audit: compares the file output with the daemon's logs, per container and stream

usage: log-capturer audit [OPTIONS]

  --output DIR               the file sink's output directory (default ./capture)
  --state-dir DIR            the capturer's state directory (default <output>/.state)
  --docker-host URL          unix:///path or tcp://host:port (default $DOCKER_HOST, else
                             unix:///var/run/docker.sock)
  --container NAME_OR_ID     judge this container (repeatable; a full id or an id prefix)
  --include-name GLOB        judge containers whose name matches (repeatable)
  --exclude-name GLOB        do not judge containers whose name matches (repeatable)
  --include-label KEY[=VAL]  judge containers with this label (repeatable)
  --json                     the report as one JSON object
  -h, --help                 this text

It judges every container the output or the state directory knows (with --container,
--include-name, --exclude-name or --include-label: those selected), and names the containers
the daemon lists that the capture does not know.
Exit status: 0 when every judged container is exact, 1 when a difference is found, 2 for a
bad argument, 3 when the output, the state or the daemon cannot be read.";

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

/// `log-capturer audit ARGS`: parses `args` (after `audit`), audits, prints the report, and
/// returns the exit status.
pub fn main(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let opts = match parse_args(args, &env) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("log-capturer audit: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
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

/// The options from `args` (after `audit`) and the environment (`DOCKER_HOST`).
pub fn parse_args(args: &[String], env: &BTreeMap<String, String>) -> Result<AuditOptions, String> {
    let mut opts = AuditOptions {
        output: PathBuf::from("./capture"),
        state_dir: None,
        docker_host: env
            .get("DOCKER_HOST")
            .cloned()
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned()),
        selectors: Selectors::default(),
        json: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--json" {
            opts.json = true;
            continue;
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (flag.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name {
            "--output" => opts.output = PathBuf::from(value()?),
            "--state-dir" => opts.state_dir = Some(PathBuf::from(value()?)),
            "--docker-host" => opts.docker_host = value()?,
            "--container" => opts.selectors.containers.push(value()?),
            "--include-name" => opts.selectors.include_name.push(value()?),
            "--exclude-name" => opts.selectors.exclude_name.push(value()?),
            "--include-label" => opts.selectors.include_label.push(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Selection::new(&opts.selectors).map_err(|e| format!("bad glob {e}"))?;
    Ok(opts)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_parse_and_bad_ones_are_refused() {
        let env = BTreeMap::from([("DOCKER_HOST".to_owned(), "tcp://h:1".to_owned())]);
        let o = parse_args(
            &args(&[
                "--output",
                "/o",
                "--container=web",
                "--container",
                "abc",
                "--include-label",
                "k=v",
                "--json",
            ]),
            &env,
        )
        .unwrap();
        assert_eq!(o.output, PathBuf::from("/o"));
        assert_eq!(o.state_dir, None);
        assert_eq!(o.docker_host, "tcp://h:1");
        assert_eq!(o.selectors.containers, ["web", "abc"]);
        assert_eq!(o.selectors.include_label, ["k=v"]);
        assert!(o.json);
        let o = parse_args(&args(&["--docker-host", "unix:///s"]), &BTreeMap::new()).unwrap();
        assert_eq!(o.docker_host, "unix:///s");
        for bad in [
            &["--output"][..],
            &["--frobnicate"],
            &["--include-name", "["],
            &["--state-dir="],
        ] {
            assert!(parse_args(&args(bad), &env).is_err(), "{bad:?}");
        }
    }
}
