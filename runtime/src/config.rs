//! Settings: flags, `LOG_CAPTURER_*` environment variables, a TOML file and defaults.
//!
//! Precedence: flags > environment > file > defaults. Every key has one spelling per source
//! (`--rotate-every`, `LOG_CAPTURER_ROTATE_EVERY`, `rotate_every`). A repeatable key takes its
//! values from the highest source that sets it (lists are not merged across sources); in the
//! environment its values are comma-separated. A bad value names its key and its source.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkKind {
    /// One JSON-lines file per container under the output directory.
    File,
    /// JSON lines on standard output.
    Stdout,
    /// One message per line to a NATS JetStream stream.
    Nats,
    /// Batches of entries pushed to Grafana Loki's HTTP API.
    Loki,
}

/// How the Loki sink encodes a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LokiEncoding {
    /// `logproto.PushRequest` compressed with snappy (block format): Loki's default.
    Protobuf,
    /// The JSON body of `POST /loki/api/v1/push`.
    Json,
}

/// How the Loki sink authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LokiAuth {
    /// No `Authorization` header.
    None,
    /// HTTP basic auth.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

/// Where and how the Loki sink pushes (`--sink loki`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LokiSettings {
    /// The push endpoint, `http(s)://host:port/loki/api/v1/push`.
    pub url: String,
    /// The tenant, sent as `X-Scope-OrgID`.
    pub tenant: Option<String>,
    /// Basic auth or a bearer token.
    pub auth: LokiAuth,
    /// A CA certificate file (PEM) trusted besides the system's roots.
    pub ca: Option<PathBuf>,
    /// Stream labels: name and template, in the order given.
    pub labels: Vec<(String, String)>,
    /// Protobuf (snappy) or JSON.
    pub encoding: LokiEncoding,
    /// A batch closes once its lines reach this many bytes.
    pub batch_size: u64,
    /// ... or once its first line waited this long.
    pub batch_wait: Duration,
    /// Whether each entry carries the container id as structured metadata (Loki 3).
    pub structured_metadata: bool,
    /// Records longer than this are cut to it (message shortened, `"truncated":true`) before
    /// Loki sees them; `None`: sent as they are (Loki refuses those over its `max_line_size`).
    pub max_line_size: Option<u64>,
}

/// The labels of a Loki stream when `--loki-label` is not given. A template whose value is
/// empty (a container without the compose label) adds no label.
pub const LOKI_DEFAULT_LABELS: &[(&str, &str)] = &[
    ("container_name", "{container_name}"),
    ("stream", "{stream}"),
    ("host", "{host}"),
    ("compose_service", "{label:com.docker.compose.service}"),
];

/// Where and how the NATS sink publishes (`--sink nats`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsSettings {
    /// The server: `nats://host:port` or `tls://host:port` (several, comma-separated).
    pub url: String,
    /// The JetStream stream, created if missing.
    pub stream: String,
    /// Lines go to `<prefix>.<container_id>.<stream>`.
    pub subject_prefix: String,
    /// A NATS credentials file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// A CA certificate file (PEM) to verify the server's TLS certificate with.
    pub ca: Option<PathBuf>,
    /// Replicas of the stream when the sink creates it (3 on a cluster of three).
    pub replicas: usize,
}

/// Where a container with no saved cursor starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// Everything the daemon still has.
    Start,
    /// What is stamped from the capturer's start on.
    Now,
}

/// A label selector: `KEY` (present) or `KEY=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    /// The label key.
    pub key: String,
    /// The value it must have, if any.
    pub value: Option<String>,
}

/// Everything `log-capturer run` needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The daemon's address: `unix:///path` or `tcp://host:port` / `http://host:port`.
    pub docker_host: String,
    /// The output directory of the file sink.
    pub output: PathBuf,
    /// Where cursors are kept.
    pub state_dir: PathBuf,
    /// File, stdout or NATS.
    pub sink: SinkKind,
    /// The NATS sink's server, stream and credentials.
    pub nats: NatsSettings,
    /// The Loki sink's endpoint, labels, batching and credentials.
    pub loki: LokiSettings,
    /// Stream rotation interval.
    pub rotate_every: Duration,
    /// Heartbeat (stall watchdog) interval.
    pub heartbeat_every: Duration,
    /// Name globs to include (any).
    pub include_name: Vec<String>,
    /// Name globs to exclude.
    pub exclude_name: Vec<String>,
    /// Labels to include (any).
    pub include_label: Vec<LabelSelector>,
    /// Labels to exclude.
    pub exclude_label: Vec<LabelSelector>,
    /// Image globs to include (any).
    pub include_image: Vec<String>,
    /// Where a container with no saved cursor starts.
    pub from: From,
    /// The metrics and debug endpoint.
    pub metrics_addr: SocketAddr,
    /// How long a graceful stop may take before giving up (exit 1).
    pub stop_timeout: Duration,
    /// Size at which a container's output file is rotated.
    pub max_file_size: u64,
    /// How often flushed cursors are persisted.
    pub checkpoint_every: Duration,
    /// The longest a busy reader stays off the poller before its next read (zero: never);
    /// `crate::pace` decides how long.
    pub read_pause: Duration,
}

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{key} (from {origin}): {problem}")]
pub struct ConfigError {
    /// The key, as spelled in its source.
    pub key: String,
    /// Which source: the flag, the variable, or the file.
    pub origin: String,
    /// What is wrong.
    pub problem: String,
}

