//! `log-capturer`: captures the logs of every container on a Docker host, exactly once.
//!
//! `log-capturer run [OPTIONS]` (see `config.rs` or `--help`). Exit status: 0 after a graceful
//! stop, 1 when the daemon cannot be reached at start-up or the stop deadline passes, 2 for a
//! bad setting. `log-capturer audit [OPTIONS]` judges an output against the daemon (`audit/`).

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

use tokio_util::sync::CancellationToken;

use crate::config::{Settings, HELP};
use crate::container::Registry;
use crate::metrics::Metrics;
use crate::supervisor::Supervisor;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => {}
        Some("audit") => return audit::main(&args[1..]),
        Some("--version" | "version") => {
            println!("log-capturer {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("--help" | "-h" | "help") => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{HELP}");
            return ExitCode::from(2);
        }
    }
    if args[1..].iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return ExitCode::SUCCESS;
    }
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
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let settings = match Settings::load(&args[1..], &env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("log-capturer: bad setting: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOG_CAPTURER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
    let shutdown = {
        let began = stop_began.clone();
        async move {
            stop.first().await;
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

    /// Resolves at the first SIGINT or SIGTERM, including one delivered before this is polled.
    async fn first(self) {
        match (self.term, self.int) {
            (Ok(mut term), Ok(mut int)) => {
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
