//! A Loki push receiver for the tests and the bench: a real HTTP/1 server on loopback that
//! decodes `POST /loki/api/v1/push` as Loki does (snappy-compressed `logproto.PushRequest`,
//! or JSON), applies Loki's default limits, keeps what Loki would keep, and answers what Loki
//! would answer. Its schema is written here from Loki's `push.proto` and HTTP API, sharing
//! nothing with the sink.
//!
//! What it enforces, with Loki's error texts (400, the valid entries of the request kept, as
//! Loki does):
//! - labels: Loki's syntax `{name="value", ...}`, names `[a-zA-Z_][a-zA-Z0-9_]*`, at least one
//!   pair, no name twice, at most 15 names, names up to 1024 bytes, values up to 2048;
//! - entries: a line up to `max_line_size` (256 KiB); a timestamp not older than a week, not
//!   more than 10 minutes ahead; not more than the out-of-order window (1 h, Loki's
//!   `max_chunk_age / 2`) behind the newest entry of its stream;
//! - an entry equal to one it holds (same labels, timestamp and line) is dropped and counted as
//!   a duplicate, with a 204, as Loki does.
//!
//! It can answer a status for a while (`fail_for`), or for most requests of a while
//! (`storm`), and it records what it accepted, per stream, in order.

// Test tooling: a failed set-up step must fail the test loudly, so panicking is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use prost::Message;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::capturer::{record, Capturer, Lenient, Record};
use crate::exact::{assert_exactly_once, tail};
use crate::tls::server_certificate;
use crate::DaemonLine;

/// `logproto.PushRequest`, as Loki's `pkg/push/push.proto` declares it.
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    /// `repeated StreamAdapter streams = 1`.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct StreamAdapter {
    /// `string labels = 1`.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// `repeated EntryAdapter entries = 2`.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// `uint64 hash = 3`.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct EntryAdapter {
    /// `google.protobuf.Timestamp timestamp = 1`.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<ProtoTimestamp>,
    /// `string line = 2`.
    #[prost(string, tag = "2")]
    pub line: String,
    /// `repeated LabelPairAdapter structuredMetadata = 3`.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
    /// `repeated LabelPairAdapter parsed = 4` (set by Loki's own parsers, never by a client).
    #[prost(message, repeated, tag = "4")]
    pub parsed: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPairAdapter {
    /// `string name = 1`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `string value = 2`.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct ProtoTimestamp {
    /// `int64 seconds = 1`.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// `int32 nanos = 2`.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Loki's limits, as the receiver applies them.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `max_line_size` (Loki's default 256 KiB).
    pub max_line_size: usize,
    /// How far behind the newest entry of its stream an entry may be (`max_chunk_age / 2`).
    pub window: Duration,
    /// `reject_old_samples_max_age` (a week).
    pub max_age: Duration,
    /// `creation_grace_period` (10 minutes).
    pub grace: Duration,
    /// `max_label_names_per_series` (15).
    pub max_labels: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line_size: 256 << 10,
            window: Duration::from_secs(3600),
            max_age: Duration::from_secs(7 * 24 * 3600),
            grace: Duration::from_secs(600),
            max_labels: 15,
        }
    }
}

/// One entry the receiver accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Its stream's labels.
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub ts: u64,
    /// The line.
    pub line: String,
    /// Its structured metadata.
    pub metadata: BTreeMap<String, String>,
}

/// Counts of what the receiver saw.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Requests, per status answered.
    pub status: BTreeMap<u16, u64>,
    /// Requests with a protobuf body, and with a JSON body.
    pub protobuf: u64,
    /// Requests with a JSON body.
    pub json: u64,
    /// Entries accepted.
    pub accepted: u64,
    /// Entries dropped as equal to one held (labels, timestamp, line).
    pub duplicates: u64,
    /// Entries refused, per Loki's reason.
    pub rejected: BTreeMap<String, u64>,
    /// `X-Scope-OrgID` of the last request.
    pub tenant: Option<String>,
    /// `Authorization` of the last request.
    pub authorization: Option<String>,
    /// Requests whose body could not be decoded, or labels that did not parse: the sink's
    /// faults, in words.
    pub malformed: Vec<String>,
}

