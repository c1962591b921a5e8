//! From raw text to [`Settings`]: every value checked, a bad one named by its key and its
//! source.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    err, ConfigError, From, LabelSelector, LogFormat, LokiAuth, LokiEncoding, LokiSettings,
    NatsSettings, Raw, Settings, SinkKind, Source, LOKI_DEFAULT_LABELS,
};

impl Settings {
    /// The settings from the values given (by key), and the environment for the defaults that
    /// come from it (`DOCKER_HOST`, `STATE_DIRECTORY`).
    pub(super) fn from_raw(
        raw: &BTreeMap<&str, Raw>,
        env: &BTreeMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let one = |key: &str| {
            raw.get(key)
                .and_then(|r| Some((r.values.first()?.as_str(), &r.source)))
        };
        let many = |key: &str| raw.get(key).map(|r| (r.values.clone(), r.source.clone()));

        let docker_host = match one("docker_host") {
            Some((v, src)) => parse_host(v).map_err(|p| err("docker_host", src, &p))?,
            None => env
                .get("DOCKER_HOST")
                .map(|h| {
                    parse_host(h)
                        .map_err(|p| err("DOCKER_HOST", &Source::Env("DOCKER_HOST".into()), &p))
                })
                .transpose()?
                .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned()),
        };
        let system = system_state_dir(env);
        let output = match (one("output"), &system) {
            (Some(("", src)), _) => return Err(err("output", src, "is empty")),
            (Some((v, _)), _) => PathBuf::from(v),
            (None, Some(dir)) => dir.join("capture"),
            (None, None) => PathBuf::from("./capture"),
        };
        let state_dir = match (one("state_dir"), system) {
            (Some(("", src)), _) => return Err(err("state_dir", src, "is empty")),
            (Some((v, _)), _) => PathBuf::from(v),
            (None, Some(dir)) => dir,
            (None, None) => output.join(".state"),
        };
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
        let rotate_when_quiet = duration("rotate_when_quiet", Duration::from_millis(250))?;
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
        let max_files = match one("max_files") {
            None => None,
            Some((v, src)) => Some(v.trim().parse::<u64>().map_err(|_| {
                err(
                    "max_files",
                    src,
                    &format!("{v:?} is not a number of files (0 or more)"),
                )
            })?),
        };
        let log_format = match one("log_format") {
            None | Some(("text", _)) => LogFormat::Text,
            Some(("json", _)) => LogFormat::Json,
            Some((v, src)) => {
                return Err(err(
                    "log_format",
                    src,
                    &format!("{v:?} is not text or json"),
                ))
            }
        };
        let log_level = match one("log_level") {
            None => "info".to_owned(),
            Some((v, src)) => match tracing_subscriber::EnvFilter::builder().parse(v) {
                Ok(_) if !v.trim().is_empty() => v.to_owned(),
                Ok(_) => return Err(err("log_level", src, "is empty")),
                Err(e) => {
                    return Err(err(
                        "log_level",
                        src,
                        &format!("{v:?} is not a level or an EnvFilter directive: {e}"),
                    ))
                }
            },
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
            rotate_when_quiet,
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
            max_files,
            checkpoint_every,
            read_pause,
            log_format,
            log_level,
        })
    }
}

/// The NATS keys, checked whatever the sink (a typo is reported before anyone relies on it).
fn nats_settings<'a>(
    one: &dyn Fn(&str) -> Option<(&'a str, &'a Source)>,
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
type Many<'m> = &'m dyn Fn(&str) -> Option<(Vec<String>, Source)>;

/// The Loki keys, checked whatever the sink.
fn loki_settings<'a>(
    one: &dyn Fn(&str) -> Option<(&'a str, &'a Source)>,
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
            let src = one("loki_username").map_or(Source::Default, |(_, s)| s.clone());
            return Err(err("loki_username", &src, "needs loki_password too"));
        }
        (None, Some(_), None) => {
            let src = one("loki_password").map_or(Source::Default, |(_, s)| s.clone());
            return Err(err("loki_password", &src, "needs loki_username too"));
        }
        (_, _, Some(_)) => {
            let src = one("loki_bearer_token").map_or(Source::Default, |(_, s)| s.clone());
            return Err(err(
                "loki_bearer_token",
                &src,
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

/// `1048576`, `64KiB`, `128MiB`, `1GiB` (also KB, MB, GB as powers of 1000).
pub(super) fn parse_size(text: &str) -> Result<u64, String> {
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

/// `50ms`, `30s`, `5m`, `1h`, `"1h 30m"`, `0` (humantime's syntax); an error that says what is
/// wanted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 250ms, 30s, 5m or \"1h 30m\" ({e})"))
}

/// The first path of `$STATE_DIRECTORY` (systemd's `StateDirectory=`; several are
/// colon-separated), if set and not empty.
pub(super) fn system_state_dir(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    env.get("STATE_DIRECTORY")
        .and_then(|v| v.split(':').next())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}
