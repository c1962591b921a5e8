//! The Loki sink: batches of entries pushed to `POST /loki/api/v1/push`, one stream (label
//! set) per request, snappy-compressed protobuf or JSON (docs/loki.md).
//!
//! Each entry is one line: its timestamp the daemon's, its text the file sink's JSON record
//! (with `pos`), its structured metadata the container id. Loki drops an entry whose labels,
//! timestamp and line equal one it holds: a line read again after a crash is the same record,
//! so it is dropped; two different lines stamped the same nanosecond differ by `pos`, so both
//! are kept.
//!
//! Lines go to a lane per label set. A lane's batch closes at `--loki-batch-size` bytes, after
//! `--loki-batch-wait`, or at a checkpoint (`sync` makes everything durable); a lane has at
//! most one request in flight, so Loki receives each stream in order. A 2xx makes a batch
//! durable. A 429, a 5xx, a timeout or a connection error is retried, without limit, after a
//! wait that doubles per failure with jitter; meanwhile `write`/`sync` report the error to the
//! delivery loop (which counts it, logs it once per kind and backs off too), and memory stays
//! bounded: while Loki fails, and past [`held_limit`] bytes, `write` waits, the queue fills and
//! readers wait. Any other 4xx is Loki refusing lines for good: a batch refused for some of its
//! entries is halved until they are alone (Loki keeps the others, and drops their resend as
//! identical), then they are logged with Loki's text, counted in
//! `log_capturer_sink_rejected_lines_total{reason}`, and skipped (except 401, 403, 404 and
//! 407, which say the configuration is wrong, not the lines: retried). With
//! `--loki-max-line-size`, longer records are cut to it before Loki sees them.

mod labels;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capturer_core::{Cursor, Stream};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;

use self::labels::{Container, LabelSet, Templates};
use self::wire::Entry;
use super::Output;
use crate::config::{LokiAuth, LokiEncoding, LokiSettings};
use crate::docker::{self, Endpoint};
use crate::metrics::Metrics;
use crate::output::{cut_record, record_position};
use crate::state::Mark;

/// How long one push may take (connect, send, answer) before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The first wait of a lane after a failure; it doubles per failure in a row, up to
/// [`MAX_BACKOFF`], and is drawn between half and all of that (jitter).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The most of Loki's error text kept for the log.
const ERROR_TEXT: usize = 1024;