impl Stats {
    /// Requests answered with `status`.
    pub fn answered(&self, status: u16) -> u64 {
        self.status.get(&status).copied().unwrap_or(0)
    }
}

/// A status to answer for a while.
#[derive(Clone, Debug)]
struct Fault {
    status: StatusCode,
    until: Instant,
    /// Every `one_in`-th request goes through; the others get `status` (1: none does).
    one_in: u64,
    seen: u64,
}

#[derive(Default)]
struct Stream {
    entries: Vec<Accepted>,
    held: HashSet<(u64, String)>,
    newest: u64,
}

#[derive(Default)]
struct State {
    streams: BTreeMap<String, Stream>,
    stats: Stats,
    fault: Option<Fault>,
}

/// The running receiver; stopped when dropped.
pub struct LokiReceiver {
    addr: SocketAddr,
    https: bool,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LokiReceiver {
    /// A receiver with Loki's default limits.
    pub fn start() -> LokiReceiver {
        LokiReceiver::with_limits(Limits::default())
    }

    /// A receiver on a free loopback port, serving from its own thread (the tests block).
    pub fn with_limits(limits: Limits) -> LokiReceiver {
        LokiReceiver::serve(limits, SocketAddr::from(([127, 0, 0, 1], 0)), None)
    }

    /// A receiver with Loki's default limits on `addr` (for a Loki that comes up late).
    pub fn on(addr: SocketAddr) -> LokiReceiver {
        LokiReceiver::serve(Limits::default(), addr, None)
    }

    /// A receiver with Loki's default limits serving HTTPS, with a certificate for 127.0.0.1
    /// signed by a CA made in `dir` (openssl); returns it and the CA's PEM file.
    ///
    /// # Panics
    /// If openssl is missing or fails.
    pub fn https(dir: &Path) -> (LokiReceiver, PathBuf) {
        let made = server_certificate(dir);
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&made.cert)
            .expect("read the server certificate")
            .collect::<Result<_, _>>()
            .expect("parse the server certificate");
        let key = PrivateKeyDer::from_pem_file(&made.key).expect("read the server key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("the server certificate and key");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let rx = LokiReceiver::serve(
            Limits::default(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(acceptor),
        );
        (rx, made.ca)
    }

    fn serve(
        limits: Limits,
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> LokiReceiver {
        let listener = std::net::TcpListener::bind(addr).expect("bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let limits = Arc::new(limits);
        let https = tls.is_some();
        let thread = std::thread::Builder::new()
            .name("loki-receiver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        let (conn, _) = tokio::select! {
                            accepted = listener.accept() => match accepted {
                                Ok(a) => a,
                                Err(_) => continue,
                            },
                            _ = &mut stopped => break,
                        };
                        let state = shared.clone();
                        let limits = limits.clone();
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                handle(state.clone(), limits.clone(), req)
                            });
                            let http = hyper::server::conn::http1::Builder::new();
                            match tls {
                                None => {
                                    let io = hyper_util::rt::TokioIo::new(conn);
                                    let _ = http.serve_connection(io, service).await;
                                }
                                Some(acceptor) => {
                                    // A client that refuses the certificate ends here.
                                    let Ok(conn) = acceptor.accept(conn).await else {
                                        return;
                                    };
                                    let io = hyper_util::rt::TokioIo::new(conn);
                                    let _ = http.serve_connection(io, service).await;
                                }
                            }
                        });
                    }
                });
            })
            .expect("start the receiver thread");
        LokiReceiver {
            addr,
            https,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The push endpoint, for `--loki-url`.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/loki/api/v1/push", self.addr)
    }

    /// `--sink loki --loki-url <this>` and `extra`.
    pub fn flags<'a>(&'a self, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut f = vec!["--sink", "loki", "--loki-url", url];
        f.extend_from_slice(extra);
        f
    }

    /// Answers `status` (with a Loki-like text) to every push for `how_long`.
    pub fn fail_for(&self, status: u16, how_long: Duration) {
        self.storm(status, 1, how_long);
    }

    /// For `how_long`, answers `status` to every push but one in `one_in`.
    pub fn storm(&self, status: u16, one_in: u64, how_long: Duration) {
        let mut s = self.state.lock().unwrap();
        s.fault = Some(Fault {
            status: StatusCode::from_u16(status).expect("a status code"),
            until: Instant::now() + how_long,
            one_in: one_in.max(1),
            seen: 0,
        });
    }

    /// Ends a `fail_for` or a `storm` now.
    pub fn recover(&self) {
        self.state.lock().unwrap().fault = None;
    }

    /// What it saw so far.
    pub fn stats(&self) -> Stats {
        self.state.lock().unwrap().stats.clone()
    }

    /// Every stream's labels.
    pub fn label_sets(&self) -> Vec<BTreeMap<String, String>> {
        let s = self.state.lock().unwrap();
        s.streams
            .values()
            .filter_map(|st| st.entries.first().map(|e| e.labels.clone()))
            .collect()
    }

    /// Every entry accepted for container `id` (by its structured metadata, or its record),
    /// in the order accepted within each Loki stream.
    pub fn entries(&self, id: &str) -> Vec<Accepted> {
        let s = self.state.lock().unwrap();
        s.streams
            .values()
            .flat_map(|st| st.entries.iter())
            .filter(|e| {
                e.metadata.get("container_id").map(String::as_str) == Some(id)
                    || e.line.contains(&format!("\"container_id\":\"{id}\""))
            })
            .cloned()
            .collect()
    }

    /// Entries accepted for container `id`.
    pub fn count(&self, id: &str) -> usize {
        self.entries(id).len()
    }

    /// Waits until it holds at least `n` entries of container `id`, or `limit` passes; the
    /// count then.
    pub async fn wait_for(&self, id: &str, n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let have = self.count(id);
            if have >= n || Instant::now() >= deadline {
                return have;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What it holds for container `id`, judged entry by entry against the output contract.
    pub fn stored(&self, id: &str) -> Stored {
        let mut out = Stored::default();
        for e in self.entries(id) {
            out.judge(id, e);
        }
        out
    }
}

impl Drop for LokiReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the receiver holds for one container.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    /// Every entry.
    pub entries: Vec<Accepted>,
    /// The record of each entry whose line is one record.
    pub records: Vec<Record>,
    /// Entries whose line is not one record.
    pub torn: usize,
    /// Where an entry breaks the contract, in words.
    pub faults: Vec<String>,
}

