//! NATS JetStream for the end-to-end tests of `--sink nats` (issue 14).
//!
//! - [`NatsServer`]: a real `nats-server` with JetStream, run by the test on a loopback port
//!   of its own with a file store in a temporary directory; it can be SIGKILLed and started
//!   again on the same port and store (the file store survives).
//! - [`NatsTarget`]: where the capturer publishes (URL, stream, subject prefix), the flags that
//!   say so, and a reader of every message the stream holds for one container, in stream
//!   order. The reader turns each payload back into the file sink's [`Record`], so the oracle
//!   of [`crate::exact`] judges it, and checks what only a message has: its subject
//!   (`<prefix>.<container_id>.<stream>`) and its `Nats-Msg-Id` (`<container_id>.<stream>.<pos>`).
//!
//! Like [`crate::docker`], a test without `nats-server` skips with a message, unless `CI` is
//! set: then it fails.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use crate::capturer::{free_addr, record, Capturer, Lenient, Record};
use crate::exact::{assert_exactly_once, tail};
use crate::tls::server_certificate;
use crate::DaemonLine;

/// The capturer's default stream name (`--nats-stream`).
pub const DEFAULT_STREAM: &str = "LOGS";
/// The capturer's default subject prefix (`--nats-subject-prefix`).
pub const DEFAULT_PREFIX: &str = "logs";
/// The duplicate window of a stream the capturer creates (and of one a test creates for it).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// How long a start of the server may take before the test fails.
const START_LIMIT: Duration = Duration::from_secs(20);
/// How long the reader waits for the next message it was promised before it gives up.
const READ_WAIT: Duration = Duration::from_secs(10);

/// The `nats-server` executable: `NATS_SERVER` if set, else the first on `PATH` or in the
/// `sbin` directories (Debian installs it in `/usr/sbin`, which a user's `PATH` may lack).
fn find_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// A `nats-server -js` run by a test, on a loopback port and a file store of its own.
///
/// Dropping it SIGKILLs the server and deletes its directory.
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
    /// The temporary directory: `store/` (JetStream's file store) and `nats.log`.
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
    /// The server's certificate and key, when it requires TLS ([`NatsServer::use_tls`]).
    tls: Option<(PathBuf, PathBuf)>,
    /// A configuration file (`-c`), e.g. operator mode ([`NatsServer::use_operator`]).
    config: Option<PathBuf>,
}

