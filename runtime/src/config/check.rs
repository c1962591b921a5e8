//! `log-capturer check-config`: what `run` would refuse, found without connecting anywhere.
//!
//! [`Settings::from_matches`] already checks every value (durations, sizes, globs, label
//! selectors, addresses, URLs, that the credential and CA files exist). This adds what `run`
//! only finds when it opens them: that the state directory and the file sink's output
//! directory can be created or written, and that the credential and CA files can be read.
//! Nothing is created.

use std::ffi::CString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{err, ConfigError, LogFormat, LokiAuth, Origins, Settings, SinkKind, Source};

/// Checks that `run` could use the paths of `s`.
pub fn paths_usable(s: &Settings, origins: &Origins) -> Result<(), ConfigError> {
    let source = |key: &str| origins.get(key).cloned().unwrap_or(Source::Default);
    dir_usable(&s.state_dir).map_err(|p| err("state_dir", &source("state_dir"), &p))?;
    if s.sink == SinkKind::File {
        dir_usable(&s.output).map_err(|p| err("output", &source("output"), &p))?;
    }
    let files = [
        ("nats_creds", s.nats.creds.as_ref()),
        ("nats_ca", s.nats.ca.as_ref()),
        ("loki_ca", s.loki.ca.as_ref()),
    ];
    for (key, path) in files {
        if let Some(path) = path {
            std::fs::File::open(path).map_err(|e| {
                err(
                    key,
                    &source(key),
                    &format!("cannot read {}: {e}", path.display()),
                )
            })?;
        }
    }
    Ok(())
}