impl Stored {
    fn judge(&mut self, id: &str, e: Accepted) {
        let at = format!("entry {} at {}", self.entries.len(), e.ts);
        let parsed = serde_json::from_str::<serde_json::Value>(&e.line).ok();
        match parsed.as_ref().and_then(record) {
            None => {
                self.torn += 1;
                self.faults
                    .push(format!("{at}: not one record: {:?}", e.line));
            }
            Some(r) => {
                if !(e.line.starts_with('{') && e.line.ends_with('}')) {
                    self.faults
                        .push(format!("{at}: the line is not exactly one JSON object"));
                }
                if r.container_id != id {
                    self.faults
                        .push(format!("{at}: the record is of {}", r.container_id));
                }
                if let Some(m) = e.metadata.get("container_id") {
                    if *m != r.container_id {
                        self.faults
                            .push(format!("{at}: structured metadata container_id {m}"));
                    }
                }
                if e.labels.contains_key("container_id") {
                    self.faults
                        .push(format!("{at}: the container id is a label"));
                }
                for (label, want) in [("stream", &r.stream), ("container_name", &r.container_name)]
                {
                    if let Some(v) = e.labels.get(label) {
                        if v != want {
                            self.faults
                                .push(format!("{at}: label {label}={v:?}, the record's {want:?}"));
                        }
                    }
                }
                let ns = pos_ts(&r.pos);
                if ns != Some(e.ts) {
                    self.faults.push(format!(
                        "{at}: the entry's timestamp is not the record's pos {}",
                        r.pos
                    ));
                }
                self.records.push(r);
            }
        }
        self.entries.push(e);
    }

    /// The records as the exactness helpers take them.
    pub fn lenient(&self) -> Lenient {
        Lenient {
            records: self.records.clone(),
            torn: self.torn,
            unterminated: 0,
        }
    }
}

/// The nanoseconds of a `pos` (`<ns>.<n>`).
fn pos_ts(pos: &str) -> Option<u64> {
    pos.split_once('.')?.0.parse().ok()
}