impl NatsServer {
    /// A server for the test `name`, not started yet ([`NatsServer::start`] starts it): a free
    /// loopback port and an empty store. `None` (test skipped, with a message) when there is
    /// no `nats-server` and `CI` is unset.
    ///
    /// # Panics
    /// When there is no `nats-server` and `CI` is set: in CI a missing server is a failure.
    pub fn prepare(name: &str) -> Option<NatsServer> {
        let Some(bin) = find_binary() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "CI is set and there is no nats-server (on PATH, in /usr/sbin, or NATS_SERVER): run scripts/testbed.sh, which installs it"
                );
            }
            eprintln!("SKIPPED: no nats-server; run scripts/testbed.sh (it installs one), or set CI to fail instead");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("lc-nats-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("store")).expect("create the NATS store directory");
        Some(NatsServer {
            bin,
            port: free_addr().port(),
            dir,
            child: None,
            starts: 0,
            tls: None,
            config: None,
        })
    }

    /// [`NatsServer::prepare`], then [`NatsServer::start`].
    pub fn launch(name: &str) -> Option<NatsServer> {
        let mut server = NatsServer::prepare(name)?;
        server.start();
        Some(server)
    }

    /// Starts the server (again: same port, same store) and waits until it accepts clients
    /// with JetStream on.
    ///
    /// # Panics
    /// If it is running already, exits during start-up, or does not answer in time.
    pub fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "nats-server is running: kill it first"
        );
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the nats-server log");
        let err = log.try_clone().expect("clone the log handle");
        // Client port only: monitoring (-m 0) off; cluster, gateway, leaf node, websocket and
        // MQTT ports are off unless configured.
        let mut command = Command::new(&self.bin);
        if let Some(config) = &self.config {
            // First: the flags below override what it says of the same settings.
            command.arg("-c").arg(config);
        }
        command
            .arg("-js")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-m", "0"])
            .arg("-sd")
            .arg(self.store_dir());
        if let Some((cert, key)) = &self.tls {
            command
                .arg("--tls")
                .arg("--tlscert")
                .arg(cert)
                .arg("--tlskey")
                .arg(key);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the client port answers with an `INFO` that says JetStream is on.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "nats-server exited at start #{} with {status} (port {}):\n{}",
                    self.starts,
                    self.port,
                    tail(&self.log_text(), 30)
                );
            }
            if self.jetstream_answers() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not answer on port {} within {START_LIMIT:?} (start #{}):\n{}",
                self.port,
                self.starts,
                tail(&self.log_text(), 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the client port accepts a connection and greets with JetStream on.
    fn jetstream_answers(&self) -> bool {
        use std::io::{BufRead, BufReader};
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).is_ok()
            && line.starts_with("INFO ")
            && line.contains("\"jetstream\":true")
    }

    /// SIGKILLs the server and reaps it: what it acknowledged stays in its file store.
    ///
    /// # Panics
    /// If it is not running.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("nats-server running");
        // Child::kill sends SIGKILL.
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether it runs (started and not killed; checks that it did not exit by itself).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `nats://127.0.0.1:<port>` (`tls://` once [`NatsServer::use_tls`]): the same across
    /// restarts.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Makes the server require TLS from its next start, with a certificate for 127.0.0.1
    /// signed by a CA made here (openssl); returns the CA's PEM file, which clients need.
    ///
    /// # Panics
    /// If openssl is missing or fails.
    pub fn use_tls(&mut self) -> PathBuf {
        let made = server_certificate(&self.dir.join("tls"));
        self.tls = Some((made.cert, made.key));
        made.ca
    }

    /// Makes the server read the configuration file `config` (`-c`) from its next start; the
    /// flags the harness passes (port, JetStream, store, TLS) take precedence over it.
    pub fn use_config(&mut self, config: PathBuf) {
        self.config = Some(config);
    }

    /// The server's temporary directory (deleted with it), for the files a test makes for it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The port, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// JetStream's file store (`-sd`).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("nats.log")
    }

    /// The server's log, all starts appended, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the capturer publishes: the server's URL, the stream and the subject prefix.
#[derive(Clone, Debug)]
pub struct NatsTarget {
    /// `nats://host:port`.
    pub url: String,
    /// The stream name.
    pub stream: String,
    /// The subject prefix `P`: subjects are `P.<container_id>.<stream>`.
    pub prefix: String,
    /// The CA file that verifies a TLS server (`--nats-ca`).
    pub ca: Option<String>,
    /// The credentials file (user JWT and seed) to connect with (`--nats-creds`).
    pub creds: Option<String>,
}

impl NatsTarget {
    /// The capturer's defaults (stream `LOGS`, prefix `logs`) on the server at `url`.
    pub fn new(url: &str) -> NatsTarget {
        NatsTarget::named(url, DEFAULT_STREAM, DEFAULT_PREFIX)
    }

    /// Stream `stream` and prefix `prefix` on the server at `url`.
    pub fn named(url: &str, stream: &str, prefix: &str) -> NatsTarget {
        NatsTarget {
            url: url.to_owned(),
            stream: stream.to_owned(),
            prefix: prefix.to_owned(),
            ca: None,
            creds: None,
        }
    }

    /// The same, verifying the server's TLS certificate with the CA in `ca` (the tests' own
    /// client and the capturer's `--nats-ca`).
    pub fn with_ca(mut self, ca: &Path) -> NatsTarget {
        self.ca = Some(ca.display().to_string());
        self
    }

