//! Settings: flags, `LOG_CAPTURER_*` environment variables, a TOML file and defaults.
//!
//! The command line is declared with clap ([`cli`]), which also reads the environment; the
//! file is read with serde ([`file`]); every value, whatever its source, is checked in
//! [`resolve`], and [`check`] adds what `check-config` checks beyond that (paths usable).
//!
//! Precedence: flags > environment > file > defaults. Every key has one spelling per source
//! (`--rotate-every`, `LOG_CAPTURER_ROTATE_EVERY`, `rotate_every`; the one exception is
//! `log_level`, whose variable is `LOG_CAPTURER_LOG`). A repeatable key takes its values from
//! the highest source that sets it (lists are not merged across sources); in the environment
//! its values are comma-separated. A bad value names its key and its source.

pub mod check;
pub mod cli;
mod file;
mod resolve;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;
#[cfg(test)]
use clap::CommandFactory;

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

/// The format of the capturer's own logs (on stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
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
    /// How long a stream must have read nothing before a due rotation retires it.
    pub rotate_when_quiet: Duration,
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
    /// Rotated output files kept per container besides the live one (`None`: all).
    pub max_files: Option<u64>,
    /// How often flushed cursors are persisted.
    pub checkpoint_every: Duration,
    /// The longest a busy reader stays off the poller before its next read (zero: never);
    /// `crate::pace` decides how long.
    pub read_pause: Duration,
    /// The format of its own logs.
    pub log_format: LogFormat,
    /// The level of its own logs: an `EnvFilter` directive.
    pub log_level: String,
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

/// Where a setting came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Its default.
    Default,
    /// A default taken from a variable that is not a setting (`STATE_DIRECTORY`).
    DefaultFrom(&'static str),
    /// The `--config` file, by path.
    File(String),
    /// An environment variable, by name.
    Env(String),
    /// A flag, as spelled.
    Flag(String),
    /// Something else, as named (the flag or variable that named the file).
    Named(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::DefaultFrom(var) => write!(f, "default, from ${var}"),
            Source::File(path) => write!(f, "file {path}"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Named(what) => f.write_str(what),
        }
    }
}

/// Every key and whether it takes one value or a list. The clap argument, the file's key and
/// the variable (`LOG_CAPTURER_<KEY>`) of each are spelled from it (checked by a test).
pub const KEYS: &[(&str, Kind)] = &[
    ("docker_host", Kind::One),
    ("output", Kind::One),
    ("state_dir", Kind::One),
    ("sink", Kind::One),
    ("rotate_every", Kind::One),
    ("rotate_when_quiet", Kind::One),
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
    ("max_files", Kind::One),
    ("checkpoint_every", Kind::One),
    ("read_pause", Kind::One),
    ("log_format", Kind::One),
    ("log_level", Kind::One),
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

/// One value or a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One value.
    One,
    /// Repeatable: a list (comma-separated in the environment).
    Many,
}

/// A key's value(s) as given, and where they came from.
#[derive(Clone, Debug)]
pub(crate) struct Raw {
    values: Vec<String>,
    source: Source,
}

/// Where each key's value came from, for `check-config --print`.
pub type Origins = BTreeMap<&'static str, Source>;

/// The variable of a key.
pub fn env_var(key: &str) -> String {
    match key {
        "log_level" => "LOG_CAPTURER_LOG".to_owned(),
        k => format!("LOG_CAPTURER_{}", k.to_uppercase()),
    }
}