/// Asserts that every entry held for the container keeps the contract ([`Stored::faults`]),
/// then ([`assert_exactly_once`]) that the records are each of the daemon's lines `truth`
/// exactly once.
pub fn assert_received_exactly_once(
    truth: &[DaemonLine],
    stored: &Stored,
    cap: &Capturer,
    context: &str,
) {
    if !stored.faults.is_empty() {
        panic!(
            "{context}: {} of {} entries break the contract; the first ones:\n{}\n--- capturer log (last 40 lines) ---\n{}",
            stored.faults.len(),
            stored.entries.len(),
            stored.faults.iter().take(5).cloned().collect::<Vec<_>>().join("\n"),
            tail(&cap.log_text(), 40)
        );
    }
    assert_exactly_once(truth, &stored.lenient(), cap, context);
}

async fn handle(
    state: Arc<Mutex<State>>,
    limits: Arc<Limits>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, text) = if parts.method != hyper::Method::POST
        || parts.uri.path() != "/loki/api/v1/push"
    {
        (StatusCode::NOT_FOUND, "404 page not found\n".to_owned())
    } else {
        let mut s = state.lock().unwrap();
        s.stats.tenant = header("x-scope-orgid");
        s.stats.authorization = header("authorization");
        let now = Instant::now();
        let fault = match &mut s.fault {
            Some(f) if now < f.until => {
                f.seen += 1;
                (f.one_in == 1 || f.seen % f.one_in != 0).then_some(f.status)
            }
            _ => None,
        };
        match fault {
            Some(status) => {
                let text = if status == StatusCode::TOO_MANY_REQUESTS {
                    "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting to ingest '1000' lines totaling '100000' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased"
                } else {
                    "rpc error: code = Unavailable desc = no healthy ingesters"
                };
                (status, format!("{text}\n"))
            }
            None => {
                let json =
                    header("content-type").is_some_and(|c| c.starts_with("application/json"));
                let decoded = if json {
                    s.stats.json += 1;
                    decode_json(&body)
                } else {
                    s.stats.protobuf += 1;
                    decode_protobuf(&body)
                };
                match decoded {
                    Err(e) => {
                        s.stats.malformed.push(e.clone());
                        (StatusCode::BAD_REQUEST, format!("{e}\n"))
                    }
                    Ok(streams) => ingest(&mut s, &limits, streams),
                }
            }
        }
    };
    let mut s = state.lock().unwrap();
    *s.stats.status.entry(status.as_u16()).or_default() += 1;
    drop(s);
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    Ok(response)
}

/// A decoded stream: its label text (protobuf) or pairs (JSON), and its entries.
struct Decoded {
    labels: Result<BTreeMap<String, String>, String>,
    text: String,
    entries: Vec<(u64, String, BTreeMap<String, String>)>,
}

fn decode_protobuf(body: &[u8]) -> Result<Vec<Decoded>, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    let request = PushRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))?;
    Ok(request
        .streams
        .into_iter()
        .map(|s| Decoded {
            labels: parse_labels(&s.labels),
            text: s.labels,
            entries: s
                .entries
                .into_iter()
                .map(|e| {
                    let t = e.timestamp.unwrap_or_default();
                    let ns = (t.seconds.max(0) as u64) * 1_000_000_000 + t.nanos.max(0) as u64;
                    let meta = e
                        .structured_metadata
                        .into_iter()
                        .map(|p| (p.name, p.value))
                        .collect();
                    (ns, e.line, meta)
                })
                .collect(),
        })
        .collect())
}