    /// The same, connecting as the user of the credentials file `creds` (the tests' own client
    /// and the capturer's `--nats-creds`).
    pub fn with_creds(mut self, creds: &Path) -> NatsTarget {
        self.creds = Some(creds.display().to_string());
        self
    }

    /// The capturer's flags that publish here, then `extra`: `--sink nats --nats-url URL`, and
    /// `--nats-stream` and `--nats-subject-prefix` only where they are not the defaults (so a
    /// target with the defaults tests the defaults).
    pub fn flags<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut flags = vec!["--sink", "nats", "--nats-url", self.url.as_str()];
        if self.stream != DEFAULT_STREAM {
            flags.extend(["--nats-stream", self.stream.as_str()]);
        }
        if self.prefix != DEFAULT_PREFIX {
            flags.extend(["--nats-subject-prefix", self.prefix.as_str()]);
        }
        if let Some(ca) = &self.ca {
            flags.extend(["--nats-ca", ca.as_str()]);
        }
        if let Some(creds) = &self.creds {
            flags.extend(["--nats-creds", creds.as_str()]);
        }
        flags.extend_from_slice(extra);
        flags
    }

    /// The subject of a line of `container_id` on `stream` (`stdout`, `stderr`, `console`).
    pub fn subject(&self, container_id: &str, stream: &str) -> String {
        format!("{}.{container_id}.{stream}", self.prefix)
    }

    /// Every subject of `container_id`: `P.<container_id>.>`.
    pub fn filter(&self, container_id: &str) -> String {
        format!("{}.{container_id}.>", self.prefix)
    }

    /// A JetStream context on a fresh connection (dropped with it). One connection per call:
    /// the tests block their thread between calls (a capturer's start, a sleep), which would
    /// starve a long-lived client's background task.
    pub async fn context(&self) -> Result<jetstream::Context, String> {
        let mut options =
            async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5));
        if let Some(ca) = &self.ca {
            options = options
                .add_root_certificates(PathBuf::from(ca))
                .require_tls(true);
        }
        if let Some(creds) = &self.creds {
            options = options
                .credentials_file(creds)
                .await
                .map_err(|e| format!("credentials file {creds}: {e}"))?;
        }
        let client = options
            .connect(self.url.as_str())
            .await
            .map_err(|e| format!("connect to {}: {e}", self.url))?;
        Ok(jetstream::new(client))
    }

    /// The stream's info (config and state).
    pub async fn info(&self) -> Result<stream::Info, String> {
        let js = self.context().await?;
        let stream = js
            .get_stream(&self.stream)
            .await
            .map_err(|e| format!("stream {}: {e}", self.stream))?;
        Ok(stream.cached_info().clone())
    }

    /// Creates the stream as the capturer would (file storage, subjects `P.>`, duplicate window
    /// 10 minutes), except that it holds at most `max_bytes` (-1: no limit) and refuses what
    /// does not fit (discard new).
    pub async fn create_stream(&self, max_bytes: i64) -> Result<stream::Info, String> {
        let js = self.context().await?;
        let config = stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.prefix)],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            max_bytes,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        let mut stream = js
            .create_stream(config)
            .await
            .map_err(|e| format!("create stream {}: {e}", self.stream))?;
        stream
            .info()
            .await
            .cloned()
            .map_err(|e| format!("stream {}: {e}", self.stream))
    }

    /// Changes the stream's `max_bytes` (-1: no limit), the rest of its config as it is.
    pub async fn set_max_bytes(&self, max_bytes: i64) -> Result<stream::Info, String> {
        let mut config = self.info().await?.config;
        config.max_bytes = max_bytes;
        let js = self.context().await?;
        js.update_stream(config)
            .await
            .map_err(|e| format!("update stream {}: {e}", self.stream))
    }

    /// How many messages the stream holds on the subjects of `container_id`.
    pub async fn count(&self, container_id: &str) -> Result<u64, String> {
        let js = self.context().await?;
        let stream = js
            .get_stream(&self.stream)
            .await
            .map_err(|e| format!("stream {}: {e}", self.stream))?;
        count_on(&stream, &self.filter(container_id)).await
    }

    /// Waits until the stream holds at least `n` messages of `container_id`, or `limit`
    /// passes; then one second more, so that a message published twice after the last one is
    /// seen too. An unreachable server counts as none. Returns the last count.
    pub async fn wait_for(&self, container_id: &str, n: usize, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            let have = self.count(container_id).await.unwrap_or(0);
            if have >= n as u64 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.count(container_id).await.unwrap_or(0)
    }

    /// Every message the stream holds on the subjects of `container_id`, in stream order,
    /// judged ([`Stored`]).
    ///
    /// # Panics
    /// If the stream cannot be read (no server, no stream, a message promised and not sent).
    pub async fn read(&self, container_id: &str) -> Stored {
        self.try_read(container_id)
            .await
            .unwrap_or_else(|e| panic!("reading {} from NATS: {e}", self.filter(container_id)))
    }

    /// Like [`NatsTarget::read`], with an error instead of a panic.
    pub async fn try_read(&self, container_id: &str) -> Result<Stored, String> {
        let js = self.context().await?;
        let stream = js
            .get_stream(&self.stream)
            .await
            .map_err(|e| format!("stream {}: {e}", self.stream))?;
        let filter = self.filter(container_id);
        let mut out = Stored::default();
        // An ordered consumer on an empty filter would wait forever: count first.
        let total = count_on(&stream, &filter).await?;
        if total == 0 {
            return Ok(out);
        }
        // Ephemeral, no acks, in stream order; each message says how many are still pending.
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.clone(),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("ordered consumer on {filter}: {e}"))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| format!("messages of {filter}: {e}"))?;
        loop {
            let next = tokio::time::timeout(READ_WAIT, messages.next())
                .await
                .map_err(|_| {
                    format!(
                        "no message within {READ_WAIT:?} after {} of at least {total} on {filter}",
                        out.messages.len()
                    )
                })?;
            let Some(next) = next else {
                return Err(format!(
                    "the consumer ended after {} messages",
                    out.messages.len()
                ));
            };
            let m = next.map_err(|e| format!("a message of {filter}: {e}"))?;
            let (seq, pending) = {
                let info = m.info().map_err(|e| format!("message info: {e}"))?;
                (info.stream_sequence, info.pending)
            };
            let msg_id = m
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned());
            out.judge(
                self,
                container_id,
                Message {
                    seq,
                    subject: m.subject.to_string(),
                    msg_id,
                    payload: m.payload.to_vec(),
                },
            );
            if pending == 0 {
                return Ok(out);
            }
        }
    }
}