/// The keys, their kind and their default (as text, parsed like any other source).
const KEYS: &[(&str, Kind)] = &[
    ("docker_host", Kind::One),
    ("output", Kind::One),
    ("state_dir", Kind::One),
    ("sink", Kind::One),
    ("rotate_every", Kind::One),
    ("heartbeat_every", Kind::One),
    ("include_name", Kind::Many),
    ("exclude_name", Kind::Many),
    ("include_label", Kind::Many),
    ("exclude_label", Kind::Many),
    ("include_image", Kind::Many),
    ("from", Kind::One),
    ("metrics_addr", Kind::One),
    ("stop_timeout", Kind::One),
    ("max_file_size", Kind::One),
    ("checkpoint_every", Kind::One),
    ("read_pause", Kind::One),
    ("nats_url", Kind::One),
    ("nats_stream", Kind::One),
    ("nats_subject_prefix", Kind::One),
    ("nats_creds", Kind::One),
    ("nats_ca", Kind::One),
    ("nats_replicas", Kind::One),
    ("loki_url", Kind::One),
    ("loki_tenant", Kind::One),
    ("loki_username", Kind::One),
    ("loki_password", Kind::One),
    ("loki_bearer_token", Kind::One),
    ("loki_ca", Kind::One),
    ("loki_label", Kind::Many),
    ("loki_encoding", Kind::One),
    ("loki_batch_size", Kind::One),
    ("loki_batch_wait", Kind::One),
    ("loki_structured_metadata", Kind::One),
    ("loki_max_line_size", Kind::One),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    One,
    Many,
}

/// A raw value and where it came from.
#[derive(Clone, Debug)]
struct Raw {
    values: Vec<String>,
    source: String,
}

/// Help text for `log-capturer run --help`.
pub const HELP: &str = "\
usage: log-capturer run [OPTIONS]