/// Bytes the sink holds (taken, batched, in flight) before `write` waits for Loki.
fn held_limit(batch_size: usize) -> usize {
    (4 * batch_size).max(8 << 20)
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What a request needs besides its batch, shared by every request.
struct Target {
    uri: Uri,
    tenant: Option<HeaderValue>,
    auth: Option<HeaderValue>,
    encoding: LokiEncoding,
    metadata: bool,
}

/// A closed or filling batch of one lane.
struct Batch {
    entries: Vec<Entry>,
    bytes: usize,
    opened: Instant,
}

/// The lines of one label set.
struct Lane {
    labels: Arc<LabelSet>,
    open: Option<Batch>,
    ready: VecDeque<Batch>,
    /// A request of this lane is in flight.
    busy: bool,
    /// Failures in a row, and no request before this.
    failures: u32,
    not_before: Option<Instant>,
}

/// What a container's labels are made of, and its lane per stream.
struct Known {
    name: String,
    image: String,
    docker_labels: HashMap<String, String>,
    id: Bytes,
    lanes: [Option<Arc<str>>; 3],
}

/// How a push ended.
enum Outcome {
    /// 2xx: durable.
    Stored,
    /// Retry later: a 429, a 5xx, a timeout, no connection, a bad configuration.
    Again(io::Error),
    /// A 413 for a batch of several entries: send it in two halves.
    Split,
    /// Refused for good.
    Rejected {
        status: StatusCode,
        reason: &'static str,
        text: String,
    },
}

/// A finished request: its lane, its batch back, and how it ended.
type Done = (Arc<str>, Batch, Outcome);

/// The Loki output.
pub struct LokiOutput {
    rt: tokio::runtime::Runtime,
    settings: LokiSettings,
    docker_host: String,
    docker: Option<bollard::Docker>,
    client: HttpClient,
    endpoint: Arc<Target>,
    templates: Templates,
    metrics: Arc<Metrics>,
    /// Taken, not yet put into lanes (a container's labels may need an inspect first).
    raw: VecDeque<(Arc<str>, Bytes)>,
    known: HashMap<Arc<str>, Known>,
    lanes: HashMap<Arc<str>, Lane>,
    tasks: JoinSet<Done>,
    /// Bytes taken and not yet stored or refused.
    held: usize,
    /// `--loki-max-line-size`, if set.
    max_line: Option<usize>,
    /// Rejection reasons already logged (each rejected batch is logged; after the first of a
    /// reason, at debug level).
    logged: Vec<&'static str>,
}

impl LokiOutput {
    /// An output for `settings`; `docker_host` is asked for the labels of a container when a
    /// template needs them.
    pub fn new(
        settings: LokiSettings,
        docker_host: String,
        metrics: Arc<Metrics>,
    ) -> io::Result<LokiOutput> {
        // Connection tasks run while the sink thread waits, on the runtime's own worker.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sink-loki")
            .enable_all()
            .build()?;
        let client = {
            let _enter = rt.enter();
            http_client(&settings)?
        };
        let invalid = |what: &str, e: &dyn std::fmt::Display| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
        };
        let uri: Uri = settings.url.parse().map_err(|e| invalid("loki_url", &e))?;
        let tenant = match &settings.tenant {
            Some(t) => Some(HeaderValue::from_str(t).map_err(|e| invalid("loki_tenant", &e))?),
            None => None,
        };
        let auth = match &settings.auth {
            LokiAuth::None => None,
            LokiAuth::Basic { username, password } => {
                use base64::Engine as _;
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|e| invalid("loki_password", &e))?;
                v.set_sensitive(true);
                Some(v)
            }
            LokiAuth::Bearer(token) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|e| invalid("loki_bearer_token", &e))?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let endpoint = Arc::new(Target {
            uri,
            tenant,
            auth,
            encoding: settings.encoding,
            metadata: settings.structured_metadata,
        });
        let templates = Templates::new(&settings.labels, labels::host_name());
        let max_line = settings
            .max_line_size
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
        Ok(LokiOutput {
            rt,
            settings,
            docker_host,
            docker: None,
            client,
            endpoint,
            templates,
            metrics,
            raw: VecDeque::new(),
            known: HashMap::new(),
            lanes: HashMap::new(),
            tasks: JoinSet::new(),
            held: 0,
            max_line,
            logged: Vec::new(),
        })
    }

    fn batch_size(&self) -> usize {
        usize::try_from(self.settings.batch_size).unwrap_or(usize::MAX)
    }

    /// What the labels of container `id` are made of: its name and image from its first
    /// record, its Docker labels from an inspect if a template needs them.
    fn learn(&mut self, id: &Arc<str>, first: &[u8]) -> io::Result<()> {
        if self.known.contains_key(id) {
            return Ok(());
        }
        let record: serde_json::Value = serde_json::from_slice(first).unwrap_or_default();
        let field = |k: &str| {
            record
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let docker_labels = if self.templates.need_docker_labels() {
            self.docker_labels(id)?
        } else {
            HashMap::new()
        };
        self.known.insert(
            id.clone(),
            Known {
                name: field("container_name"),
                image: field("image"),
                docker_labels,
                id: Bytes::copy_from_slice(id.as_bytes()),
                lanes: Default::default(),
            },
        );
        Ok(())
    }

    /// The Docker labels of container `id`; none if it is gone.
    fn docker_labels(&mut self, id: &str) -> io::Result<HashMap<String, String>> {
        let not_connected = |e: bollard::errors::Error| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!("the Docker daemon, for a container's labels: {e}"),
            )
        };
        let docker = match &self.docker {
            Some(d) => d.clone(),
            None => {
                let endpoint = Endpoint::parse(&self.docker_host);
                let d = self
                    .rt
                    .block_on(docker::connect(&endpoint))
                    .map_err(not_connected)?;
                self.docker = Some(d.clone());
                d
            }
        };
        let meta = self
            .rt
            .block_on(docker::inspect(&docker, id))
            .map_err(not_connected)?;
        Ok(meta.map(|m| m.labels.clone()).unwrap_or_default())
    }

    /// The lane of `stream` of container `id`, made on first use.
    fn lane_of(&mut self, id: &Arc<str>, stream: Stream) -> Option<Arc<str>> {
        let known = self.known.get_mut(id)?;
        if let Some(key) = &known.lanes[stream.index()] {
            return Some(key.clone());
        }
        let c = Container {
            name: &known.name,
            image: &known.image,
            labels: &known.docker_labels,
        };
        let set = self.templates.render(&c, stream.as_str());
        let key: Arc<str> = String::from_utf8_lossy(&set.text).into();
        self.lanes.entry(key.clone()).or_insert_with(|| Lane {
            labels: Arc::new(set),
            open: None,
            ready: VecDeque::new(),
            busy: false,
            failures: 0,
            not_before: None,
        });
        known.lanes[stream.index()] = Some(key.clone());
        Some(key)
    }

    /// Puts what was taken into the lanes' batches, in order; closes the batches that are
    /// full.
    fn route(&mut self) -> io::Result<()> {
        let max = self.batch_size();
        while let Some((id, bytes)) = self.raw.pop_front() {
            let first_end = bytes
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(bytes.len());
            if let Err(e) = self.learn(&id, &bytes[..first_end]) {
                self.raw.push_front((id, bytes));
                return Err(e);
            }
            let mut start = 0;
            let mut cached: Option<(Stream, Arc<str>)> = None;
            while start < bytes.len() {
                let end = bytes[start..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |i| start + i);
                let mut record = bytes.slice(start..end);
                start = end + 1;
                if record.is_empty() {
                    continue;
                }
                if let Some(max) = self.max_line {
                    if record.len() > max {
                        let whole = record.len();
                        match cut_record(&record, max) {
                            Some(cut) => {
                                tracing::debug!(container = %id, bytes = whole, max, "a record over --loki-max-line-size, cut with \"truncated\":true");
                                self.held = self.held.saturating_sub(whole - cut.len());
                                record = Bytes::from(cut);
                            }
                            None => {
                                tracing::warn!(container = %id, bytes = whole, max, "a record that --loki-max-line-size cannot hold even cut; sent whole");
                            }
                        }
                    }
                }
                let Some((stream, pos)) = record_position(&record) else {
                    tracing::error!(container = %id, "a record without its position; not pushed");
                    self.held = self.held.saturating_sub(record.len() + 1);
                    continue;
                };
                let key = match &cached {
                    Some((s, k)) if *s == stream => k.clone(),
                    _ => match self.lane_of(&id, stream) {
                        Some(k) => {
                            cached = Some((stream, k.clone()));
                            k
                        }
                        None => continue,
                    },
                };
                let Some(known) = self.known.get(&id) else {
                    continue;
                };
                let entry = Entry {
                    ts: pos.ts.0,
                    line: record,
                    id: known.id.clone(),
                };
                let Some(lane) = self.lanes.get_mut(&key) else {
                    continue;
                };
                let batch = lane.open.get_or_insert_with(|| Batch {
                    entries: Vec::new(),
                    bytes: 0,
                    opened: Instant::now(),
                });
                batch.bytes += entry.line.len() + 1;
                batch.entries.push(entry);
                if batch.bytes >= max {
                    if let Some(full) = lane.open.take() {
                        lane.ready.push_back(full);
                    }
                }
            }
        }
        Ok(())
    }

    /// Closes the open batches older than `wait` (all of them with `Duration::ZERO`).
    fn close_batches(&mut self, wait: Duration) {
        for lane in self.lanes.values_mut() {
            if lane
                .open
                .as_ref()
                .is_some_and(|b| b.opened.elapsed() >= wait)
            {
                if let Some(b) = lane.open.take() {
                    lane.ready.push_back(b);
                }
            }
        }
    }

    /// Starts a request for every idle lane with a closed batch whose wait is over.
    fn launch(&mut self) {
        let now = Instant::now();
        for (key, lane) in &mut self.lanes {
            if lane.busy || lane.not_before.is_some_and(|t| t > now) {
                continue;
            }
            let Some(batch) = lane.ready.pop_front() else {
                continue;
            };
            lane.busy = true;
            let client = self.client.clone();
            let endpoint = self.endpoint.clone();
            let labels = lane.labels.clone();
            let key = key.clone();
            self.tasks.spawn_on(
                async move {
                    let outcome = push(&client, &endpoint, &labels, &batch).await;
                    (key, batch, outcome)
                },
                self.rt.handle(),
            );
        }
    }

    /// Books a finished request; the error to report if it is to be retried.
    fn finish(&mut self, (key, batch, outcome): Done) -> Option<io::Error> {
        let lane = self.lanes.get_mut(&key)?;
        lane.busy = false;
        match outcome {
            Outcome::Stored => {
                lane.failures = 0;
                lane.not_before = None;
                self.held = self.held.saturating_sub(batch.bytes);
                None
            }
            Outcome::Rejected { reason, .. } if batch.entries.len() > 1 && per_entry(reason) => {
                // Loki kept the valid entries of the request and refused some: halves are
                // sent again (what Loki holds is dropped as identical) until the refused
                // entries are alone, so that exactly they are counted.
                split(lane, batch);
                None
            }
            Outcome::Split => {
                split(lane, batch);
                None
            }
            Outcome::Again(e) => {
                lane.failures = lane.failures.saturating_add(1);
                lane.not_before = Some(Instant::now() + backoff(lane.failures));
                lane.ready.push_front(batch);
                Some(e)
            }
            Outcome::Rejected {
                status,
                reason,
                text,
            } => {
                lane.failures = 0;
                lane.not_before = None;
                let lines = batch.entries.len() as u64;
                self.held = self.held.saturating_sub(batch.bytes);
                self.metrics.sink_rejected(reason, lines);
                let labels = String::from_utf8_lossy(&lane.labels.text).into_owned();
                if self.logged.contains(&reason) {
                    tracing::debug!(status = status.as_u16(), reason, lines, stream = %labels, loki = %text, "Loki refused a batch; skipped");
                } else {
                    self.logged.push(reason);
                    tracing::error!(status = status.as_u16(), reason, lines, stream = %labels, loki = %text, "Loki refused a batch for good; its lines are skipped (counted in log_capturer_sink_rejected_lines_total; further batches refused for this reason are logged at debug level)");
                }
                None
            }
        }
    }

    /// Sends and books requests until nothing is left (`limit` 0 and every batch closed) or
    /// the sink holds at most `limit` bytes. A request to retry ends it with its error.
    fn pump(&mut self, limit: usize, all: bool) -> io::Result<()> {
        loop {
            let mut failed = None;
            while let Some(done) = self.tasks.try_join_next() {
                match done {
                    Ok(done) => {
                        if let Some(e) = self.finish(done) {
                            failed.get_or_insert(e);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "a Loki push task failed"),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            self.launch();
            let idle = self.tasks.is_empty();
            let finished = if all {
                idle && self
                    .lanes
                    .values()
                    .all(|l| l.ready.is_empty() && l.open.is_none())
            } else {
                // While Loki fails, `write` does not return until a request goes through (or
                // fails again): the delivery loop then neither takes more lines nor hears
                // that the sink "works again" between two failures.
                self.held <= limit && self.lanes.values().all(|l| l.failures == 0)
            };
            if finished {
                return Ok(());
            }
            let next_try = self
                .lanes
                .values()
                .filter(|l| !l.ready.is_empty())
                .filter_map(|l| l.not_before)
                .min();
            if idle && next_try.is_none() {
                // Over the limit with every batch still open: close them to make room.
                if self.lanes.values().all(|l| l.ready.is_empty()) {
                    self.close_batches(Duration::ZERO);
                }
                if self.lanes.values().all(|l| l.ready.is_empty()) {
                    return Ok(());
                }
                continue;
            }
            let LokiOutput { rt, tasks, .. } = self;
            let done = rt.block_on(async {
                let wait = async {
                    match next_try {
                        Some(t) => tokio::time::sleep_until(t.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    done = tasks.join_next(), if !tasks.is_empty() => done,
                    _ = wait => None,
                }
            });
            match done {
                Some(Ok(done)) => {
                    if let Some(e) = self.finish(done) {
                        return Err(e);
                    }
                }
                Some(Err(e)) => tracing::error!(error = %e, "a Loki push task failed"),
                None => {}
            }
        }
    }
}

impl Output for LokiOutput {
    fn take(&mut self, id: &Arc<str>, bytes: Vec<u8>, _cursor: &Cursor) {
        if bytes.is_empty() {
            return;
        }
        self.held += bytes.len();
        self.raw.push_back((id.clone(), Bytes::from(bytes)));
    }

    fn write(&mut self) -> io::Result<()> {
        self.route()?;
        self.close_batches(self.settings.batch_wait);
        let limit = held_limit(self.batch_size());
        self.pump(limit, false)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.route()?;
        self.close_batches(Duration::ZERO);
        self.pump(0, true)
    }

    fn mark(&self, _id: &str) -> Option<Mark> {
        None
    }

    fn close(&mut self, id: &str) -> io::Result<()> {
        self.sync()?;
        if let Some(known) = self.known.remove(id) {
            for key in known.lanes.iter().flatten() {
                let shared = self
                    .known
                    .values()
                    .any(|k| k.lanes.iter().flatten().any(|l| l == key));
                if !shared {
                    self.lanes.remove(key);
                }
            }
        }
        Ok(())
    }
}

/// Puts `batch` back at the front of `lane` as two halves, in order.
fn split(lane: &mut Lane, batch: Batch) {
    let mut first = batch.entries;
    let second = first.split_off(first.len() / 2);
    let size = |e: &[Entry]| e.iter().map(|e| e.line.len() + 1).sum();
    let (b1, b2) = (size(&first), size(&second));
    lane.ready.push_front(Batch {
        entries: second,
        bytes: b2,
        opened: batch.opened,
    });
    lane.ready.push_front(Batch {
        entries: first,
        bytes: b1,
        opened: batch.opened,
    });
}

/// Whether Loki refuses entries for `reason` one by one (and keeps the others of the
/// request), rather than the whole stream (its labels).
fn per_entry(reason: &str) -> bool {
    matches!(
        reason,
        "line_too_long" | "too_far_behind" | "greater_than_max_sample_age" | "too_far_in_future"
    )
}

/// The wait before the next try of a lane that failed `failures` times in a row: doubling
/// from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`], drawn between half and all of it.
fn backoff(failures: u32) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let full = doubled.min(MAX_BACKOFF);
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}

/// The HTTP(S) client: TLS by rustls, trusting the system's roots and `--loki-ca`.
fn http_client(settings: &LokiSettings) -> io::Result<HttpClient> {
    let mut roots = rustls::RootCertStore::empty();
    if settings.url.starts_with("https://") {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
    }
    if let Some(ca) = &settings.ca {
        use rustls_pki_types::pem::PemObject as _;
        let bad = |e: &dyn std::fmt::Display| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("loki_ca {}: {e}", ca.display()),
            )
        };
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))?;
        let mut any = false;
        for cert in certs {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            any = true;
        }
        if !any {
            return Err(bad(&"no certificate in it"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(REQUEST_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Pushes `batch` of the stream `labels`; never panics, every failure is an outcome.
async fn push(client: &HttpClient, endpoint: &Target, labels: &LabelSet, batch: &Batch) -> Outcome {
    let (body, content_type) = match endpoint.encoding {
        LokiEncoding::Protobuf => (
            wire::protobuf(&labels.text, &batch.entries, endpoint.metadata),
            "application/x-protobuf",
        ),
        LokiEncoding::Json => (
            wire::json(&labels.pairs, &batch.entries, endpoint.metadata),
            "application/json",
        ),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return Outcome::Rejected {
                status: StatusCode::BAD_REQUEST,
                reason: "unencodable",
                text: e.to_string(),
            }
        }
    };
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(endpoint.uri.clone())
        .header(CONTENT_TYPE, content_type)
        .header(
            USER_AGENT,
            concat!("log-capturer/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(t) = &endpoint.tenant {
        request = request.header("X-Scope-OrgID", t.clone());
    }
    if let Some(a) = &endpoint.auth {
        request = request.header(AUTHORIZATION, a.clone());
    }
    let request = match request.body(Full::new(Bytes::from(body))) {
        Ok(r) => r,
        Err(e) => return Outcome::Again(io::Error::new(io::ErrorKind::InvalidInput, e)),
    };
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let response = client.request(request).await.map_err(|e| {
            let kind = if tls_failure(&e) {
                io::ErrorKind::InvalidData
            } else if e.is_connect() {
                io::ErrorKind::ConnectionRefused
            } else {
                io::ErrorKind::ConnectionReset
            };
            io::Error::new(kind, format!("Loki at {}: {e:?}", endpoint.uri))
        })?;
        let status = response.status();
        let text = Limited::new(response.into_body(), 64 << 10)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok::<_, io::Error>((status, text))
    })
    .await;
    let (status, text) = match answer {
        Err(_) => {
            return Outcome::Again(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "Loki at {} did not answer within {REQUEST_TIMEOUT:?}",
                    endpoint.uri
                ),
            ))
        }
        Ok(Err(e)) => return Outcome::Again(e),
        Ok(Ok(answer)) => answer,
    };
    judge(status, &text, batch.entries.len())
}

/// Whether TLS failed somewhere in `e`'s chain (a certificate not signed by a trusted CA, a
/// name that does not match): counted apart from a refused connection.
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    // An I/O error's `source` skips the error it wraps: look at that one too.
    if let Some(inner) = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
        if tls_failure(inner) {
            return true;
        }
    }
    e.source().is_some_and(tls_failure)
}

