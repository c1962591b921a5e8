//! `log-capturer`: captures the logs of every container on a Docker host, exactly once.
//!
//! `log-capturer run [OPTIONS]`, `check-config [OPTIONS] [--print]`, `audit [OPTIONS]`,
//! `completions SHELL` (see
//! `config/` or `--help`). Exit status: 0 after a graceful stop, 1 when the daemon cannot be
//! reached at start-up, a path cannot be used or the stop deadline passes, 2 for a bad setting,
//! 130 when a second SIGINT or SIGTERM cuts the graceful stop short.

mod audit;
mod clock;
mod config;
mod conn;
mod container;
mod docker;
mod filter;
mod heartbeat;
mod http;
mod metrics;
mod output;
mod pace;
mod reader;
mod sink;
mod state;
mod supervisor;
mod timer;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};
use tokio_util::sync::CancellationToken;

use crate::config::cli::{Cli, Command};
use crate::config::{LogFormat, Settings};
use crate::container::Registry;
use crate::metrics::Metrics;
use crate::supervisor::Supervisor;

/// The exit status when a second SIGINT or SIGTERM cuts a graceful stop short.
const FORCED_EXIT: u8 = 130;

fn main() -> ExitCode {
    // clap's own errors (an unknown flag, a missing value) print their message and exit 2;
    // --help and --version exit 0.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let Some((_, sub)) = matches.subcommand() else {
        // `arg_required_else_help` and the derive make this unreachable; be plain about it.
        eprintln!("log-capturer: no command (see --help)");
        return ExitCode::from(2);
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    match cli.command {
        Command::Run(_) => run_command(sub, &env),
        Command::Audit(audit) => match Settings::from_matches(sub, &env) {
            Ok((settings, _)) => audit::main(audit_options(settings, audit)),
            Err(e) => {
                eprintln!("log-capturer audit: bad setting: {e}");
                ExitCode::from(2)
            }
        },
        Command::CheckConfig(check) => {
            let (settings, origins) = match Settings::from_matches(sub, &env) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("log-capturer: bad setting: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = config::check::paths_usable(&settings, &origins) {
                eprintln!("log-capturer: bad setting: {e}");
                return ExitCode::from(2);
            }
            if check.print {
                print!("{}", config::check::print(&settings, &origins));
            }
            eprintln!("log-capturer: the settings are valid");
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "log-capturer",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
    }
}

/// What `audit` judges: the capture `settings` describe, narrowed by the audit's own flags.
fn audit_options(settings: Settings, args: config::cli::AuditArgs) -> audit::AuditOptions {
    let label = |l: &config::LabelSelector| match &l.value {
        Some(v) => format!("{}={v}", l.key),
        None => l.key.clone(),
    };
    audit::AuditOptions {
        output: settings.output,
        state_dir: Some(settings.state_dir),
        docker_host: settings.docker_host,
        selectors: audit::Selectors {
            containers: args.containers,
            include_name: settings.include_name,
            exclude_name: settings.exclude_name,
            include_label: settings.include_label.iter().map(label).collect(),
        },
        json: args.json,
    }
}

/// `log-capturer run`.
fn run_command(matches: &clap::ArgMatches, env: &BTreeMap<String, String>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("log-capturer: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // Before anything else: a SIGTERM that arrives while the capturer lists and admits
    // containers must stop it gracefully, not kill it with lines written and no checkpoint.
    let stop = {
        let _enter = runtime.enter();
        StopSignals::install()
    };
    let settings = match Settings::from_matches(matches, env) {
        Ok((s, _)) => s,
        Err(e) => {
            eprintln!("log-capturer: bad setting: {e}");
            return ExitCode::from(2);
        }
    };
    let mut filter = tracing_subscriber::EnvFilter::builder()
        .parse(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The NATS client logs every failed reconnect (about one a second while the server is
    // away); the sink reports each kind of failure once and counts the rest in its metrics.
    // A level that names async_nats keeps what it asks for.
    if !settings.log_level.contains("async_nats") {
        if let Ok(quiet) = "async_nats=warn".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    runtime.block_on(run(settings, stop))
}

async fn run(settings: Settings, stop: StopSignals) -> ExitCode {
    let metrics = Arc::new(Metrics::default());
    let registry = Arc::new(Registry::default());
    let store = match state::StateStore::open(&settings.state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "log-capturer: cannot use the state directory {}: {e}",
                settings.state_dir.display()
            );
            return ExitCode::from(1);
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "log-capturer: cannot listen on {} for metrics: {e}",
                settings.metrics_addr
            );
            return ExitCode::from(1);
        }
    };
    // Before anything is listed: on a first start, this is when the watch begins.
    let watch = store.begin_watch(clock::wall_now());
    let sink = match sink::spawn(&settings, store.clone(), metrics.clone(), watch.watermark) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "log-capturer: cannot open the output {}: {e}",
                settings.output.display()
            );
            return ExitCode::from(1);
        }
    };
    let supervisor = match Supervisor::connect(
        settings.clone(),
        store,
        watch,
        sink.tx.clone(),
        metrics.clone(),
        registry.clone(),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("log-capturer: {e}");
            return ExitCode::from(1);
        }
    };
    let stop_metrics = CancellationToken::new();
    let server = tokio::spawn(metrics::server::serve(
        listener,
        metrics.clone(),
        registry,
        stop_metrics.clone(),
    ));
    tracing::info!(
        docker = %settings.docker_host,
        output = %settings.output.display(),
        state = %settings.state_dir.display(),
        metrics = %settings.metrics_addr,
        "log-capturer running; stop with SIGINT or SIGTERM"
    );
    let stop_began: Arc<std::sync::Mutex<Option<std::time::Instant>>> = Arc::default();
    // The first signal begins the graceful stop; a second one ends the process at once.
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut stop = stop;
        stop.next().await;
        let _ = first_tx.send(());
        stop.next().await;
        tracing::error!(
            exit = FORCED_EXIT,
            "a second stop signal: exiting now, without finishing the graceful stop; what has no checkpoint yet is read again at the next start"
        );
        std::process::exit(i32::from(FORCED_EXIT));
    });
    let shutdown = {
        let began = stop_began.clone();
        async move {
            let _ = first_rx.await;
            *began.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        }
    };
    let result = supervisor.run(shutdown).await;
    stop_metrics.cancel();
    let _ = server.await;
    // The sink gets what is left of the stop timeout, and a moment at least to write what the
    // readers handed it last.
    let began = *stop_began.lock().unwrap_or_else(|e| e.into_inner());
    let limit = began.map_or(settings.stop_timeout, |t| {
        settings
            .stop_timeout
            .saturating_sub(t.elapsed())
            .max(std::time::Duration::from_secs(1))
    });
    let flushed = tokio::task::spawn_blocking(move || sink.finish(limit)).await;
    let code = match (&result, flushed) {
        (Ok(()), Ok(Ok(Ok(())))) => ExitCode::SUCCESS,
        (_, Ok(Err(sink::StillWriting))) => {
            tracing::error!(
                stop_timeout = ?settings.stop_timeout,
                "the sink could not write or sync its last lines before the stop timeout; they have no checkpoint and are read again at the next start"
            );
            ExitCode::from(1)
        }
        (_, Ok(Ok(Err(e)))) => {
            tracing::error!(error = %e, "the sink failed");
            ExitCode::from(1)
        }
        (_, Err(e)) => {
            tracing::error!(error = %e, "the sink thread was lost");
            ExitCode::from(1)
        }
        (Err(e), _) => {
            tracing::error!(error = %e, "stop incomplete");
            ExitCode::from(1)
        }
    };
    tracing::info!(lines = metrics.lines_total(), "log-capturer stopped");
    code
}

/// SIGTERM and SIGINT handlers, installed at start so that no signal finds the default action.
struct StopSignals {
    term: std::io::Result<tokio::signal::unix::Signal>,
    int: std::io::Result<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Installs the handlers (in the runtime's context); a signal delivered from now on waits.
    fn install() -> StopSignals {
        use tokio::signal::unix::{signal, SignalKind};
        StopSignals {
            term: signal(SignalKind::terminate()),
            int: signal(SignalKind::interrupt()),
        }
    }

    /// Resolves at the next SIGINT or SIGTERM, including one delivered before this is polled.
    async fn next(&mut self) {
        match (&mut self.term, &mut self.int) {
            (Ok(term), Ok(int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