Captures the logs of every selected container, exactly once, into JSON lines.

  --config FILE              TOML file with the keys below (dashes as underscores)
  --docker-host URL          unix:///var/run/docker.sock (default: $DOCKER_HOST, else that)
  --output DIR               output directory of the file sink (default ./capture)
  --state-dir DIR            cursors (default OUTPUT/.state)
  --sink file|stdout|nats|loki where lines go (default file)
  --rotate-every DURATION    reopen a log stream this long after it began delivering new lines
                             (default 5m; e.g. 50ms, 30s, 1h); a stream that delivers nothing
                             is never cut short by it
  --heartbeat-every DURATION stall watchdog interval (default 30s); a reopened stream still
                             waiting for its first line gets twice as long after each stall
  --include-name GLOB        only containers whose name matches (repeatable)
  --exclude-name GLOB        never containers whose name matches (repeatable)
  --include-label K[=V]      only containers with this label (repeatable)
  --exclude-label K[=V]      never containers with this label (repeatable)
  --include-image GLOB       only containers whose image matches (repeatable)
  --from start|now           where a container without a saved cursor starts (default start)
  --metrics-addr ADDR        Prometheus /metrics, /healthz, /debug/tasks (default 127.0.0.1:9440)
  --stop-timeout DURATION    graceful stop deadline, then exit 1 (default 10s)
  --max-file-size BYTES      rotate a container's output file at this size (default 128MiB)
  --checkpoint-every DURATION persist flushed cursors this often (default 1s)
  --read-pause DURATION      the longest a busy stream waits between reads, so each read takes
                             many frames at once; it waits less the more the last wake-up
                             found, not at all in a backlog (default 1ms; 0 never waits)
  --nats-url URL             NATS server(s) for --sink nats (default nats://127.0.0.1:4222;
                             tls://host:port for TLS; comma-separated for a cluster)
  --nats-stream NAME         JetStream stream, created if missing (default LOGS)
  --nats-subject-prefix P    lines go to P.<container_id>.<stream> (default logs)
  --nats-creds FILE          NATS credentials file (JWT and NKey seed)
  --nats-ca FILE             CA certificate (PEM) that signed the server's TLS certificate
  --nats-replicas N          replicas of the stream if the capturer creates it (default 1;
                             1 to 5; an existing stream is used as it is)
  --loki-url URL             Loki push endpoint for --sink loki
                             (default http://127.0.0.1:3100/loki/api/v1/push)
  --loki-tenant ID           tenant, sent as X-Scope-OrgID
  --loki-username U          basic auth user (with --loki-password)
  --loki-password P          basic auth password
  --loki-bearer-token T      Authorization: Bearer T (not with basic auth)
  --loki-ca FILE             CA certificate (PEM) trusted besides the system's, for https
  --loki-label NAME=TEMPLATE a stream label (repeatable; replaces the defaults); TEMPLATE may
                             hold {container_name} {image} {stream} {host} {label:KEY};
                             default container_name, stream, host, and compose_service when
                             the container has com.docker.compose.service
  --loki-encoding protobuf|json  push body (default protobuf: snappy-compressed logproto)
  --loki-batch-size BYTES    a batch closes at this size (default 1MiB)
  --loki-batch-wait DURATION ... or this long after its first line (default 1s; a checkpoint
                             closes every batch too)
  --loki-structured-metadata true|false  the container id as structured metadata on each
                             entry (default true; false for Loki before 3.0)
  --loki-max-line-size BYTES cut longer records to this size, marked \"truncated\":true
                             (default: sent whole; Loki refuses lines over its max_line_size,
                             256KB by default)

Every key can also be set as LOG_CAPTURER_<KEY> (repeatable keys comma-separated).
Precedence: flags > environment > file > defaults. Stop with SIGINT or SIGTERM.";

impl Settings {
    /// Settings from the command line after `run`, the process environment and the file named
    /// by `--config` (or `LOG_CAPTURER_CONFIG`).
    pub fn load(args: &[String], env: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
        let (flags, config_path) = parse_flags(args)?;
        let config_path = config_path.or_else(|| {
            env.get("LOG_CAPTURER_CONFIG")
                .map(|p| (p.clone(), "LOG_CAPTURER_CONFIG".to_owned()))
        });
        let file = match config_path {
            Some((path, source)) => read_file(&path, &source)?,
            None => BTreeMap::new(),
        };
        let mut merged: BTreeMap<&str, Raw> = BTreeMap::new();
        for (key, kind) in KEYS {
            let var = format!("LOG_CAPTURER_{}", key.to_uppercase());
            let from_env = env.get(&var).map(|v| Raw {
                values: match kind {
                    Kind::One => vec![v.clone()],
                    Kind::Many => v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                },
                source: var.clone(),
            });
            let chosen = flags
                .get(*key)
                .cloned()
                .or(from_env)
                .or_else(|| file.get(*key).cloned());
            if let Some(raw) = chosen {
                if *kind == Kind::One && raw.values.len() > 1 {
                    return Err(err(key, &raw.source, "given more than once"));
                }
                merged.insert(key, raw);
            }
        }
        Settings::from_raw(&merged, env)
    }

    fn from_raw(
        raw: &BTreeMap<&str, Raw>,
        env: &BTreeMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let one = |key: &str| {
            raw.get(key)
                .map(|r| (r.values[0].as_str(), r.source.as_str()))
        };
        let many = |key: &str| raw.get(key).map(|r| (r.values.clone(), r.source.clone()));

        let docker_host = match one("docker_host") {
            Some((v, src)) => parse_host(v).map_err(|p| err("docker_host", src, &p))?,
            None => env
                .get("DOCKER_HOST")
                .map(|h| parse_host(h).map_err(|p| err("DOCKER_HOST", "environment", &p)))
                .transpose()?
                .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned()),
        };
        let output =
            one("output").map_or_else(|| PathBuf::from("./capture"), |(v, _)| PathBuf::from(v));
        let state_dir =
            one("state_dir").map_or_else(|| output.join(".state"), |(v, _)| PathBuf::from(v));
        let sink = match one("sink") {
            None | Some(("file", _)) => SinkKind::File,
            Some(("stdout", _)) => SinkKind::Stdout,
            Some(("nats", _)) => SinkKind::Nats,
            Some(("loki", _)) => SinkKind::Loki,
            Some((v, src)) => {
                return Err(err(
                    "sink",
                    src,
                    &format!("{v:?} is not file, stdout, nats or loki"),
                ))
            }
        };
        let nats = nats_settings(&one)?;
        let loki = loki_settings(&one, &many)?;
        let duration = |key: &str, default: Duration| -> Result<Duration, ConfigError> {
            match one(key) {
                None => Ok(default),
                Some((v, src)) => parse_duration(v).map_err(|p| err(key, src, &p)),
            }
        };
        let rotate_every = duration("rotate_every", Duration::from_secs(300))?;
        let heartbeat_every = duration("heartbeat_every", Duration::from_secs(30))?;
        let stop_timeout = duration("stop_timeout", Duration::from_secs(10))?;
        let checkpoint_every = duration("checkpoint_every", Duration::from_secs(1))?;
        let read_pause = duration("read_pause", Duration::from_millis(1))?;
        let globs = |key: &str| -> Result<Vec<String>, ConfigError> {
            let Some((values, src)) = many(key) else {
                return Ok(Vec::new());
            };
            for v in &values {
                globset::Glob::new(v)
                    .map_err(|e| err(key, &src, &format!("bad glob {v:?}: {e}")))?;
            }
            Ok(values)
        };
        let labels = |key: &str| -> Result<Vec<LabelSelector>, ConfigError> {
            let Some((values, src)) = many(key) else {
                return Ok(Vec::new());
            };
            values
                .iter()
                .map(|v| match v.split_once('=') {
                    Some(("", _)) => Err(err(key, &src, &format!("{v:?} has an empty key"))),
                    Some((k, val)) => Ok(LabelSelector {
                        key: k.to_owned(),
                        value: Some(val.to_owned()),
                    }),
                    None if v.is_empty() => Err(err(key, &src, "empty label")),
                    None => Ok(LabelSelector {
                        key: v.clone(),
                        value: None,
                    }),
                })
                .collect()
        };
        let from = match one("from") {
            None | Some(("start", _)) => From::Start,
            Some(("now", _)) => From::Now,
            Some((v, src)) => return Err(err("from", src, &format!("{v:?} is not start or now"))),
        };
        let metrics_addr = match one("metrics_addr") {
            None => SocketAddr::from(([127, 0, 0, 1], 9440)),
            Some((v, src)) => v.parse().map_err(|_| {
                err(
                    "metrics_addr",
                    src,
                    &format!("{v:?} is not an address like 127.0.0.1:9440"),
                )
            })?,
        };
        let max_file_size = match one("max_file_size") {
            None => 128 << 20,
            Some((v, src)) => parse_size(v).map_err(|p| err("max_file_size", src, &p))?,
        };
        if rotate_every.is_zero() {
            return Err(err(
                "rotate_every",
                &raw["rotate_every"].source,
                "must be more than zero",
            ));
        }
        if heartbeat_every.is_zero() {
            return Err(err(
                "heartbeat_every",
                &raw["heartbeat_every"].source,
                "must be more than zero",
            ));
        }
        Ok(Settings {
            docker_host,
            output,
            state_dir,
            sink,
            nats,
            loki,
            rotate_every,
            heartbeat_every,
            include_name: globs("include_name")?,
            exclude_name: globs("exclude_name")?,
            include_label: labels("include_label")?,
            exclude_label: labels("exclude_label")?,
            include_image: globs("include_image")?,
            from,
            metrics_addr,
            stop_timeout,
            max_file_size,
            checkpoint_every,
            read_pause,
        })
    }
}

/// The NATS keys, checked whatever the sink (a typo is reported before anyone relies on it).
fn nats_settings<'a>(
    one: &dyn Fn(&str) -> Option<(&'a str, &'a str)>,
) -> Result<NatsSettings, ConfigError> {
    let url = match one("nats_url") {
        None => "nats://127.0.0.1:4222".to_owned(),
        Some((v, src)) => {
            for server in v.split(',').map(str::trim) {
                let rest = server
                    .strip_prefix("nats://")
                    .or_else(|| server.strip_prefix("tls://"))
                    .unwrap_or(server);
                let host_port = rest.rsplit('@').next().unwrap_or(rest);
                if host_port.is_empty() || host_port.contains('/') || host_port.contains(' ') {
                    return Err(err(
                        "nats_url",
                        src,
                        &format!("{server:?} is not a server like nats://host:4222"),
                    ));
                }
            }
            v.to_owned()
        }
    };
    // Stream names and subject tokens: no spaces, dots or wildcards (a prefix may have dots).
    let name_ok = |v: &str| {
        !v.is_empty()
            && !v
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    };
    let stream = match one("nats_stream") {
        None => "LOGS".to_owned(),
        Some((v, _)) if name_ok(v) => v.to_owned(),
        Some((v, src)) => {
            return Err(err(
                "nats_stream",
                src,
                &format!("{v:?} is not a stream name (no spaces, '.', '*', '>', '/')"),
            ))
        }
    };
    let subject_prefix = match one("nats_subject_prefix") {
        None => "logs".to_owned(),
        Some((v, _)) if v.split('.').all(name_ok) => v.to_owned(),
        Some((v, src)) => {
            return Err(err(
                "nats_subject_prefix",
                src,
                &format!("{v:?} is not a subject prefix like logs or acme.logs"),
            ))
        }
    };
    let file = |key: &str| -> Result<Option<PathBuf>, ConfigError> {
        match one(key) {
            None => Ok(None),
            Some((v, src)) => match std::fs::metadata(v) {
                Ok(m) if m.is_file() => Ok(Some(PathBuf::from(v))),
                Ok(_) => Err(err(key, src, &format!("{v} is not a file"))),
                Err(e) => Err(err(key, src, &format!("cannot read {v}: {e}"))),
            },
        }
    };
    let replicas = match one("nats_replicas") {
        None => 1,
        Some((v, src)) => match v.parse::<usize>() {
            Ok(n @ 1..=5) => n,
            _ => {
                return Err(err(
                    "nats_replicas",
                    src,
                    &format!("{v:?} is not a replica count from 1 to 5"),
                ))
            }
        },
    };
    Ok(NatsSettings {
        url,
        stream,
        subject_prefix,
        creds: file("nats_creds")?,
        ca: file("nats_ca")?,
        replicas,
    })
}