fn decode_json(body: &[u8]) -> Result<Vec<Decoded>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("JSON: {e}"))?;
    let streams = v
        .get("streams")
        .and_then(|s| s.as_array())
        .ok_or("JSON: no streams array")?;
    let mut out = Vec::new();
    for s in streams {
        let labels = s
            .get("stream")
            .and_then(|l| l.as_object())
            .ok_or("JSON: a stream without its stream object")?;
        let mut pairs = BTreeMap::new();
        for (k, v) in labels {
            let v = v
                .as_str()
                .ok_or("JSON: a label value that is not a string")?;
            pairs.insert(k.clone(), v.to_owned());
        }
        let values = s
            .get("values")
            .and_then(|v| v.as_array())
            .ok_or("JSON: a stream without values")?;
        let mut entries = Vec::new();
        for v in values {
            let a = v.as_array().ok_or("JSON: a value that is not an array")?;
            if !(2..=3).contains(&a.len()) {
                return Err(format!("JSON: a value of {} elements", a.len()));
            }
            let ts: u64 = a[0]
                .as_str()
                .ok_or("JSON: a timestamp that is not a string")?
                .parse()
                .map_err(|e| format!("JSON: a timestamp that is not nanoseconds: {e}"))?;
            let line = a[1].as_str().ok_or("JSON: a line that is not a string")?;
            let mut meta = BTreeMap::new();
            if let Some(m) = a.get(2) {
                for (k, v) in m
                    .as_object()
                    .ok_or("JSON: metadata that is not an object")?
                {
                    let v = v
                        .as_str()
                        .ok_or("JSON: a metadata value that is not a string")?;
                    meta.insert(k.clone(), v.to_owned());
                }
            }
            entries.push((ts, line.to_owned(), meta));
        }
        let text = format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let labels = check_names(pairs);
        out.push(Decoded {
            labels,
            text,
            entries,
        });
    }
    Ok(out)
}

/// Parses Loki's label string, `{name="value", ...}` (PromQL's selector syntax, equality
/// only).
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let bad = |why: &str| format!("error parsing labels '{text}': {why}");
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| bad("not in braces"))?;
    let mut pairs = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(bad("expected ="));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('"') {
            return Err(bad("expected a quoted value"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(bad("unterminated quoted string")),
                Some('"') => break,
                Some('\n') => return Err(bad("newline in a quoted string")),
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some('r') => value.push('\r'),
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some(c) => return Err(bad(&format!("unknown escape \\{c}"))),
                    None => return Err(bad("unterminated escape")),
                },
                Some(c) => value.push(c),
            }
        }
        pairs.push((name, value));
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some(',') => continue,
            Some(c) => return Err(bad(&format!("unexpected {c:?}"))),
        }
    }
    let mut map = BTreeMap::new();
    for (name, value) in pairs {
        if map.insert(name.clone(), value).is_some() {
            return Err(format!("duplicate label name: {name}"));
        }
    }
    check_names(map)
}

