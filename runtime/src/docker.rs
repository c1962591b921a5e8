//! The daemon: a bollard client for everything but the log stream, and what we know of a
//! container.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::errors::Error;
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;
use capturer_core::Timestamp;

/// How to reach the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(String),
    /// `host:port` over plain TCP.
    Tcp(String),
}

impl Endpoint {
    /// Parses `unix:///path`, `tcp://host:port` or `http://host:port`.
    pub fn parse(url: &str) -> Endpoint {
        if let Some(path) = url.strip_prefix("unix://") {
            Endpoint::Unix(path.to_owned())
        } else {
            let rest = url
                .strip_prefix("tcp://")
                .or_else(|| url.strip_prefix("http://"))
                .unwrap_or(url);
            Endpoint::Tcp(rest.trim_end_matches('/').to_owned())
        }
    }
}

/// A bollard client, with the API version negotiated down to what the daemon speaks.
pub async fn connect(endpoint: &Endpoint) -> Result<Docker, Error> {
    let docker = match endpoint {
        Endpoint::Unix(path) => Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)?,
        Endpoint::Tcp(addr) => {
            Docker::connect_with_http(&format!("http://{addr}"), 120, bollard::API_DEFAULT_VERSION)?
        }
    };
    docker.negotiate_version().await
}

/// What the capturer knows of a container, fixed at creation.
#[derive(Debug)]
pub struct ContainerMeta {
    /// The full 64-hex id.
    pub id: String,
    /// The name without its leading `/`.
    pub name: String,
    /// The image name it was created from.
    pub image: String,
    /// Whether it has a TTY (one raw console stream instead of stdout and stderr).
    pub tty: bool,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Whether it was running when inspected (not while it waits for a restart: the daemon
    /// says `Running` then too, but its log is complete until the next `start`).
    pub running: bool,
    /// When it last stopped (`None`: never, or the daemon's zero time).
    pub finished: Option<Timestamp>,
}

/// A container as `GET /containers/json?all=1` lists it: enough to filter and to decide.
#[derive(Debug)]
pub struct Summary {
    /// The full id.
    pub id: String,
    /// Its first name, without the leading `/`.
    pub name: String,
    /// The image it was created from.
    pub image: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    pub state: String,
}

impl Summary {
    /// It runs (or is paused). A container waiting for its restart policy to start it again
    /// is not live: it died, and its next `start` comes as an event.
    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "running" | "paused")
    }
}

/// Every container the daemon knows, running or not.
pub async fn list_all(docker: &Docker) -> Result<Vec<Summary>, Error> {
    let options = ListContainersOptionsBuilder::default().all(true).build();
    let list = docker.list_containers(Some(options)).await?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            Some(Summary {
                id: c.id?,
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                image: c.image.unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect())
}

/// Inspects a container; `Ok(None)` if it does not exist.
pub async fn inspect(docker: &Docker, id: &str) -> Result<Option<Arc<ContainerMeta>>, Error> {
    match docker.inspect_container(id, None).await {
        Ok(c) => {
            let config = c.config.unwrap_or_default();
            let state = c.state.unwrap_or_default();
            // A container that never stopped carries the zero time, 0001-01-01.
            let finished = state
                .finished_at
                .as_deref()
                .and_then(|t| Timestamp::parse_rfc3339(t.as_bytes()).ok())
                .filter(|t| t.0 > 0);
            let restarting = state.restarting.unwrap_or(false);
            Ok(Some(Arc::new(ContainerMeta {
                id: c.id.unwrap_or_else(|| id.to_owned()),
                name: c
                    .name
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                image: config.image.unwrap_or_default(),
                tty: config.tty.unwrap_or(false),
                labels: config.labels.unwrap_or_default(),
                running: state.running.unwrap_or(false) && !restarting,
                finished,
            })))
        }
        Err(Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The id of the container this process runs in, if it runs in one.
pub fn own_container_id() -> Option<String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    container_id_from(&cgroup, &mountinfo)
}

/// The container id in a process's cgroup path (`/docker/<id>`, `docker-<id>.scope`) or in
/// where its `/etc/hostname` is bind-mounted from (`/var/lib/docker/containers/<id>/hostname`).
/// A host's own mounts of other containers' files are not mistaken for it: only the mount at
/// `/etc/hostname` counts.
fn container_id_from(cgroup: &str, mountinfo: &str) -> Option<String> {
    let hex64 = |s: &&str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let id_in = |text: &str| {
        text.split(['/', '-', '.', ':'])
            .find(hex64)
            .map(str::to_owned)
    };
    cgroup
        .lines()
        .filter(|l| l.contains("docker"))
        .find_map(id_in)
        .or_else(|| {
            mountinfo.lines().find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                match fields.as_slice() {
                    [_, _, _, root, "/etc/hostname", ..] if root.contains("/containers/") => {
                        id_in(root)
                    }
                    _ => None,
                }
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0d6c94817365b5f3936a70e52e562e4863244e7cf15ddee7ae482c932001cd8f";

    #[test]
    fn finds_its_own_container() {
        let v1 = format!("12:pids:/docker/{ID}\n0::/docker/{ID}\n");
        assert_eq!(container_id_from(&v1, ""), Some(ID.to_owned()));
        let systemd = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(container_id_from(&systemd, ""), Some(ID.to_owned()));
        let mounts = format!(
            "612 590 254:0 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw\n"
        );
        assert_eq!(container_id_from("0::/\n", &mounts), Some(ID.to_owned()));
    }

    #[test]
    fn a_host_is_not_a_container() {
        // On the host, other containers' files are mounted elsewhere: not ours.
        let mounts =
            format!("88 25 0:50 / /var/lib/docker/containers/{ID}/mounts/shm rw - tmpfs shm rw\n");
        assert_eq!(container_id_from("0::/init.scope\n", &mounts), None);
        assert_eq!(
            container_id_from("0::/user.slice/user-0.slice/session-1.scope\n", ""),
            None
        );
    }
}
