//! Shared helpers of the end-to-end tests: the test bed's daemon and image.
//!
//! Every test that needs Docker calls [`docker`] first: without a daemon it skips with a
//! message, unless the environment variable `CI` is set, in which case it fails. The test bed
//! (`scripts/testbed.sh`, run by `scripts/test.sh`) starts the daemon and builds the image.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

/// The local test image: a static busybox, built by `scripts/testbed.sh` (nothing is pulled).
pub const IMAGE: &str = "log-capturer-testbed/busybox:latest";

/// The daemon to test against, or `None` (test skipped) when there is none and `CI` is unset.
///
/// # Panics
/// When no daemon answers and `CI` is set: in CI a missing daemon is a failure, never a skip.
pub async fn docker() -> Option<Docker> {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let found = match host.strip_prefix("unix://") {
        Some(path) => Docker::connect_with_unix(path, 60, bollard::API_DEFAULT_VERSION),
        None => Docker::connect_with_http(&host, 60, bollard::API_DEFAULT_VERSION),
    };
    let answer = match found {
        Ok(d) => d.negotiate_version().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match answer {
        Ok(d) => Some(d),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set and no Docker daemon answers at {host}: {e} (run scripts/testbed.sh)")
        }
        Err(e) => {
            eprintln!("SKIPPED: no Docker daemon at {host} ({e}); run scripts/testbed.sh, or set CI to fail instead");
            None
        }
    }
}

/// How to start a test container.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// The shell script the container runs (`sh -c`).
    pub script: String,
    /// Labels, to select the container in the capturer.
    pub labels: HashMap<String, String>,
    /// Allocate a TTY.
    pub tty: bool,
    /// A name, if it matters.
    pub name: Option<String>,
}

/// Creates and starts a container from the test image, with no network; returns its id.
pub async fn start(docker: &Docker, spec: &Spec) -> Result<String, bollard::errors::Error> {
    let id = create(docker, spec).await?;
    docker.start_container(&id, None).await?;
    Ok(id)
}

/// Creates (without starting) a container from the test image, with no network.
pub async fn create(docker: &Docker, spec: &Spec) -> Result<String, bollard::errors::Error> {
    let body = ContainerCreateBody {
        image: Some(IMAGE.to_owned()),
        cmd: Some(vec!["sh".into(), "-c".into(), spec.script.clone()]),
        labels: Some(spec.labels.clone()),
        tty: Some(spec.tty),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut options = CreateContainerOptionsBuilder::default();
    if let Some(name) = &spec.name {
        options = options.name(name);
    }
    Ok(docker
        .create_container(Some(options.build()), body)
        .await?
        .id)
}

/// Waits until the container is no longer running.
pub async fn wait_exit(docker: &Docker, id: &str) {
    let options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    let mut wait = docker.wait_container(id, Some(options));
    while wait.next().await.is_some() {}
}

/// Removes the container, running or not; errors are ignored (it may be gone already).
pub async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    let _ = docker.remove_container(id, Some(options)).await;
}
