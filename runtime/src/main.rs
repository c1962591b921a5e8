//! `log-capturer`: captures the logs of every container on a Docker host, exactly once.
//!
//! Until the capture lands, `run` connects to the daemon and lists the running containers.

use std::process::ExitCode;

use bollard::query_parameters::ListContainersOptions;
use bollard::Docker;

const USAGE: &str = "usage: log-capturer run [--docker-host URL]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut host = std::env::var("DOCKER_HOST").ok();
    match args.first().map(String::as_str) {
        Some("run") => {}
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let mut rest = args[1..].iter();
    while let Some(a) = rest.next() {
        match (a.as_str(), rest.next()) {
            ("--docker-host", Some(v)) => host = Some(v.clone()),
            _ => {
                eprintln!("log-capturer: unknown argument {a:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let host = host.unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    let docker = match connect(&host).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("log-capturer: no Docker daemon answers at {host}: {e}");
            return ExitCode::from(1);
        }
    };
    match docker.list_containers(None::<ListContainersOptions>).await {
        Ok(list) => {
            for c in list {
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default();
                println!(
                    "{} {}",
                    c.id.unwrap_or_default(),
                    name.trim_start_matches('/')
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("log-capturer: listing containers at {host} failed: {e}");
            ExitCode::from(1)
        }
    }
}

async fn connect(host: &str) -> Result<Docker, bollard::errors::Error> {
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, 30, bollard::API_DEFAULT_VERSION)?
    } else {
        Docker::connect_with_http(host, 30, bollard::API_DEFAULT_VERSION)?
    };
    docker.negotiate_version().await
}
