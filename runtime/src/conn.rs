//! A fresh connection to the daemon, unix or TCP, for the requests we speak ourselves: the log
//! streams and the heartbeat's inspect. They run inside the task that asks, so they add no
//! task of their own (a bollard request spawns one for its connection).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::docker::Endpoint;
use crate::http::{self, Body};

/// One connection to the daemon.
pub enum Io {
    /// Over the unix socket.
    Unix(UnixStream),
    /// Over TCP.
    Tcp(TcpStream),
}

/// Opens a connection to the daemon.
pub async fn connect(endpoint: &Endpoint) -> std::io::Result<Io> {
    match endpoint {
        Endpoint::Unix(path) => UnixStream::connect(path).await.map(Io::Unix),
        Endpoint::Tcp(addr) => TcpStream::connect(addr.as_str()).await.map(Io::Tcp),
    }
}

/// The largest inspect answer read (a container with thousands of labels stays far below).
const MAX_BODY: usize = 4 << 20;

/// Whether a container runs, and since when: what an inspect's `State` says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct RunState {
    /// It runs, as the daemon says (also while it waits for a restart: see `is_running`).
    #[serde(rename = "Running")]
    pub running: bool,
    /// It waits for its restart policy to start it again: it died, its log is complete.
    #[serde(rename = "Restarting", default)]
    pub restarting: bool,
    /// When it last started, as the daemon wrote it (it changes with every start).
    #[serde(rename = "StartedAt", default)]
    pub started_at: String,
}

/// Whether a container runs, asked with `GET /containers/{id}/json` on a connection of its
/// own: `Ok(None)` if the container is gone, an error if the daemon did not answer in `limit`.
pub async fn is_running(
    endpoint: &Endpoint,
    api_version: &str,
    id: &str,
    limit: Duration,
) -> std::io::Result<Option<bool>> {
    Ok(run_state(endpoint, api_version, id, limit)
        .await?
        .map(|s| s.running && !s.restarting))
}

/// A container's [`RunState`], as `is_running` asks it.
pub async fn run_state(
    endpoint: &Endpoint,
    api_version: &str,
    id: &str,
    limit: Duration,
) -> std::io::Result<Option<RunState>> {
    let ask = async {
        match connect(endpoint).await? {
            Io::Unix(s) => get_json(s, api_version, id).await,
            Io::Tcp(s) => get_json(s, api_version, id).await,
        }
    };
    let (status, body) = tokio::time::timeout(limit, ask)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "inspect timed out"))??;
    match status {
        200 => {}
        404 => return Ok(None),
        s => {
            return Err(std::io::Error::other(format!(
                "inspect answered {s}: {}",
                String::from_utf8_lossy(&body).trim()
            )))
        }
    }
    #[derive(serde::Deserialize)]
    struct Inspect {
        #[serde(rename = "State")]
        state: RunState,
    }
    let inspect: Inspect = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
    Ok(Some(inspect.state))
}

async fn get_json<S>(mut io: S, api_version: &str, id: &str) -> std::io::Result<(u16, Vec<u8>)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!(
        "GET /{api_version}/containers/{id}/json HTTP/1.1\r\nHost: docker\r\n\
         User-Agent: log-capturer\r\nConnection: close\r\n\r\n"
    );
    io.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(8 * 1024);
    let (head, head_len) = loop {
        if io.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(found) = http::parse_head(&buf).map_err(std::io::Error::other)? {
            break found;
        }
    };
    let mut body = Body::new(head.framing);
    let mut out = Vec::new();
    let mut pending = buf.split_off(head_len);
    loop {
        body.decode(&pending, |d| out.extend_from_slice(d))
            .map_err(std::io::Error::other)?;
        if body.is_done() {
            break;
        }
        if out.len() > MAX_BODY {
            return Err(std::io::Error::other("inspect answer too large"));
        }
        pending.clear();
        pending.reserve(8 * 1024);
        if io.read_buf(&mut pending).await? == 0 {
            if body.may_end_at_eof() {
                break;
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok((head.status, out))
}