/// Messages in `stream` on subjects matching `filter`.
async fn count_on(stream: &stream::Stream, filter: &str) -> Result<u64, String> {
    let mut subjects = stream
        .info_with_subjects(filter)
        .await
        .map_err(|e| format!("subjects of {filter}: {e}"))?;
    let mut total = 0u64;
    while let Some(item) = subjects.next().await {
        let (_, n) = item.map_err(|e| format!("subjects of {filter}: {e}"))?;
        total += n as u64;
    }
    Ok(total)
}

/// One message as the reader found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its stream sequence.
    pub seq: u64,
    /// Its subject.
    pub subject: String,
    /// Its `Nats-Msg-Id` header, if it has one.
    pub msg_id: Option<String>,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// What a stream holds for one container, in stream order, judged message by message.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    /// Every message.
    pub messages: Vec<Message>,
    /// The record of each message whose payload is one record.
    pub records: Vec<Record>,
    /// Messages whose payload is not one record.
    pub torn: usize,
    /// Where a message breaks the contract, in words: its payload is not exactly one JSON
    /// record, or its subject or `Nats-Msg-Id` does not match its record.
    pub faults: Vec<String>,
}

impl Stored {
    /// Adds message `m` of `container_id` read from `target`, judged.
    fn judge(&mut self, target: &NatsTarget, container_id: &str, m: Message) {
        let at = format!("message {} on {}", m.seq, m.subject);
        let parsed = serde_json::from_slice::<serde_json::Value>(&m.payload).ok();
        match parsed.as_ref().and_then(record) {
            None => {
                self.torn += 1;
                let shown: String = String::from_utf8_lossy(&m.payload)
                    .chars()
                    .take(200)
                    .collect();
                self.faults
                    .push(format!("{at}: the payload is not one record: {shown:?}"));
            }
            Some(r) => {
                // Exactly the file sink's JSON object: no newline, nothing around it.
                if m.payload.first() != Some(&b'{') || m.payload.last() != Some(&b'}') {
                    self.faults.push(format!(
                        "{at}: the payload is not exactly one JSON object (whitespace or a newline around it)"
                    ));
                }
                if r.container_id != container_id {
                    self.faults.push(format!(
                        "{at}: the record is of container {}",
                        r.container_id
                    ));
                }
                let subject = target.subject(&r.container_id, &r.stream);
                if m.subject != subject {
                    self.faults
                        .push(format!("{at}: the record's subject is {subject}"));
                }
                let id = format!("{}.{}.{}", r.container_id, r.stream, r.pos);
                if m.msg_id.as_deref() != Some(id.as_str()) {
                    self.faults.push(format!(
                        "{at}: Nats-Msg-Id {:?}, the record's is {id:?}",
                        m.msg_id
                    ));
                }
                self.records.push(r);
            }
        }
        self.messages.push(m);
    }