/// A repeatable key's values and their source, if set.
type Many<'m> = &'m dyn Fn(&str) -> Option<(Vec<String>, String)>;

/// The Loki keys, checked whatever the sink.
fn loki_settings<'a>(
    one: &dyn Fn(&str) -> Option<(&'a str, &'a str)>,
    many: Many<'_>,
) -> Result<LokiSettings, ConfigError> {
    let url = match one("loki_url") {
        None => "http://127.0.0.1:3100/loki/api/v1/push".to_owned(),
        Some((v, src)) => {
            let rest = v
                .strip_prefix("http://")
                .or_else(|| v.strip_prefix("https://"));
            match rest {
                Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(' ') => v.to_owned(),
                _ => {
                    return Err(err(
                        "loki_url",
                        src,
                        &format!("{v:?} is not a URL like http://loki:3100/loki/api/v1/push"),
                    ))
                }
            }
        }
    };
    let text = |key: &str| -> Result<Option<String>, ConfigError> {
        match one(key) {
            None => Ok(None),
            Some(("", src)) => Err(err(key, src, "is empty")),
            Some((v, src)) if v.chars().any(|c| c.is_control()) => {
                Err(err(key, src, "holds a control character"))
            }
            Some((v, _)) => Ok(Some(v.to_owned())),
        }
    };
    let tenant = text("loki_tenant")?;
    let auth = match (
        text("loki_username")?,
        text("loki_password")?,
        text("loki_bearer_token")?,
    ) {
        (None, None, None) => LokiAuth::None,
        (None, None, Some(token)) => LokiAuth::Bearer(token),
        (Some(username), Some(password), None) => LokiAuth::Basic { username, password },
        (Some(_), None, None) => {
            let src = one("loki_username").map_or("", |(_, s)| s);
            return Err(err("loki_username", src, "needs loki_password too"));
        }
        (None, Some(_), None) => {
            let src = one("loki_password").map_or("", |(_, s)| s);
            return Err(err("loki_password", src, "needs loki_username too"));
        }
        (_, _, Some(_)) => {
            let src = one("loki_bearer_token").map_or("", |(_, s)| s);
            return Err(err(
                "loki_bearer_token",
                src,
                "cannot be used with basic auth (loki_username, loki_password)",
            ));
        }
    };
    let ca = match one("loki_ca") {
        None => None,
        Some((v, src)) => match std::fs::metadata(v) {
            Ok(m) if m.is_file() => Some(PathBuf::from(v)),
            Ok(_) => return Err(err("loki_ca", src, &format!("{v} is not a file"))),
            Err(e) => return Err(err("loki_ca", src, &format!("cannot read {v}: {e}"))),
        },
    };
    let labels = match many("loki_label") {
        None => LOKI_DEFAULT_LABELS
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect(),
        Some((values, src)) => {
            let mut labels: Vec<(String, String)> = Vec::new();
            for v in &values {
                let (name, template) =
                    parse_loki_label(v).map_err(|p| err("loki_label", &src, &p))?;
                if labels.iter().any(|(n, _)| *n == name) {
                    return Err(err(
                        "loki_label",
                        &src,
                        &format!("label {name} given twice"),
                    ));
                }
                labels.push((name, template));
            }
            if labels.is_empty() {
                return Err(err("loki_label", &src, "Loki needs at least one label"));
            }
            labels
        }
    };
    let encoding = match one("loki_encoding") {
        None | Some(("protobuf", _)) => LokiEncoding::Protobuf,
        Some(("json", _)) => LokiEncoding::Json,
        Some((v, src)) => {
            return Err(err(
                "loki_encoding",
                src,
                &format!("{v:?} is not protobuf or json"),
            ))
        }
    };
    let batch_size = match one("loki_batch_size") {
        None => 1 << 20,
        Some((v, src)) => parse_size(v).map_err(|p| err("loki_batch_size", src, &p))?,
    };
    let batch_wait = match one("loki_batch_wait") {
        None => Duration::from_secs(1),
        Some((v, src)) => match parse_duration(v) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => return Err(err("loki_batch_wait", src, "must be more than zero")),
            Err(p) => return Err(err("loki_batch_wait", src, &p)),
        },
    };
    let structured_metadata = match one("loki_structured_metadata") {
        None | Some(("true", _)) => true,
        Some(("false", _)) => false,
        Some((v, src)) => {
            return Err(err(
                "loki_structured_metadata",
                src,
                &format!("{v:?} is not true or false"),
            ))
        }
    };
    let max_line_size = match one("loki_max_line_size") {
        None => None,
        Some((v, src)) => match parse_size(v) {
            Ok(n) if n >= 512 => Some(n),
            Ok(_) => {
                return Err(err(
                    "loki_max_line_size",
                    src,
                    "must be at least 512 bytes (a record's fields alone take hundreds)",
                ))
            }
            Err(p) => return Err(err("loki_max_line_size", src, &p)),
        },
    };
    Ok(LokiSettings {
        url,
        tenant,
        auth,
        ca,
        labels,
        encoding,
        batch_size,
        batch_wait,
        structured_metadata,
        max_line_size,
    })
}