/// What an answer means for the batch it answers.
fn judge(status: StatusCode, body: &[u8], entries: usize) -> Outcome {
    if status.is_success() {
        return Outcome::Stored;
    }
    let mut text = String::from_utf8_lossy(body).trim().to_owned();
    if text.len() > ERROR_TEXT {
        let mut cut = ERROR_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let again = |kind: io::ErrorKind| {
        Outcome::Again(io::Error::new(
            kind,
            format!("Loki answered {status}: {text}"),
        ))
    };
    match status.as_u16() {
        429 => again(io::ErrorKind::QuotaExceeded),
        500..=599 => again(io::ErrorKind::Other),
        401 | 403 | 407 => again(io::ErrorKind::PermissionDenied),
        404 => again(io::ErrorKind::NotFound),
        413 if entries > 1 => Outcome::Split,
        _ => Outcome::Rejected {
            status,
            reason: reason(status, &text),
            text,
        },
    }
}

/// The `reason` label of a refusal, from Loki's error text (its `discarded` reasons).
fn reason(status: StatusCode, text: &str) -> &'static str {
    let t = text.to_ascii_lowercase();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        "request_too_large"
    } else if t.contains("max entry size")
        || t.contains("line too long")
        || t.contains("line_too_long")
    {
        "line_too_long"
    } else if t.contains("too far behind") || t.contains("out of order") {
        "too_far_behind"
    } else if t.contains("too old") {
        "greater_than_max_sample_age"
    } else if t.contains("too new") || t.contains("in the future") {
        "too_far_in_future"
    } else if t.contains("structured metadata") {
        "structured_metadata"
    } else if t.contains("label") {
        "invalid_labels"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_as_loki_means_them() {
        assert!(matches!(
            judge(StatusCode::NO_CONTENT, b"", 3),
            Outcome::Stored
        ));
        for code in [429, 500, 502, 503, 504, 401, 403, 404] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(judge(status, b"busy", 3), Outcome::Again(_)),
                "{code} is retried"
            );
        }
        let Outcome::Again(e) = judge(StatusCode::TOO_MANY_REQUESTS, b"", 1) else {
            panic!("429 is retried");
        };
        assert_eq!(e.kind(), io::ErrorKind::QuotaExceeded);
        assert!(matches!(
            judge(StatusCode::PAYLOAD_TOO_LARGE, b"", 2),
            Outcome::Split
        ));
        let cases: [(&[u8], &str); 6] = [
            (b"Max entry size '256' bytes exceeded for stream '{a=\"b\"}' while adding an entry with length '300' bytes", "line_too_long"),
            (b"entry with timestamp 2020 ignored, reason: 'entry too far behind, oldest acceptable timestamp is: 2021'", "too_far_behind"),
            (b"entry for stream '{a=\"b\"}' has timestamp too old: 2020", "greater_than_max_sample_age"),
            (b"entry for stream '{a=\"b\"}' has timestamp too new: 2099", "too_far_in_future"),
            (b"error at least one label pair is required per stream", "invalid_labels"),
            (b"something else", "other"),
        ];
        for (text, want) in cases {
            match judge(StatusCode::BAD_REQUEST, text, 5) {
                Outcome::Rejected { reason, .. } => assert_eq!(reason, want),
                _ => panic!("a 400 is not retried"),
            }
        }
        match judge(StatusCode::PAYLOAD_TOO_LARGE, b"", 1) {
            Outcome::Rejected { reason, .. } => assert_eq!(reason, "request_too_large"),
            _ => panic!("a single entry too large is refused"),
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        for failures in 1..40 {
            let full = FIRST_BACKOFF
                .saturating_mul(1 << (failures - 1).min(16))
                .min(MAX_BACKOFF);
            let b = backoff(failures);
            assert!(b >= full / 2 && b <= full, "{failures}: {b:?} of {full:?}");
        }
        assert!(backoff(100) <= MAX_BACKOFF);
    }
}
