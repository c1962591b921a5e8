//! The NATS JetStream sink: one message per line on `<prefix>.<container_id>.<stream>`, the
//! payload the file sink's JSON record, `Nats-Msg-Id` = `<container_id>.<stream>.<pos>`.
//! Durable means acknowledged by the stream (stored, and replicated if the stream is).
//!
//! One subject per container AND stream, so that the last message of a subject is the last
//! line of that stream. A line published again (after a crash before its checkpoint, or after
//! an acknowledgement that never came) carries the same `Nats-Msg-Id`, which the stream's
//! duplicate window drops. Before the first publish to a subject its last message is read: if
//! it was stored longer ago than the duplicate window, lines at or before its position are not
//! sent again (the window no longer recognises them); within the window they are, because
//! publishing again is also what fills a line missing before the last one (see below).
//!
//! Publishes are pipelined, and `sync` waits for every acknowledgement. A failed one is
//! published again, with whichever later ones failed too, in order; the later ones that were
//! stored stay, so around a failure the stream may hold a few lines of one subject out of
//! order (JetStream 2.9 cannot make a pipelined publish conditional on the one before it).
//!
//! The publishing runs as a task on the runtime that also runs the client's connection, one
//! task per `write`/`sync`: the hand-offs per message (publish, acknowledgement) then stay on
//! one thread (docs/benchmarks.md part 7).

mod flight;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::{Config as StreamConfig, LastRawMessageErrorKind, StorageType};
use async_nats::{header::NATS_MESSAGE_ID, HeaderMap, Subject};
use bytes::Bytes;
use capturer_core::{Cursor, Position};
use futures_util::StreamExt;

use self::flight::{InFlight, Line};
use super::Output;
use crate::config::NatsSettings;
use crate::output::{cut_record, record_position};
use crate::state::Mark;

/// The stream's duplicate window when the sink creates it: longer than any stop the capturer
/// is expected to take, so a publish replayed after a restart is still recognised.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// Publishes in flight at most; at this many, the sink waits until half are acknowledged.
const IN_FLIGHT: usize = 4096;

/// How long without any acknowledgement before those awaited count as failed (and are retried).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The NATS output.
pub struct NatsOutput {
    rt: tokio::runtime::Runtime,
    /// Here between jobs; in the publishing task during one.
    work: Option<Box<Work>>,
}

/// What the publishing task works with, moved into it for each job and back.
struct Work {
    settings: NatsSettings,
    client: Option<async_nats::Client>,
    /// Why the client last failed to connect (the server's or the client's words), cleared
    /// once it connects: the sink's error then names the cause.
    refusal: Refusal,
    /// Connected, with the stream ensured and the acknowledgements subscribed.
    link: Option<Link>,
    pending: VecDeque<Line>,
    flight: InFlight,
    /// Per subject looked at: lines at or before this position are in the stream and out of
    /// its duplicate window, so not sent again (`None`: send everything).
    skip: HashMap<String, Option<Position>>,
    /// Lines found already in the stream and not sent again.
    skipped: u64,
    /// Per container, the subject of each stream, formatted once.
    subjects: HashMap<Arc<str>, [Option<Subject>; 3]>,
}

/// A connection ready to publish.
struct Link {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    /// Acknowledgements come to `<inbox>.<token>`.
    inbox: String,
    acks: async_nats::Subscriber,
    /// The stream's duplicate window.
    window: Duration,
    max_payload: usize,
}

/// What the publishing task is asked to do.
enum Job {
    Write,
    Sync,
    Close(String),
}

impl NatsOutput {
    /// An output that connects in the background (a server down at start is retried).
    pub fn new(settings: NatsSettings) -> io::Result<NatsOutput> {
        // One worker runs the client's connection and the publishing task; the sink thread
        // waits for the task.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sink-nats")
            .enable_all()
            .build()?;
        Ok(NatsOutput {
            rt,
            work: Some(Box::new(Work {
                settings,
                client: None,
                refusal: Refusal::default(),
                link: None,
                pending: VecDeque::new(),
                flight: InFlight::default(),
                skip: HashMap::new(),
                skipped: 0,
                subjects: HashMap::new(),
            })),
        })
    }