/// A directory that exists and can be written, or that can be created: its nearest existing
/// ancestor is a directory that can be written.
fn dir_usable(dir: &Path) -> Result<(), String> {
    let mut at: PathBuf = dir.to_owned();
    loop {
        match std::fs::metadata(&at) {
            Ok(m) if m.is_dir() => {
                return if writable(&at) {
                    Ok(())
                } else if at == dir {
                    Err(format!("{} cannot be written", dir.display()))
                } else {
                    Err(format!(
                        "{} cannot be created: {} cannot be written",
                        dir.display(),
                        at.display()
                    ))
                };
            }
            Ok(_) => return Err(format!("{} is not a directory", at.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot use {}: {e}", at.display())),
        }
        // `./capture` has `.` then `` above it: an empty parent is the working directory.
        at = match at.parent() {
            Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
            Some(p) => p.to_owned(),
            None => return Err(format!("no existing directory above {}", dir.display())),
        };
    }
}

/// `access(W_OK | X_OK)`: what the kernel would let this process do, read-only mounts
/// included.
fn writable(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads the NUL-terminated path, which `c` owns for the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// The effective settings as a TOML file `run --config` would take, each with where it came
/// from; secrets are not shown.
pub fn print(s: &Settings, origins: &Origins) -> String {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let q = |v: &str| serde_json::Value::from(v).to_string();
    let list = |v: &[String]| {
        let items: Vec<String> = v.iter().map(|x| q(x)).collect();
        format!("[{}]", items.join(", "))
    };
    let labels = |v: &[super::LabelSelector]| {
        let items: Vec<String> = v
            .iter()
            .map(|l| match &l.value {
                Some(val) => format!("{}={val}", l.key),
                None => l.key.clone(),
            })
            .collect();
        list(&items)
    };
    let opt_path = |p: &Option<PathBuf>| p.as_ref().map(|p| q(&p.display().to_string()));
    let (username, password, token) = match &s.loki.auth {
        // Some(None): not set; None: set, and a secret.
        LokiAuth::None => (Some(None), Some(None), Some(None)),
        LokiAuth::Basic { username, .. } => (Some(Some(q(username))), None, Some(None)),
        LokiAuth::Bearer(_) => (Some(None), Some(None), None),
    };
    let values: Vec<(&str, Option<Option<String>>)> = vec![
        ("docker_host", Some(Some(q(&s.docker_host)))),
        ("output", Some(Some(q(&s.output.display().to_string())))),
        (
            "state_dir",
            Some(Some(q(&s.state_dir.display().to_string()))),
        ),
        (
            "sink",
            Some(Some(q(match s.sink {
                SinkKind::File => "file",
                SinkKind::Stdout => "stdout",
                SinkKind::Nats => "nats",
                SinkKind::Loki => "loki",
            }))),
        ),
        ("rotate_every", Some(Some(q(&d(s.rotate_every))))),
        ("rotate_when_quiet", Some(Some(q(&d(s.rotate_when_quiet))))),
        ("heartbeat_every", Some(Some(q(&d(s.heartbeat_every))))),
        ("include_name", Some(Some(list(&s.include_name)))),
        ("exclude_name", Some(Some(list(&s.exclude_name)))),
        ("include_label", Some(Some(labels(&s.include_label)))),
        ("exclude_label", Some(Some(labels(&s.exclude_label)))),
        ("include_image", Some(Some(list(&s.include_image)))),
        (
            "from",
            Some(Some(q(match s.from {
                super::From::Start => "start",
                super::From::Now => "now",
            }))),
        ),
        ("metrics_addr", Some(Some(q(&s.metrics_addr.to_string())))),
        ("stop_timeout", Some(Some(q(&d(s.stop_timeout))))),
        ("max_file_size", Some(Some(s.max_file_size.to_string()))),
        ("max_files", Some(s.max_files.map(|n| n.to_string()))),
        ("checkpoint_every", Some(Some(q(&d(s.checkpoint_every))))),
        ("read_pause", Some(Some(q(&d(s.read_pause))))),
        (
            "log_format",
            Some(Some(q(match s.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }))),
        ),
        ("log_level", Some(Some(q(&s.log_level)))),
        ("nats_url", Some(Some(q(&s.nats.url)))),
        ("nats_stream", Some(Some(q(&s.nats.stream)))),
        ("nats_subject_prefix", Some(Some(q(&s.nats.subject_prefix)))),
        ("nats_creds", Some(opt_path(&s.nats.creds))),
        ("nats_ca", Some(opt_path(&s.nats.ca))),
        ("nats_replicas", Some(Some(s.nats.replicas.to_string()))),
        ("loki_url", Some(Some(q(&s.loki.url)))),
        ("loki_tenant", Some(s.loki.tenant.as_deref().map(q))),
        ("loki_username", username),
        ("loki_password", password),
        ("loki_bearer_token", token),
        ("loki_ca", Some(opt_path(&s.loki.ca))),
        (
            "loki_label",
            Some(Some(list(
                &s.loki
                    .labels
                    .iter()
                    .map(|(n, t)| format!("{n}={t}"))
                    .collect::<Vec<_>>(),
            ))),
        ),
        (
            "loki_encoding",
            Some(Some(q(match s.loki.encoding {
                super::LokiEncoding::Protobuf => "protobuf",
                super::LokiEncoding::Json => "json",
            }))),
        ),
        ("loki_batch_size", Some(Some(s.loki.batch_size.to_string()))),
        ("loki_batch_wait", Some(Some(q(&d(s.loki.batch_wait))))),
        (
            "loki_structured_metadata",
            Some(Some(s.loki.structured_metadata.to_string())),
        ),
        (
            "loki_max_line_size",
            Some(s.loki.max_line_size.map(|n| n.to_string())),
        ),
    ];
    let mut out = String::new();
    for (key, value) in values {
        let source = origins.get(key).cloned().unwrap_or(Source::Default);
        let _ = match value {
            Some(Some(v)) => writeln!(out, "{key} = {v}  # {source}"),
            Some(None) => writeln!(out, "# {key}: not set  # {source}"),
            None => writeln!(out, "# {key}: set, not shown  # {source}"),
        };
    }
    out
}
