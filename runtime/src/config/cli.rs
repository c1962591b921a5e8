//! The command line, declared with clap: the subcommands, and one flag per setting with its
//! `LOG_CAPTURER_*` variable. Every setting is taken as text here (its id is its key, e.g.
//! `rotate_every`) and checked by [`super::resolve`], so a bad value names its key and its
//! source the same way whether it came from a flag, the environment or the file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The version line: the crate's version and the commit it was built from (`build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LOG_CAPTURER_COMMIT"),
    ")"
);

/// The rules every subcommand's long help ends with.
macro_rules! after_help {
    () => {
        "\
Settings: every setting is a flag of `run`, `check-config` and `audit`, a variable LOG_CAPTURER_<KEY>
(lists comma-separated) and a key of the --config TOML file (the flag's name with
underscores, e.g. rotate_every). Precedence: flags > environment > file > defaults. A bad
setting names its key and its source, and exits 2.

Its own logs go to stderr: --log-format text|json, --log-level or LOG_CAPTURER_LOG (an
EnvFilter directive such as `info` or `info,log_capturer::sink=debug`; the flag wins
over the variable, which wins over the file's log_level; default info).

Defaults for a system install: when $STATE_DIRECTORY is set (systemd's StateDirectory=),
cursors go to its first path and the file sink's output to <that path>/capture; otherwise
the output is ./capture and the cursors OUTPUT/.state.

Exit status: 0 after a graceful stop; 1 when the daemon cannot be reached at start-up, a
path cannot be used, or the stop timeout passes; 2 for a bad setting; 130 when a second
SIGINT or SIGTERM cuts a graceful stop short."
    };
}

const AFTER_HELP: &str = after_help!();

const AUDIT_AFTER_HELP: &str = "\
It judges every container the output or the state directory knows that the selectors
(--include-name, --exclude-name, --include-label, --container) select, and names the
containers the daemon lists that the capture does not know. Lines written after a
container's persisted cursor are pending, not lost.

Exit status: 0 when every judged container is exact, 1 when a difference is found, 2 for a
bad argument, 3 when the output, the state or the daemon cannot be read.";

const TOP_AFTER_HELP: &str = concat!(
    "Every setting, with its variable and default: log-capturer run --help.\n\n",
    after_help!()
);

/// Captures the logs of every container on a Docker host, exactly once.
#[derive(Debug, Parser)]
#[command(
    name = "log-capturer",
    version = VERSION,
    arg_required_else_help = true,
    after_long_help = TOP_AFTER_HELP,
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. A new one is a variant here and an arm in `main`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture the logs of every selected container, exactly once, into JSON lines; stop
    /// with SIGINT or SIGTERM (a second one exits at once, status 130).
    #[command(after_long_help = AFTER_HELP)]
    Run(RunArgs),
    /// Check the settings as `run` would (values, globs, label selectors, paths, files) without
    /// connecting anywhere; exit 0 if `run` would accept them, 2 if not.
    #[command(name = "check-config", after_long_help = AFTER_HELP)]
    CheckConfig(CheckArgs),
    /// Compare the file output with what the daemon still holds, per container and stream:
    /// lost, duplicated, reordered and changed lines (docs/audit.md). Read-only.
    #[command(after_long_help = AUDIT_AFTER_HELP)]
    Audit(AuditArgs),
    /// Print a completion script for SHELL to standard output.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `audit`: the capture's settings (where its output, its state and its daemon are, which
/// containers it selects), and the audit's own flags.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The settings of the capture to judge, as `run` takes them.
    #[command(flatten)]
    pub run: RunArgs,
    /// Judge only this container (a name, a full id or an id prefix; repeatable).
    #[arg(long = "container", value_name = "NAME_OR_ID")]
    pub containers: Vec<String>,
    /// The report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `check-config`: the settings of `run`, and `--print`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The settings, as `run` takes them.
    #[command(flatten)]
    pub run: RunArgs,
    /// Print the effective settings as a TOML file, each with where it came from
    /// (default, file, env, flag).
    #[arg(long)]
    pub print: bool,
}

/// The settings of `run`. The fields are read by id from the matches (`super::KEYS`), with
/// where each came from; the struct is their declaration and their help.
#[allow(dead_code)]
#[derive(Debug, Args)]
#[command(next_help_heading = "Settings")]
pub struct RunArgs {
    /// TOML file with the keys below (the flags' names with underscores, e.g. rotate_every);
    /// an unknown key is an error.
    #[arg(
        long,
        env = "LOG_CAPTURER_CONFIG",
        value_name = "FILE",
        hide_env_values = true
    )]
    pub config: Option<PathBuf>,
    /// The daemon: unix:///path, tcp://host:port or http://host:port [default: $DOCKER_HOST,
    /// else unix:///var/run/docker.sock].
    #[arg(
        long,
        env = "LOG_CAPTURER_DOCKER_HOST",
        value_name = "URL",
        hide_env_values = true
    )]
    pub docker_host: Option<String>,
    /// Output directory of the file sink [default: ./capture, or $STATE_DIRECTORY/capture when
    /// $STATE_DIRECTORY is set].
    #[arg(
        long,
        env = "LOG_CAPTURER_OUTPUT",
        value_name = "DIR",
        hide_env_values = true
    )]
    pub output: Option<String>,
    /// Where cursors are kept [default: the first path of $STATE_DIRECTORY (systemd's
    /// StateDirectory=) when set, else OUTPUT/.state].
    #[arg(
        long,
        env = "LOG_CAPTURER_STATE_DIR",
        value_name = "DIR",
        hide_env_values = true
    )]
    pub state_dir: Option<String>,
    /// Where lines go: file, stdout, nats or loki [default: file].
    #[arg(
        long,
        env = "LOG_CAPTURER_SINK",
        value_name = "SINK",
        hide_env_values = true
    )]
    pub sink: Option<String>,
    /// Reopen a log stream this long after it began delivering new lines (e.g. 50ms, 30s,
    /// "1h 30m"); a stream that delivers nothing is never cut short by it [default: 5m].
    #[arg(
        long,
        env = "LOG_CAPTURER_ROTATE_EVERY",
        value_name = "DURATION",
        hide_env_values = true
    )]
    pub rotate_every: Option<String>,
    /// A due rotation waits until the stream has read no frame for this long: a stream that
    /// is delivering is not stalled, and a backlog is read to its end (0: rotate when due)
    /// [default: 250ms].
    #[arg(
        long,
        env = "LOG_CAPTURER_ROTATE_WHEN_QUIET",
        value_name = "DURATION",
        hide_env_values = true
    )]
    pub rotate_when_quiet: Option<String>,
    /// Stall watchdog interval; a reopened stream still waiting for its first line gets twice
    /// as long after each stall [default: 30s].
    #[arg(
        long,
        env = "LOG_CAPTURER_HEARTBEAT_EVERY",
        value_name = "DURATION",
        hide_env_values = true
    )]
    pub heartbeat_every: Option<String>,
    /// Only containers whose name matches (repeatable).
    #[arg(
        long,
        env = "LOG_CAPTURER_INCLUDE_NAME",
        value_name = "GLOB",
        hide_env_values = true
    )]
    pub include_name: Vec<String>,
    /// Never containers whose name matches (repeatable).
    #[arg(
        long,
        env = "LOG_CAPTURER_EXCLUDE_NAME",
        value_name = "GLOB",
        hide_env_values = true
    )]
    pub exclude_name: Vec<String>,
    /// Only containers with this label (repeatable).
    #[arg(
        long,
        env = "LOG_CAPTURER_INCLUDE_LABEL",
        value_name = "K[=V]",
        hide_env_values = true
    )]
    pub include_label: Vec<String>,
    /// Never containers with this label (repeatable).
    #[arg(
        long,
        env = "LOG_CAPTURER_EXCLUDE_LABEL",
        value_name = "K[=V]",
        hide_env_values = true
    )]
    pub exclude_label: Vec<String>,
    /// Only containers whose image matches (repeatable).
    #[arg(
        long,
        env = "LOG_CAPTURER_INCLUDE_IMAGE",
        value_name = "GLOB",
        hide_env_values = true
    )]
    pub include_image: Vec<String>,
    /// Where a container without a saved cursor starts: start or now [default: start].
    #[arg(
        long,
        env = "LOG_CAPTURER_FROM",
        value_name = "WHERE",
        hide_env_values = true
    )]
    pub from: Option<String>,
    /// Address of the metrics and debug endpoints [default: 127.0.0.1:9440].
    #[arg(
        long,
        env = "LOG_CAPTURER_METRICS_ADDR",
        value_name = "ADDR",
        hide_env_values = true
    )]
    pub metrics_addr: Option<String>,
    /// Graceful stop deadline, then exit 1 [default: 10s].
    #[arg(
        long,
        env = "LOG_CAPTURER_STOP_TIMEOUT",
        value_name = "DURATION",
        hide_env_values = true
    )]
    pub stop_timeout: Option<String>,
    /// Rotate a container's output file at this size: bytes, or with KiB, MiB, GiB (powers of
    /// 1024) or KB, MB, GB (powers of 1000) [default: 128MiB].
    #[arg(
        long,
        env = "LOG_CAPTURER_MAX_FILE_SIZE",
        value_name = "BYTES",
        hide_env_values = true
    )]
    pub max_file_size: Option<String>,
    /// Keep at most N rotated files per container besides the live one (<id>.jsonl.1 is the
    /// oldest, the highest number the newest); the oldest is deleted, but only once every line
    /// it holds is covered by a persisted cursor [default: keep all].
    #[arg(
        long,
        env = "LOG_CAPTURER_MAX_FILES",
        value_name = "N",
        hide_env_values = true
    )]
    pub max_files: Option<String>,
    /// Persist flushed cursors this often [default: 1s].
    #[arg(
        long,
        env = "LOG_CAPTURER_CHECKPOINT_EVERY",
        value_name = "DURATION",
        hide_env_values = true
    )]
    pub checkpoint_every: Option<String>,
    /// The longest a busy stream waits between reads, so each read takes many frames at once;
    /// it waits less the more the last wake-up found, not at all in a backlog (0 never waits)
    /// [default: 1ms].
    #[arg(
        long,
        env = "LOG_CAPTURER_READ_PAUSE",
        value_name = "DURATION",
        hide_env_values = true
    )]
    pub read_pause: Option<String>,
    /// Format of its own logs on stderr: text or json [default: text].
    #[arg(
        long,
        env = "LOG_CAPTURER_LOG_FORMAT",
        value_name = "FORMAT",
        hide_env_values = true
    )]
    pub log_format: Option<String>,
    /// Level of its own logs: a level (error, warn, info, debug, trace) or an EnvFilter
    /// directive (info,log_capturer::sink=debug); the flag wins over LOG_CAPTURER_LOG,
    /// which wins over the file's log_level [default: info].
    #[arg(
        long,
        env = "LOG_CAPTURER_LOG",
        value_name = "DIRECTIVE",
        hide_env_values = true
    )]
    pub log_level: Option<String>,
    /// NATS server(s) for --sink nats: nats://host:port, tls://host:port for TLS,
    /// comma-separated for a cluster [default: nats://127.0.0.1:4222].
    #[arg(
        long,
        env = "LOG_CAPTURER_NATS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub nats_url: Option<String>,
    /// JetStream stream, created if missing [default: LOGS].
    #[arg(
        long,
        env = "LOG_CAPTURER_NATS_STREAM",
        value_name = "NAME",
        hide_env_values = true
    )]
    pub nats_stream: Option<String>,
    /// Lines go to P.<container_id>.<stream> [default: logs].
    #[arg(
        long,
        env = "LOG_CAPTURER_NATS_SUBJECT_PREFIX",
        value_name = "P",
        hide_env_values = true
    )]
    pub nats_subject_prefix: Option<String>,
    /// NATS credentials file (JWT and NKey seed).
    #[arg(
        long,
        env = "LOG_CAPTURER_NATS_CREDS",
        value_name = "FILE",
        hide_env_values = true
    )]
    pub nats_creds: Option<String>,
    /// CA certificate (PEM) that signed the NATS server's TLS certificate.
    #[arg(
        long,
        env = "LOG_CAPTURER_NATS_CA",
        value_name = "FILE",
        hide_env_values = true
    )]
    pub nats_ca: Option<String>,
    /// Replicas of the stream if the capturer creates it, 1 to 5; an existing stream is used
    /// as it is [default: 1].
    #[arg(
        long,
        env = "LOG_CAPTURER_NATS_REPLICAS",
        value_name = "N",
        hide_env_values = true
    )]
    pub nats_replicas: Option<String>,
    /// Loki push endpoint for --sink loki [default: http://127.0.0.1:3100/loki/api/v1/push].
    #[arg(
        long,
        env = "LOG_CAPTURER_LOKI_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub loki_url: Option<String>,
    /// Tenant, sent as X-Scope-OrgID.
    #[arg(
        long,
        env = "LOG_CAPTURER_LOKI_TENANT",
        value_name = "ID",
        hide_env_values = true
    )]
    pub loki_tenant: Option<String>,
    /// Basic auth user (with --loki-password).
    #[arg(
        long,
        env = "LOG_CAPTURER_LOKI_USERNAME",
        value_name = "U",
        hide_env_values = true
    )]
    pub loki_username: Option<String>,
    /// Basic auth password.
    #[arg(
        long,
        env = "LOG_CAPTURER_LOKI_PASSWORD",
        value_name = "P",
        hide_env_values = true
    )]
    pub loki_password: Option<String>,
    /// Authorization: Bearer T (not with basic auth).
    #[arg(
        long,
        env = "LOG_CAPTURER_LOKI_BEARER_TOKEN",
        value_name = "T",
        hide_env_values = true
    )]
    pub loki_bearer_token: Option<String>,
    /// CA certificate (PEM) trusted besides the system's, for https.
    #[arg(
        long,
        env = "LOG_CAPTURER_LOKI_CA",
        value_name = "FILE",
        hide_env_values = true
    )]
    pub loki_ca: Option<String>,
    /// A stream label (repeatable; replaces the defaults); TEMPLATE may hold {container_name}
    /// {image} {stream} {host} {label:KEY} [default: container_name, stream, host, and
    /// compose_service when the container has com.docker.compose.service].
    #[arg(
        long,
        env = "LOG_CAPTURER_LOKI_LABEL",
        value_name = "NAME=TEMPLATE",
        hide_env_values = true
    )]
    pub loki_label: Vec<String>,
    /// Push body: protobuf (snappy-compressed logproto) or json [default: protobuf].
    #[arg(
        long,
        env = "LOG_CAPTURER_LOKI_ENCODING",
        value_name = "ENCODING",
        hide_env_values = true
    )]
    pub loki_encoding: Option<String>,
    /// A batch closes at this size [default: 1MiB].
    #[arg(
        long,
        env = "LOG_CAPTURER_LOKI_BATCH_SIZE",
        value_name = "BYTES",
        hide_env_values = true
    )]
    pub loki_batch_size: Option<String>,
    /// ... or this long after its first line; a checkpoint closes every batch too
    /// [default: 1s].
    #[arg(
        long,
        env = "LOG_CAPTURER_LOKI_BATCH_WAIT",
        value_name = "DURATION",
        hide_env_values = true
    )]
    pub loki_batch_wait: Option<String>,
    /// The container id as structured metadata on each entry: true or false (false for Loki
    /// before 3.0) [default: true].
    #[arg(
        long,
        env = "LOG_CAPTURER_LOKI_STRUCTURED_METADATA",
        value_name = "BOOL",
        hide_env_values = true
    )]
    pub loki_structured_metadata: Option<String>,
    /// Cut longer records to this size, marked "truncated":true; Loki refuses lines over its
    /// max_line_size, 256KB by default [default: sent whole].
    #[arg(
        long,
        env = "LOG_CAPTURER_LOKI_MAX_LINE_SIZE",
        value_name = "BYTES",
        hide_env_values = true
    )]
    pub loki_max_line_size: Option<String>,
}