/// `NAME=TEMPLATE`: a Loki label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not `__`-prefixed) and a
/// template whose placeholders are known. The container id is refused: a label that changes
/// with every container makes a new stream each time (it is in the line and in structured
/// metadata).
pub fn parse_loki_label(text: &str) -> Result<(String, String), String> {
    let Some((name, template)) = text.split_once('=') else {
        return Err(format!("{text:?} is not NAME=TEMPLATE"));
    };
    let mut chars = name.chars();
    let name_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__");
    if !name_ok {
        return Err(format!(
            "{name:?} is not a Loki label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
        ));
    }
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("{template:?}: a {{ without its }}"));
        };
        let field = &rest[open + 1..open + close];
        match field {
            "container_name" | "image" | "stream" | "host" => {}
            "container_id" => {
                return Err(
                    "{container_id} makes a new stream per container; it is in each line and in structured metadata"
                        .to_owned(),
                )
            }
            f if f.strip_prefix("label:").is_some_and(|k| !k.is_empty()) => {}
            f => {
                return Err(format!(
                    "{{{f}}} is not one of {{container_name}} {{image}} {{stream}} {{host}} {{label:KEY}}"
                ))
            }
        }
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{template:?}: a }} without its {{"));
    }
    Ok((name.to_owned(), template.to_owned()))
}