/// Loki's rules for label names.
fn check_names(map: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    for name in map.keys() {
        let mut c = name.chars();
        let ok = c
            .next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_');
        if !ok {
            return Err(format!("invalid label name: {name:?}"));
        }
    }
    Ok(map)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Validates and stores; the answer, as Loki's distributor and ingester give it.
fn ingest(s: &mut State, limits: &Limits, streams: Vec<Decoded>) -> (StatusCode, String) {
    let mut errors: Vec<String> = Vec::new();
    let mut reject = |s: &mut State, reason: &str, n: u64, text: String| {
        *s.stats.rejected.entry(reason.to_owned()).or_default() += n;
        errors.push(text);
    };
    let now = now_ns();
    for d in streams {
        let n = d.entries.len() as u64;
        let labels = match d.labels {
            Err(e) => {
                s.stats.malformed.push(e.clone());
                reject(s, "invalid_labels", n, e);
                continue;
            }
            Ok(l) => l,
        };
        if labels.is_empty() {
            reject(
                s,
                "missing_labels",
                n,
                "error at least one label pair is required per stream".to_owned(),
            );
            continue;
        }
        if labels.len() > limits.max_labels {
            let text = format!(
                "entry for stream '{}' has {} label names; limit {}",
                d.text,
                labels.len(),
                limits.max_labels
            );
            reject(s, "max_label_names_per_series", n, text);
            continue;
        }
        if let Some((k, v)) = labels
            .iter()
            .find(|(k, v)| k.len() > 1024 || v.len() > 2048)
        {
            let (reason, text) = if k.len() > 1024 {
                (
                    "label_name_too_long",
                    format!("stream '{}' has label name too long: '{k}'", d.text),
                )
            } else {
                (
                    "label_value_too_long",
                    format!("stream '{}' has label value too long: '{v}'", d.text),
                )
            };
            reject(s, reason, n, text);
            continue;
        }
        let key = labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(",");
        for (ts, line, metadata) in d.entries {
            let oldest = now.saturating_sub(limits.max_age.as_nanos() as u64);
            if ts < oldest {
                let text = format!("entry for stream '{}' has timestamp too old: {ts}, oldest acceptable timestamp is: {oldest}", d.text);
                reject(s, "greater_than_max_sample_age", 1, text);
                continue;
            }
            if ts > now + limits.grace.as_nanos() as u64 {
                let text = format!("entry for stream '{}' has timestamp too new: {ts}", d.text);
                reject(s, "too_far_in_future", 1, text);
                continue;
            }
            if line.len() > limits.max_line_size {
                let text = format!("Max entry size '{}' bytes exceeded for stream '{}' while adding an entry with length '{}' bytes", limits.max_line_size, d.text, line.len());
                reject(s, "line_too_long", 1, text);
                continue;
            }
            let stream = s.streams.entry(key.clone()).or_default();
            let window = limits.window.as_nanos() as u64;
            if stream.newest > window && ts < stream.newest - window {
                let text = format!("entry with timestamp {ts} ignored, reason: 'entry too far behind, oldest acceptable timestamp is: {}'", stream.newest - window);
                reject(s, "too_far_behind", 1, text);
                continue;
            }
            if !stream.held.insert((ts, line.clone())) {
                s.stats.duplicates += 1;
                continue;
            }
            stream.newest = stream.newest.max(ts);
            stream.entries.push(Accepted {
                labels: labels.clone(),
                ts,
                line,
                metadata,
            });
            s.stats.accepted += 1;
        }
    }
    match errors.len() {
        0 => (StatusCode::NO_CONTENT, String::new()),
        1 => (StatusCode::BAD_REQUEST, format!("{}\n", errors[0])),
        n => (
            StatusCode::BAD_REQUEST,
            format!("{}\n(and {} more errors)\n", errors[0], n - 1),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_as_loki_parses_them() {
        let l = parse_labels("{a=\"1\", b_2=\"x\\\"y\\\\z\\n\"}").unwrap();
        assert_eq!(l["a"], "1");
        assert_eq!(l["b_2"], "x\"y\\z\n");
        assert!(parse_labels("{}").unwrap().is_empty());
        for bad in [
            "a=\"1\"",
            "{9a=\"1\"}",
            "{a=1}",
            "{a=\"1\" b=\"2\"}",
            "{a=\"1\", a=\"2\"}",
            "{a=\"x}",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }

    fn push(
        s: &mut State,
        limits: &Limits,
        labels: &str,
        entries: &[(u64, &str)],
    ) -> (StatusCode, String) {
        let d = Decoded {
            labels: parse_labels(labels),
            text: labels.to_owned(),
            entries: entries
                .iter()
                .map(|(t, l)| (*t, (*l).to_owned(), BTreeMap::new()))
                .collect(),
        };
        ingest(s, limits, vec![d])
    }

    #[test]
    fn ingest_keeps_what_loki_keeps_and_refuses_what_it_refuses() {
        let limits = Limits {
            max_line_size: 10,
            ..Limits::default()
        };
        let mut s = State::default();
        let now = now_ns();
        let hour = 3_600_000_000_000;
        let (st, _) = push(
            &mut s,
            &limits,
            "{a=\"1\"}",
            &[(now, "x"), (now, "y"), (now, "x")],
        );
        assert_eq!(st, StatusCode::NO_CONTENT);
        assert_eq!(
            (s.stats.accepted, s.stats.duplicates),
            (2, 1),
            "same ts, different lines: both kept"
        );
        let (st, text) = push(
            &mut s,
            &limits,
            "{a=\"1\"}",
            &[(now, "z"), (now, "0123456789ab")],
        );
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(
            text.starts_with("Max entry size '10' bytes exceeded"),
            "{text}"
        );
        assert_eq!(
            s.stats.accepted, 3,
            "the valid entry of a refused request is kept"
        );
        let (st, text) = push(
            &mut s,
            &limits,
            "{a=\"1\"}",
            &[(now - hour - 1_000_000_000, "old")],
        );
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(text.contains("entry too far behind"), "{text}");
        let (st, text) = push(&mut s, &limits, "{}", &[(now, "x")]);
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(text.contains("at least one label pair"), "{text}");
        let (st, _) = push(&mut s, &limits, "{a=\"1\"}", &[(now + 2 * hour, "x")]);
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(s.stats.rejected["too_far_in_future"], 1);
    }
}