    /// Runs `job` in the publishing task and waits for it.
    fn run(&mut self, job: Job) -> io::Result<()> {
        let Some(work) = self.work.take() else {
            return Err(io::Error::other("NATS: the publishing task was lost"));
        };
        let task = self.rt.spawn(work.run(job));
        match self.rt.block_on(task) {
            Ok((work, result)) => {
                self.work = Some(work);
                result
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(io::Error::other(format!(
                "NATS: the publishing task ended: {e}"
            ))),
        }
    }
}

impl Output for NatsOutput {
    fn take(&mut self, id: &Arc<str>, bytes: Vec<u8>, _cursor: &Cursor) {
        let Some(work) = self.work.as_mut() else {
            tracing::error!(container = %id, "the NATS publishing task was lost; lines not taken");
            return;
        };
        work.take(id, bytes);
    }

    fn write(&mut self) -> io::Result<()> {
        if self.work.as_ref().is_some_and(|w| w.pending.is_empty()) {
            return Ok(());
        }
        self.run(Job::Write)
    }

    fn sync(&mut self) -> io::Result<()> {
        if self
            .work
            .as_ref()
            .is_some_and(|w| w.pending.is_empty() && w.flight.is_empty())
        {
            return Ok(());
        }
        self.run(Job::Sync)
    }

    fn mark(&self, _id: &str) -> Option<Mark> {
        None
    }

    fn close(&mut self, id: &str) -> io::Result<()> {
        self.run(Job::Close(id.to_owned()))
    }
}

impl Work {
    /// Queues the records in `bytes` (JSON lines) of container `id`.
    fn take(&mut self, id: &Arc<str>, bytes: Vec<u8>) {
        let bytes = Bytes::from(bytes);
        let mut start = 0;
        for end in newlines(&bytes) {
            let record = bytes.slice(start..end);
            start = end + 1;
            let Some((stream, pos)) = record_position(&record) else {
                tracing::error!(container = %id, "a record without its position; not published");
                continue;
            };
            let prefix = &self.settings.subject_prefix;
            let subject = self.subjects.entry(id.clone()).or_default()[stream.index()]
                .get_or_insert_with(|| Subject::from(format!("{prefix}.{id}.{stream}")))
                .clone();
            self.pending.push_back(Line {
                id: format!("{id}.{stream}.{}.{}", pos.ts.0, pos.n),
                subject,
                pos,
                payload: record,
            });
        }
    }

    async fn run(mut self: Box<Self>, job: Job) -> (Box<Self>, io::Result<()>) {
        let result = match job {
            Job::Write => self.write().await,
            Job::Sync => self.sync().await,
            Job::Close(id) => self.close(&id).await,
        };
        if result
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset)
        {
            self.unlink();
        }
        (self, result)
    }

    /// Drops the link (the stream is ensured and the acknowledgements subscribed again at the
    /// next publish); what was in flight is published again.
    fn unlink(&mut self) {
        self.link = None;
        for line in self.flight.take_unacknowledged().into_iter().rev() {
            self.pending.push_front(line);
        }
    }