impl Settings {
    /// The settings of `run` (or `check-config`) from its matches, the file they name, and
    /// `env` for the defaults taken from the environment (`DOCKER_HOST`, `STATE_DIRECTORY`);
    /// with where each came from.
    pub fn from_matches(
        m: &ArgMatches,
        env: &BTreeMap<String, String>,
    ) -> Result<(Settings, Origins), ConfigError> {
        let mut given: BTreeMap<&str, Raw> = BTreeMap::new();
        if let Some(path) = m.get_one::<PathBuf>("config") {
            let named_by = match m.value_source("config") {
                Some(ValueSource::EnvVariable) => "LOG_CAPTURER_CONFIG".to_owned(),
                _ => "--config".to_owned(),
            };
            given.extend(file::read(path, &named_by)?);
        }
        for (key, kind) in KEYS {
            let values: Vec<String> = match m.get_many::<String>(key) {
                Some(v) => v.cloned().collect(),
                None => continue,
            };
            let raw = match m.value_source(key) {
                Some(ValueSource::CommandLine) => Raw {
                    values,
                    source: Source::Flag(format!("--{}", key.replace('_', "-"))),
                },
                Some(ValueSource::EnvVariable) => Raw {
                    values: match kind {
                        Kind::One => values,
                        Kind::Many => values
                            .iter()
                            .flat_map(|v| v.split(','))
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    },
                    source: Source::Env(env_var(key)),
                },
                _ => continue,
            };
            given.insert(key, raw);
        }
        let settings = Settings::from_raw(&given, env)?;
        let system = resolve::system_state_dir(env).is_some();
        let origins = KEYS
            .iter()
            .map(|(key, _)| {
                let source = match given.get(key) {
                    Some(raw) => raw.source.clone(),
                    None => match *key {
                        "docker_host" if env.contains_key("DOCKER_HOST") => {
                            Source::Env("DOCKER_HOST".into())
                        }
                        "output" | "state_dir" if system => Source::DefaultFrom("STATE_DIRECTORY"),
                        _ => Source::Default,
                    },
                };
                (*key, source)
            })
            .collect();
        Ok((settings, origins))
    }

    /// For tests: the settings from the flags after `run` and `env`, whose `LOG_CAPTURER_*`
    /// entries are set in the process environment for clap to read while it parses (one parse
    /// at a time); a command-line error is a [`ConfigError`] too.
    #[cfg(test)]
    pub fn load(args: &[String], env: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let vars: Vec<&String> = env
            .keys()
            .filter(|k| k.starts_with("LOG_CAPTURER_"))
            .collect();
        for var in &vars {
            std::env::set_var(var, &env[*var]);
        }
        let argv = ["log-capturer", "run"]
            .into_iter()
            .map(str::to_owned)
            .chain(args.iter().cloned());
        let parsed = cli::Cli::command().try_get_matches_from(argv);
        for var in &vars {
            std::env::remove_var(var);
        }
        let arguments = Source::Named("arguments".into());
        let m = parsed.map_err(|e| err("command line", &arguments, &e.to_string()))?;
        let (_, sub) = m
            .subcommand()
            .ok_or_else(|| err("command line", &arguments, "no subcommand"))?;
        Settings::from_matches(sub, env).map(|(s, _)| s)
    }
}