fn err(key: &str, source: &str, problem: &str) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        origin: source.to_owned(),
        problem: problem.to_owned(),
    }
}

type Flags = BTreeMap<String, Raw>;

/// `--key value` and `--key=value`; returns the flags by key and the `--config` path.
fn parse_flags(args: &[String]) -> Result<(Flags, Option<(String, String)>), ConfigError> {
    let mut flags: Flags = BTreeMap::new();
    let mut config = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(body) = arg.strip_prefix("--") else {
            return Err(err(
                arg,
                "command line",
                "unexpected argument (flags start with --)",
            ));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        let flag = format!("--{name}");
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| err(&flag, "command line", "needs a value"))?,
        };
        if name == "config" {
            config = Some((value, flag));
            continue;
        }
        let key = name.replace('-', "_");
        if !KEYS.iter().any(|(k, _)| *k == key) {
            return Err(err(&flag, "command line", "unknown flag (see --help)"));
        }
        flags
            .entry(key)
            .or_insert_with(|| Raw {
                values: Vec::new(),
                source: flag,
            })
            .values
            .push(value);
    }
    Ok((flags, config))
}

fn read_file(path: &str, source: &str) -> Result<BTreeMap<String, Raw>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err("config", source, &format!("cannot read {path}: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| err("config", source, &format!("{path} is not valid TOML: {e}")))?;
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let here = path.to_owned();
        let Some((_, kind)) = KEYS.iter().find(|(k, _)| *k == key) else {
            return Err(err(&key, &here, "unknown key"));
        };
        let scalar = |v: &toml::Value| -> Result<String, ConfigError> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                other => Err(err(
                    &key,
                    &here,
                    &format!("expected a string, found {}", other.type_str()),
                )),
            }
        };
        let values = match (&value, kind) {
            (toml::Value::Array(items), Kind::Many) => {
                items.iter().map(scalar).collect::<Result<_, _>>()?
            }
            (toml::Value::Array(_), Kind::One) => {
                return Err(err(&key, &here, "takes one value, not a list"))
            }
            (v, _) => vec![scalar(v)?],
        };
        out.insert(
            key,
            Raw {
                values,
                source: here,
            },
        );
    }
    Ok(out)
}