    /// Publishes what is pending, waiting for acknowledgements only when too many are in
    /// flight.
    async fn write(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.connect().await?;
        let Work {
            settings,
            link,
            pending,
            flight,
            skip,
            skipped,
            ..
        } = self;
        let Some(link) = link.as_mut() else {
            return Err(not_connected("NATS: no connection"));
        };
        loop {
            if flight.len() >= IN_FLIGHT {
                // Failures are put back at the front of `pending`, in order.
                settle(link, flight, pending, IN_FLIGHT / 2).await?;
            }
            let Some(line) = pending.pop_front() else {
                return Ok(());
            };
            if !skip.contains_key(line.subject.as_str()) {
                match skip_through(link, &settings.stream, &line.subject).await {
                    Ok(found) => {
                        skip.insert(line.subject.to_string(), found);
                    }
                    Err(e) => {
                        pending.push_front(line);
                        return Err(e);
                    }
                }
            }
            if skip
                .get(line.subject.as_str())
                .is_some_and(|s| s.is_some_and(|at| line.pos <= at))
            {
                *skipped += 1;
                continue;
            }
            let reply = format!("{}.{}", link.inbox, flight.next_token());
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, line.id.as_str());
            let sent = link
                .client
                .publish_with_reply_and_headers(
                    line.subject.clone(),
                    reply,
                    headers,
                    line.payload.clone(),
                )
                .await;
            match sent {
                Ok(()) => flight.push(line),
                Err(e) if e.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                    // Never publishable as it is: cut its message to fit, marked truncated,
                    // as the capturer does with lines over its own cap.
                    let max_payload = link.max_payload;
                    let Some(payload) = cut_record(&line.payload, max_payload.saturating_sub(1024))
                    else {
                        tracing::error!(subject = %line.subject, id = %line.id, max_payload, "a record the server's max_payload cannot hold even cut short; not published");
                        continue;
                    };
                    tracing::warn!(subject = %line.subject, id = %line.id, bytes = line.payload.len(), max_payload, "a line longer than the server's max_payload; published cut short with \"truncated\":true");
                    pending.push_front(Line {
                        payload: Bytes::from(payload),
                        ..line
                    });
                }
                Err(e) => {
                    pending.push_front(line);
                    return Err(not_connected(format!("NATS: {e}")));
                }
            }
        }
    }

    /// Publishes everything and waits for every acknowledgement.
    async fn sync(&mut self) -> io::Result<()> {
        loop {
            self.write().await?;
            if let Some(link) = self.link.as_mut() {
                settle(link, &mut self.flight, &mut self.pending, 0).await?;
            }
            // Anything a failure put back goes out (and is acknowledged) before this returns.
            if self.pending.is_empty() && self.flight.is_empty() {
                break;
            }
        }
        if self.skipped > 0 {
            tracing::info!(
                lines = self.skipped,
                "lines already in the NATS stream, stored before its duplicate window, not sent again"
            );
            self.skipped = 0;
        }
        Ok(())
    }

    async fn close(&mut self, id: &str) -> io::Result<()> {
        self.sync().await?;
        let prefix = format!("{}.{id}.", self.settings.subject_prefix);
        self.skip.retain(|subject, _| !subject.starts_with(&prefix));
        self.subjects.remove(id);
        Ok(())
    }

    /// Connects, ensures the stream and subscribes to acknowledgements, if not done yet.
    async fn connect(&mut self) -> io::Result<()> {
        let client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let c = connect(&self.settings, self.refusal.clone()).await?;
                self.client = Some(c.clone());
                c
            }
        };
        // Requests to a server that is away would each wait out their timeout.
        ensure_connected(&client, &self.refusal)?;
        if self.link.is_some() {
            return Ok(());
        }
        let s = &self.settings;
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .build(client.clone());
        let config = StreamConfig {
            name: s.stream.clone(),
            subjects: vec![format!("{}.>", s.subject_prefix)],
            storage: StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: s.replicas,
            ..Default::default()
        };
        let stream = js
            .get_or_create_stream(config)
            .await
            .map_err(not_connected)?;
        let info = stream.cached_info();
        tracing::info!(stream = %s.stream, subjects = ?info.config.subjects, duplicate_window = ?info.config.duplicate_window, "NATS stream ready");
        let inbox = client.new_inbox();
        let acks = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(not_connected)?;
        self.link = Some(Link {
            max_payload: client.server_info().max_payload,
            window: info.config.duplicate_window,
            client,
            js,
            inbox,
            acks,
        });
        Ok(())
    }
}

/// Receives acknowledgements until at most `limit` publishes are in flight. If one failed, or
/// none came for [`ACK_TIMEOUT`], waits for the rest (within the same timeout), puts every
/// publish not acknowledged back at the front of `pending` in order, and returns the error:
/// one stored after a failed one stays (the stream then holds those two lines out of order,
/// which their `pos` tells; see docs/nats.md), and is not published twice.
async fn settle(
    link: &mut Link,
    flight: &mut InFlight,
    pending: &mut VecDeque<Line>,
    limit: usize,
) -> io::Result<()> {
    let mut failed: Option<io::Error> = None;
    let mut progress = Instant::now();
    // One timer, re-armed only when it fires: a timer per acknowledgement would cost more
    // than the acknowledgement.
    let timer = tokio::time::sleep(ACK_TIMEOUT);
    tokio::pin!(timer);
    loop {
        if failed.is_none() {
            failed = flight.pop_acknowledged();
            if failed.is_none() && flight.len() <= limit {
                return Ok(());
            }
        }
        if failed.is_some() && flight.all_answered() {
            break;
        }
        tokio::select! {
            biased;
            ack = link.acks.next() => match ack {
                Some(ack) => {
                    progress = Instant::now();
                    if let Some(token) = flight::token(&ack) {
                        flight.answer(token, flight::verdict(&ack));
                    }
                }
                None => {
                    let e = io::Error::new(io::ErrorKind::ConnectionReset, "NATS: the acknowledgements' subscription ended");
                    failed.get_or_insert(e);
                    break;
                }
            },
            () = &mut timer => {
                let since = progress.elapsed();
                if since >= ACK_TIMEOUT {
                    failed.get_or_insert_with(|| io::Error::new(io::ErrorKind::TimedOut, format!("NATS: no acknowledgement for {ACK_TIMEOUT:?}")));
                    break;
                }
                timer.as_mut().reset((progress + ACK_TIMEOUT).into());
            }
        }
    }
    for line in flight.take_unacknowledged().into_iter().rev() {
        pending.push_front(line);
    }
    Err(failed.unwrap_or_else(|| io::Error::other("NATS: publish failed")))
}