fn err(key: &str, source: &Source, problem: &str) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        origin: source.to_string(),
        problem: problem.to_owned(),
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
        assert_eq!(s.rotate_when_quiet, Duration::from_millis(250));
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
            ("rotate_every", "flag --rotate-every")
        );
        let e = load(&[], &[("LOG_CAPTURER_SINK", "kafka")]).unwrap_err();
        assert_eq!(e.key, "sink");
        assert!(e.to_string().contains("LOG_CAPTURER_SINK"));
        let e = load(&["--bogus", "1"], &[]).unwrap_err();
        assert!(e.problem.contains("--bogus"), "{e}");
        let e = load(&["--from"], &[]).unwrap_err();
        assert!(e.problem.contains("a value is required"), "{e}");
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
        use super::resolve::parse_duration;
        assert_eq!(
            parse_duration("1h 30m"),
            Ok(Duration::from_secs(5400)),
            "humantime"
        );
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn every_key_is_a_flag_a_variable_and_a_file_key() {
        let cmd = cli::Cli::command();
        let run = cmd.find_subcommand("run").unwrap();
        let check = cmd.find_subcommand("check-config").unwrap();
        for (key, kind) in KEYS {
            for sub in [run, check] {
                let arg = sub
                    .get_arguments()
                    .find(|a| a.get_id() == key)
                    .unwrap_or_else(|| panic!("no argument {key}"));
                assert_eq!(arg.get_long(), Some(key.replace('_', "-").as_str()));
                assert_eq!(
                    arg.get_env().and_then(|e| e.to_str()),
                    Some(env_var(key).as_str())
                );
                let many = matches!(arg.get_action(), clap::ArgAction::Append);
                assert_eq!(many, *kind == Kind::Many, "{key}");
            }
        }
        let keys: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
        assert_eq!(file::FILE_KEYS, keys.as_slice());
    }

    #[test]
    fn the_file_refuses_unknown_keys_naming_them_and_the_file() {
        let dir = std::env::temp_dir().join(format!("lc-config-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("typo.toml");
        let f = file.to_str().unwrap();
        std::fs::write(&file, "sink = \"file\"\nrotate_evry = \"1s\"\n").unwrap();
        let e = load(&["--config", f], &[]).unwrap_err();
        assert_eq!(e.key, "rotate_evry", "{e}");
        assert!(e.origin.contains("typo.toml"), "{e}");
        assert!(e.problem.contains("rotate_every"), "a suggestion: {e}");
        std::fs::write(&file, "sink = [\"file\"]\n").unwrap();
        let e = load(&["--config", f], &[]).unwrap_err();
        assert_eq!(e.key, "sink", "{e}");
        std::fs::write(&file, "heartbeat_every = { a = 1 }\n").unwrap();
        let e = load(&["--config", f], &[]).unwrap_err();
        assert_eq!(e.key, "heartbeat_every", "{e}");
        std::fs::write(
            &file,
            "max_files = 3\nloki_structured_metadata = false\nrotate_every = \"1h 30m\"\n",
        )
        .unwrap();
        let s = load(&["--config", f], &[]).unwrap();
        assert_eq!(s.max_files, Some(3));
        assert!(!s.loki.structured_metadata);
        assert_eq!(s.rotate_every, Duration::from_secs(5400));
        let e = load(&["--config", "/nonexistent/c.toml"], &[]).unwrap_err();
        assert_eq!((e.key.as_str(), e.origin.as_str()), ("config", "--config"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_system_install_keeps_state_and_output_under_state_directory() {
        let s = load(
            &[],
            &[("STATE_DIRECTORY", "/var/lib/log-capturer:/var/lib/other")],
        )
        .unwrap();
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/log-capturer"));
        assert_eq!(s.output, PathBuf::from("/var/lib/log-capturer/capture"));
        let s = load(
            &["--output", "/srv/logs"],
            &[("STATE_DIRECTORY", "/var/lib/lc")],
        )
        .unwrap();
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/lc"));
        assert_eq!(s.output, PathBuf::from("/srv/logs"));
        let s = load(
            &["--state-dir", "/st"],
            &[("STATE_DIRECTORY", "/var/lib/lc")],
        )
        .unwrap();
        assert_eq!(s.state_dir, PathBuf::from("/st"));
    }

    #[test]
    fn log_settings_and_max_files() {
        let s = load(&[], &[]).unwrap();
        assert_eq!(
            (s.log_format, s.log_level.as_str()),
            (LogFormat::Text, "info")
        );
        assert_eq!(s.max_files, None, "keeps every rotated file by default");
        let s = load(
            &[
                "--log-format",
                "json",
                "--log-level",
                "debug",
                "--max-files",
                "2",
            ],
            &[("LOG_CAPTURER_LOG", "warn")],
        )
        .unwrap();
        assert_eq!(
            (s.log_format, s.log_level.as_str()),
            (LogFormat::Json, "debug")
        );
        assert_eq!(s.max_files, Some(2));
        let s = load(
            &[],
            &[("LOG_CAPTURER_LOG", "info,log_capturer::sink=debug")],
        )
        .unwrap();
        assert_eq!(s.log_level, "info,log_capturer::sink=debug");
        for (args, key) in [
            (["--log-format", "xml"], "log_format"),
            (["--log-level", "loud=???"], "log_level"),
            (["--max-files", "lots"], "max_files"),
        ] {
            let e = load(&args, &[]).unwrap_err();
            assert_eq!(e.key, key, "{args:?}: {e}");
        }
    }

    #[test]
    fn the_defaults_given_explicitly_change_nothing() {
        let explicit = load(
            &[
                "--docker-host",
                "unix:///var/run/docker.sock",
                "--output",
                "./capture",
                "--state-dir",
                "./capture/.state",
                "--sink",
                "file",
                "--rotate-every",
                "5m",
                "--rotate-when-quiet",
                "250ms",
                "--heartbeat-every",
                "30s",
                "--from",
                "start",
                "--metrics-addr",
                "127.0.0.1:9440",
                "--stop-timeout",
                "10s",
                "--max-file-size",
                "128MiB",
                "--checkpoint-every",
                "1s",
                "--read-pause",
                "1ms",
                "--log-format",
                "text",
                "--log-level",
                "info",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(explicit, load(&[], &[]).unwrap());
    }
}