/// `50ms`, `30s`, `5m`, `1h`, `100us`, `7ns`, or a sum like `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration like 50ms, 30s, 5m or 1h");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    // Zero needs no unit, as in Go and systemd.
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit] {
            "ns" => Duration::from_nanos(n),
            "us" | "µs" => Duration::from_micros(n),
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit..];
    }
    Ok(total)
}

/// `1048576`, `64KiB`, `128MiB`, `1GiB` (also KB, MB, GB as powers of 1000).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 128MiB"))?;
    let mult = match t[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(format!("{text:?} is not a size like 128MiB")),
    };
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("{text:?} is not a usable size")),
        Some(v) => Ok(v),
    }
}

fn parse_host(text: &str) -> Result<String, String> {
    if text.starts_with("unix://") || text.starts_with("tcp://") || text.starts_with("http://") {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not unix:///path, tcp://host:port or http://host:port"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(&args, &env)
    }

    #[test]
    fn defaults() {
        let s = load(&[], &[]).unwrap();
        assert_eq!(s.docker_host, "unix:///var/run/docker.sock");
        assert_eq!(s.output, PathBuf::from("./capture"));
        assert_eq!(s.state_dir, PathBuf::from("./capture/.state"));
        assert_eq!(s.rotate_every, Duration::from_secs(300));
        assert_eq!(s.heartbeat_every, Duration::from_secs(30));
        assert_eq!(s.read_pause, Duration::from_millis(1));
        assert_eq!(s.sink, SinkKind::File);
        assert_eq!(s.from, From::Start);
        assert_eq!(s.metrics_addr.to_string(), "127.0.0.1:9440");
    }

    #[test]
    fn precedence_flags_env_file_defaults() {
        let dir = std::env::temp_dir().join(format!("lc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "rotate_every = \"1m\"\nheartbeat_every = \"7s\"\noutput = \"/from/file\"\ninclude_label = [\"a\", \"b=c\"]\n").unwrap();
        let f = file.to_str().unwrap();
        let s = load(
            &["--config", f, "--rotate-every=50ms"],
            &[
                ("LOG_CAPTURER_HEARTBEAT_EVERY", "9s"),
                ("LOG_CAPTURER_ROTATE_EVERY", "2m"),
            ],
        )
        .unwrap();
        assert_eq!(
            s.rotate_every,
            Duration::from_millis(50),
            "flag beats env and file"
        );
        assert_eq!(s.heartbeat_every, Duration::from_secs(9), "env beats file");
        assert_eq!(s.output, PathBuf::from("/from/file"), "file beats default");
        assert_eq!(s.state_dir, PathBuf::from("/from/file/.state"));
        assert_eq!(
            s.include_label[1],
            LabelSelector {
                key: "b".into(),
                value: Some("c".into())
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn repeatable_flags_and_env_lists() {
        let s = load(
            &["--include-name", "web-*", "--include-name", "db"],
            &[("LOG_CAPTURER_EXCLUDE_LABEL", "x, y=1")],
        )
        .unwrap();
        assert_eq!(s.include_name, ["web-*", "db"]);
        assert_eq!(s.exclude_label.len(), 2);
    }

    #[test]
    fn bad_values_name_their_key_and_source() {
        let e = load(&["--rotate-every", "5x"], &[]).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.origin.as_str()),
            ("rotate_every", "--rotate-every")
        );
        let e = load(&[], &[("LOG_CAPTURER_SINK", "kafka")]).unwrap_err();
        assert_eq!(e.key, "sink");
        assert!(e.to_string().contains("LOG_CAPTURER_SINK"));
        let e = load(&["--bogus", "1"], &[]).unwrap_err();
        assert_eq!(e.key, "--bogus");
        let e = load(&["--from"], &[]).unwrap_err();
        assert!(e.problem.contains("needs a value"));
        let e = load(&["--metrics-addr", "nowhere"], &[]).unwrap_err();
        assert_eq!(e.key, "metrics_addr");
    }

    #[test]
    fn nats_keys_default_and_are_checked() {
        let s = load(&[], &[]).unwrap();
        assert_eq!(s.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(s.nats.stream, "LOGS");
        assert_eq!(s.nats.subject_prefix, "logs");
        assert_eq!(s.nats.replicas, 1);
        let s = load(
            &["--sink", "nats", "--nats-subject-prefix", "acme.logs"],
            &[("LOG_CAPTURER_NATS_URL", "tls://a:4222,tls://b:4222")],
        )
        .unwrap();
        assert_eq!(s.sink, SinkKind::Nats);
        assert_eq!(s.nats.subject_prefix, "acme.logs");
        assert_eq!(s.nats.url, "tls://a:4222,tls://b:4222");
        for (args, key) in [
            (["--nats-stream", "my.logs"], "nats_stream"),
            (["--nats-subject-prefix", "logs.>"], "nats_subject_prefix"),
            (["--nats-url", "nats://a b"], "nats_url"),
            (["--nats-creds", "/nonexistent/x.creds"], "nats_creds"),
            (["--nats-ca", "/"], "nats_ca"),
            (["--nats-replicas", "7"], "nats_replicas"),
        ] {
            let e = load(&args, &[]).unwrap_err();
            assert_eq!(e.key, key, "{args:?}: {e}");
        }
    }

    #[test]
    fn loki_keys_default_and_are_checked() {
        let s = load(&[], &[]).unwrap();
        assert_eq!(s.loki.url, "http://127.0.0.1:3100/loki/api/v1/push");
        assert_eq!(s.loki.encoding, LokiEncoding::Protobuf);
        assert_eq!(s.loki.batch_size, 1 << 20);
        assert_eq!(s.loki.batch_wait, Duration::from_secs(1));
        assert_eq!(s.loki.auth, LokiAuth::None);
        assert!(s.loki.structured_metadata);
        assert_eq!(s.loki.max_line_size, None);
        let names: Vec<&str> = s.loki.labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["container_name", "stream", "host", "compose_service"]
        );
        let s = load(
            &[
                "--sink",
                "loki",
                "--loki-label",
                "job=docker",
                "--loki-label",
                "app={label:app}-{stream}",
                "--loki-encoding",
                "json",
            ],
            &[
                ("LOG_CAPTURER_LOKI_TENANT", "team-a"),
                ("LOG_CAPTURER_LOKI_BEARER_TOKEN", "s3cret"),
                ("LOG_CAPTURER_LOKI_BATCH_WAIT", "250ms"),
                ("LOG_CAPTURER_LOKI_MAX_LINE_SIZE", "256KiB"),
            ],
        )
        .unwrap();
        assert_eq!(s.sink, SinkKind::Loki);
        assert_eq!(s.loki.encoding, LokiEncoding::Json);
        assert_eq!(s.loki.tenant.as_deref(), Some("team-a"));
        assert_eq!(s.loki.auth, LokiAuth::Bearer("s3cret".into()));
        assert_eq!(s.loki.batch_wait, Duration::from_millis(250));
        assert_eq!(s.loki.max_line_size, Some(256 << 10));
        assert_eq!(
            s.loki.labels,
            [
                ("job".to_owned(), "docker".to_owned()),
                ("app".to_owned(), "{label:app}-{stream}".to_owned())
            ]
        );
        for (args, key) in [
            (vec!["--loki-url", "loki:3100"], "loki_url"),
            (
                vec!["--loki-label", "container_id={container_id}"],
                "loki_label",
            ),
            (vec!["--loki-label", "9x=a"], "loki_label"),
            (vec!["--loki-label", "__x=a"], "loki_label"),
            (vec!["--loki-label", "a={nope}"], "loki_label"),
            (
                vec!["--loki-label", "a=x", "--loki-label", "a=y"],
                "loki_label",
            ),
            (vec!["--loki-encoding", "gzip"], "loki_encoding"),
            (vec!["--loki-batch-size", "0"], "loki_batch_size"),
            (vec!["--loki-batch-wait", "0"], "loki_batch_wait"),
            (vec!["--loki-username", "u"], "loki_username"),
            (
                vec![
                    "--loki-username",
                    "u",
                    "--loki-password",
                    "p",
                    "--loki-bearer-token",
                    "t",
                ],
                "loki_bearer_token",
            ),
            (vec!["--loki-ca", "/nonexistent.pem"], "loki_ca"),
            (vec!["--loki-max-line-size", "100"], "loki_max_line_size"),
            (
                vec!["--loki-structured-metadata", "yes"],
                "loki_structured_metadata",
            ),
        ] {
            let e = load(&args, &[]).unwrap_err();
            assert_eq!(e.key, key, "{args:?}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