/// The position through which `subject`'s lines need not be sent again: its last message's,
/// if that was stored longer ago than the stream's duplicate window (less a margin for the
/// clocks); `None` when the subject is empty or its last message is recent.
///
/// Within the window, every line is published again and the stream drops the ones it holds by
/// their `Nats-Msg-Id`. Skipping by the last position there would lose a line: when the
/// connection drops with publishes in flight, the client sends those it had not written yet on
/// the next connection, so the stream can hold line k+1 without line k until the sink
/// publishes k again, and a SIGKILL before that leaves k behind the last message.
async fn skip_through(
    link: &Link,
    stream: &str,
    subject: &Subject,
) -> io::Result<Option<Position>> {
    let stream = link.js.get_stream(stream).await.map_err(not_connected)?;
    let last = match stream
        .get_last_raw_message_by_subject(subject.as_str())
        .await
    {
        Ok(m) => m,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(e) => return Err(not_connected(e)),
    };
    let margin = (link.window / 2).min(Duration::from_secs(60));
    let recognised_until =
        async_nats::datetime::add_std_duration(last.time, link.window.saturating_sub(margin));
    if recognised_until.is_ok_and(|until| async_nats::datetime::now() < until) {
        return Ok(None);
    }
    Ok(record_position(&last.payload).map(|(_, pos)| pos))
}

/// The last reason a connection attempt failed, shared with the client's event callback.
type Refusal = Arc<std::sync::Mutex<Option<String>>>;

/// Fails at once, rather than after a request's timeout, while the client is not connected,
/// naming the last reason a connection failed; a refusal of the credentials is
/// `PermissionDenied` (counted as such), anything else `NotConnected`.
fn ensure_connected(client: &async_nats::Client, refusal: &Refusal) -> io::Result<()> {
    let state = client.connection_state();
    if state == async_nats::connection::State::Connected {
        return Ok(());
    }
    let why = refusal.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(why) = why else {
        return Err(not_connected(format!(
            "NATS server not connected ({state:?}); the client keeps reconnecting"
        )));
    };
    let kind = if why.contains("authorization") || why.contains("authentication") {
        io::ErrorKind::PermissionDenied
    } else {
        io::ErrorKind::NotConnected
    };
    Err(io::Error::new(
        kind,
        format!("NATS server not connected ({state:?}): {why}; the client keeps reconnecting"),
    ))
}

/// Connects with the user's credentials and CA; reconnects forever in the background,
/// keeping the reason of the last failure in `refusal`.
async fn connect(s: &NatsSettings, refusal: Refusal) -> io::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name("log-capturer")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| {
            let refusal = refusal.clone();
            async move {
                let why = match event {
                    async_nats::Event::Connected => None,
                    async_nats::Event::ClientError(e) => Some(e.to_string()),
                    async_nats::Event::ServerError(e) => Some(e.to_string()),
                    _ => return,
                };
                *refusal.lock().unwrap_or_else(|e| e.into_inner()) = why;
            }
        });
    if let Some(creds) = &s.creds {
        options = options.credentials_file(creds).await?;
    }
    if let Some(ca) = &s.ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    let addrs: Vec<async_nats::ServerAddr> = s
        .url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let client = options.connect(addrs).await.map_err(not_connected)?;
    // A moment for a server that is there to answer, so a normal start logs no error.
    for _ in 0..100 {
        if client.connection_state() == async_nats::connection::State::Connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(client)
}

/// Whether a publish error says the stream is at its limits (`max_bytes`, `max_msgs`).
fn is_full(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("maximum bytes") || t.contains("maximum messages") || t.contains("resource limits")
}

fn not_connected(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, e)
}

/// The offsets of the newlines in `bytes`.
fn newlines(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_limits_are_told_from_other_errors() {
        assert!(is_full("maximum bytes exceeded"));
        assert!(is_full("insufficient resource limits"));
        assert!(!is_full("timed out"));
    }
}