    /// These messages with each stream's records sorted by position; and how many records were
    /// not after the one before them in their stream. A publish that fails while later ones
    /// of its subject are stored (a full stream, a leader change) leaves them out of order
    /// in the stream (docs/nats.md): judged here by position, once, not by place.
    pub fn sorted_by_position(&self) -> (Stored, usize) {
        let key = |r: &Record| {
            let (ts, n) = r.pos.split_once('.').unwrap_or((&r.pos, "0"));
            (
                r.stream.clone(),
                ts.parse::<u64>().unwrap_or(0),
                n.parse::<u64>().unwrap_or(0),
            )
        };
        let mut last: std::collections::HashMap<String, (u64, u64)> = Default::default();
        let mut out_of_order = 0;
        for r in &self.records {
            let (stream, ts, n) = key(r);
            let before = last.insert(stream, (ts, n));
            if before.is_some_and(|b| b >= (ts, n)) {
                out_of_order += 1;
            }
        }
        let mut records = self.records.clone();
        records.sort_by_key(key);
        let sorted = Stored {
            messages: self.messages.clone(),
            records,
            torn: self.torn,
            faults: self.faults.clone(),
        };
        (sorted, out_of_order)
    }

    /// The records as the exactness helpers take them: a message that is not one record
    /// counts as torn; nothing is ever unterminated.
    pub fn lenient(&self) -> Lenient {
        Lenient {
            records: self.records.clone(),
            torn: self.torn,
            unterminated: 0,
        }
    }
}

/// Asserts that every message of `stored` keeps the message contract (subject, `Nats-Msg-Id`,
/// payload: [`Stored::faults`]) and then, by [`assert_exactly_once`], that the records hold
/// each of the daemon's lines `truth` exactly once. `context` says what the capture went
/// through.
pub fn assert_published_exactly_once(
    truth: &[DaemonLine],
    stored: &Stored,
    cap: &Capturer,
    context: &str,
) {
    if !stored.faults.is_empty() {
        panic!(
            "{context}: {} of {} messages break the message contract; the first ones:\n{}\n--- capturer log (last 40 lines) ---\n{}",
            stored.faults.len(),
            stored.messages.len(),
            stored.faults.iter().take(5).cloned().collect::<Vec<_>>().join("\n"),
            tail(&cap.log_text(), 40)
        );
    }
    assert_exactly_once(truth, &stored.lenient(), cap, context);
}
