//! The NATS JetStream sink: one message per line on `<prefix>.<container_id>.<stream>`, the
//! payload the file sink's JSON record, `Nats-Msg-Id` = `<container_id>.<stream>.<pos>`.
//! Durable means acknowledged by the stream (stored, and replicated if the stream is).
//!
//! One subject per container AND stream, so that the last message of a subject is the last
//! line of that stream: the stream itself says where each stream's capture stands. Before the
//! first publish to a subject, its last message is read back; a line at or before that position
//! is already in the stream (published by a run killed before its checkpoint) and is not sent
//! again. That check happens here, in the sink, rather than at admission: a server unreachable
//! at start delays it without holding discovery, and it is retried like any publish. A replay
//! the check cannot see (a publish whose acknowledgement was lost) carries the same
//! `Nats-Msg-Id`, which the stream's duplicate window drops.
//!
//! Publishes are pipelined; `sync` waits for every acknowledgement. A failed one is published
//! again, with whichever later ones failed too, in order; the later ones that were stored stay,
//! so around a failure the stream may hold a few lines of one subject out of order (JetStream
//! 2.9 cannot make a pipelined publish conditional on the one before it).

use std::collections::{HashMap, VecDeque};
use std::future::IntoFuture;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, LastRawMessageErrorKind, StorageType};
use bytes::Bytes;
use capturer_core::{Cursor, Position};

use super::Output;
use crate::config::NatsSettings;
use crate::output::record_position;
use crate::state::Mark;

/// The stream's duplicate window when the sink creates it: longer than any stop the capturer
/// is expected to take, so a publish replayed after a restart is still recognised.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// Acknowledgements awaited at once at most; past it, the oldest is awaited first.
const IN_FLIGHT: usize = 4096;

/// How long an acknowledgement may take before the publish counts as failed (and is retried).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// One line to publish.
struct Line {
    subject: Arc<str>,
    id: String,
    pos: Position,
    payload: Bytes,
}

/// The NATS output.
pub struct NatsOutput {
    rt: tokio::runtime::Runtime,
    settings: NatsSettings,
    /// Connected, with the stream ensured.
    js: Option<async_nats::jetstream::Context>,
    client: Option<async_nats::Client>,
    pending: VecDeque<Line>,
    in_flight: VecDeque<(Line, PublishAckFuture)>,
    /// Per subject, the position of its last message in the stream when first looked at
    /// (`None`: empty); subjects not yet looked at are absent.
    last: HashMap<Arc<str>, Option<Position>>,
    /// Lines found already in the stream and not sent again.
    skipped: u64,
    /// Per container, the subject of each stream, formatted once.
    subjects: HashMap<Arc<str>, [Option<Arc<str>>; 3]>,
}

impl NatsOutput {
    /// An output that connects in the background (a server down at start is retried).
    pub fn new(settings: NatsSettings) -> io::Result<NatsOutput> {
        // The client's connection task needs a runtime that runs while the sink thread waits.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sink-nats")
            .enable_all()
            .build()?;
        Ok(NatsOutput {
            rt,
            settings,
            js: None,
            client: None,
            pending: VecDeque::new(),
            in_flight: VecDeque::new(),
            last: HashMap::new(),
            skipped: 0,
            subjects: HashMap::new(),
        })
    }

    /// The JetStream context, connecting and creating the stream first if needed.
    fn context(&mut self) -> io::Result<async_nats::jetstream::Context> {
        if let Some(js) = &self.js {
            return Ok(js.clone());
        }
        let s = &self.settings;
        let client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let c = self.rt.block_on(connect(s))?;
                self.client = Some(c.clone());
                c
            }
        };
        ensure_connected(&client)?;
        let js = async_nats::jetstream::ContextBuilder::new()
            .ack_timeout(ACK_TIMEOUT)
            .timeout(ACK_TIMEOUT)
            .build(client);
        let config = StreamConfig {
            name: s.stream.clone(),
            subjects: vec![format!("{}.>", s.subject_prefix)],
            storage: StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: s.replicas,
            ..Default::default()
        };
        let stream = self
            .rt
            .block_on(js.get_or_create_stream(config))
            .map_err(|e| io::Error::new(io::ErrorKind::NotConnected, e))?;
        tracing::info!(stream = %s.stream, subjects = ?stream.cached_info().config.subjects, "NATS stream ready");
        self.js = Some(js.clone());
        Ok(js)
    }
}

/// Where `subject`'s last message stands in `stream`.
async fn last_in_stream(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: &str,
) -> io::Result<Option<Position>> {
    let stream = js.get_stream(stream).await.map_err(other)?;
    let payload = match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => m.payload,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(e) => return Err(other(e)),
    };
    Ok(record_position(&payload).map(|(_, pos)| pos))
}

/// Waits for the oldest acknowledgement in `in_flight`. If it failed, waits for every other one
/// in flight too, and puts back at the front of `pending`, in order, only the publishes that
/// failed: one stored after a failed one stays (the stream then holds those two lines out of
/// order, which their `pos` tells; see docs/nats.md), and is not published twice.
async fn await_oldest(
    in_flight: &mut VecDeque<(Line, PublishAckFuture)>,
    pending: &mut VecDeque<Line>,
) -> io::Result<()> {
    let Some((line, ack)) = in_flight.pop_front() else {
        return Ok(());
    };
    let Err(e) = ack.into_future().await else {
        return Ok(());
    };
    let error = publish_error(&e);
    let mut again = vec![line];
    // Together: an acknowledgement's timeout starts when it is awaited, so awaiting thousands
    // in turn from a server that died would take their timeouts one after the other.
    let (later, acks): (Vec<Line>, Vec<PublishAckFuture>) =
        std::mem::take(in_flight).into_iter().unzip();
    let results = futures_util::future::join_all(acks.into_iter().map(IntoFuture::into_future));
    for (l, result) in later.into_iter().zip(results.await) {
        if result.is_err() {
            again.push(l);
        }
    }
    for l in again.into_iter().rev() {
        pending.push_front(l);
    }
    Err(error)
}

impl Output for NatsOutput {
    fn take(&mut self, id: &Arc<str>, bytes: Vec<u8>, _cursor: &Cursor) {
        let bytes = Bytes::from(bytes);
        let mut start = 0;
        for end in memchr_iter(&bytes) {
            let record = bytes.slice(start..end);
            start = end + 1;
            let Some((stream, pos)) = record_position(&record) else {
                tracing::error!(container = %id, "a record without its position; not published");
                continue;
            };
            let prefix = &self.settings.subject_prefix;
            let subject = self.subjects.entry(id.clone()).or_default()[stream.index()]
                .get_or_insert_with(|| format!("{prefix}.{id}.{stream}").into())
                .clone();
            self.pending.push_back(Line {
                id: format!("{id}.{stream}.{}.{}", pos.ts.0, pos.n),
                subject,
                pos,
                payload: record,
            });
        }
    }

    fn write(&mut self) -> io::Result<()> {
        // The client spawns onto the runtime of the context it is called in.
        let handle = self.rt.handle().clone();
        let _enter = handle.enter();
        if self.pending.is_empty() {
            return Ok(());
        }
        let js = self.context()?;
        let max_payload = match &self.client {
            Some(c) => {
                // Requests to a server that is away would each wait out their timeout.
                ensure_connected(c)?;
                c.server_info().max_payload
            }
            None => 1 << 20,
        };
        let NatsOutput {
            rt,
            settings,
            pending,
            in_flight,
            last,
            skipped,
            ..
        } = self;
        // One block_on for the whole queue: entering the runtime per line was a third of the
        // sink thread's time (docs/benchmarks.md, part 7).
        rt.block_on(async {
            while let Some(line) = pending.pop_front() {
                if !last.contains_key(&line.subject) {
                    match last_in_stream(&js, &settings.stream, &line.subject).await {
                        Ok(found) => {
                            last.insert(line.subject.clone(), found);
                        }
                        Err(e) => {
                            pending.push_front(line);
                            return Err(e);
                        }
                    }
                }
                if last[&line.subject].is_some_and(|at| line.pos <= at) {
                    *skipped += 1;
                    continue;
                }
                if in_flight.len() >= IN_FLIGHT {
                    if let Err(e) = await_oldest(in_flight, pending).await {
                        pending.push_front(line);
                        return Err(e);
                    }
                }
                let publish = PublishMessage::build()
                    .payload(line.payload.clone())
                    .message_id(&line.id);
                match js.send_publish(line.subject.to_string(), publish).await {
                    Ok(ack) => in_flight.push_back((line, ack)),
                    Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                        // Never publishable as it is: cut its message to fit, marked
                        // truncated, as the capturer does with lines over its own cap.
                        let max = max_payload.saturating_sub(1024);
                        let Some(payload) = fit(&line.payload, max) else {
                            tracing::error!(subject = %line.subject, id = %line.id, max_payload, "a record the server's max_payload cannot hold even cut short; not published");
                            continue;
                        };
                        tracing::warn!(subject = %line.subject, id = %line.id, bytes = line.payload.len(), max_payload, "a line longer than the server's max_payload; published cut short with \"truncated\":true");
                        pending.push_front(Line { payload, ..line });
                    }
                    Err(e) => {
                        pending.push_front(line);
                        let kind = io::ErrorKind::NotConnected;
                        return Err(io::Error::new(kind, format!("NATS: {e}")));
                    }
                }
            }
            Ok(())
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        // The client spawns onto the runtime of the context it is called in.
        let handle = self.rt.handle().clone();
        let _enter = handle.enter();
        self.write()?;
        let NatsOutput {
            rt,
            pending,
            in_flight,
            ..
        } = self;
        rt.block_on(async {
            while !in_flight.is_empty() {
                await_oldest(in_flight, pending).await?;
            }
            Ok::<(), io::Error>(())
        })?;
        // Anything a failure put back goes out (and is acknowledged) before this returns.
        if !self.pending.is_empty() {
            return self.sync();
        }
        if self.skipped > 0 {
            tracing::info!(
                lines = self.skipped,
                "lines already in the NATS stream (a run stopped before its checkpoint) not sent again"
            );
            self.skipped = 0;
        }
        Ok(())
    }

    fn mark(&self, _id: &str) -> Option<Mark> {
        None
    }

    fn close(&mut self, id: &str) -> io::Result<()> {
        // The client spawns onto the runtime of the context it is called in.
        let handle = self.rt.handle().clone();
        let _enter = handle.enter();
        self.sync()?;
        let prefix = format!("{}.{id}.", self.settings.subject_prefix);
        self.last.retain(|subject, _| !subject.starts_with(&prefix));
        self.subjects.remove(id);
        Ok(())
    }
}

/// A failed publish as an I/O error whose kind names the cause (`storage_full` for a stream
/// at its limits), for the sink's error counts.
fn publish_error(e: &async_nats::jetstream::context::PublishError) -> io::Error {
    let kind = match e.kind() {
        PublishErrorKind::TimedOut => io::ErrorKind::TimedOut,
        PublishErrorKind::BrokenPipe => io::ErrorKind::BrokenPipe,
        _ if is_full(&e.to_string()) => io::ErrorKind::StorageFull,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("NATS: {e}"))
}

/// Fails at once, rather than after a request's timeout, while the client is not connected.
fn ensure_connected(client: &async_nats::Client) -> io::Result<()> {
    match client.connection_state() {
        async_nats::connection::State::Connected => Ok(()),
        state => Err(io::Error::new(
            io::ErrorKind::NotConnected,
            format!("NATS server not connected ({state:?}); the client keeps reconnecting"),
        )),
    }
}

/// Connects with the user's credentials and CA; reconnects forever in the background.
async fn connect(s: &NatsSettings) -> io::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name("log-capturer")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5));
    if let Some(creds) = &s.creds {
        options = options.credentials_file(creds).await?;
    }
    if let Some(ca) = &s.ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    let servers: Vec<&str> = s.url.split(',').map(str::trim).collect();
    let addrs: Vec<async_nats::ServerAddr> = servers
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let client = options
        .connect(addrs)
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::NotConnected, e))?;
    // A moment for a server that is there to answer, so a normal start logs no error.
    for _ in 0..100 {
        if client.connection_state() == async_nats::connection::State::Connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(client)
}

/// `record` with its message cut so that the whole is at most `max` bytes, and marked
/// `"truncated":true`; `None` if even an empty message does not fit.
fn fit(record: &[u8], max: usize) -> Option<Bytes> {
    let mut value: serde_json::Value = serde_json::from_slice(record).ok()?;
    let text = value.get("message")?.as_str()?.to_owned();
    let mut keep = text.len();
    loop {
        let mut cut = keep.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        value["message"] = serde_json::Value::String(text[..cut].to_owned());
        value["truncated"] = serde_json::Value::Bool(true);
        let bytes = serde_json::to_vec(&value).ok()?;
        if bytes.len() <= max {
            return Some(Bytes::from(bytes));
        }
        if cut == 0 {
            return None;
        }
        // Escaping may make the message take more than its length: shrink in proportion.
        let scaled = (cut as u128 * max as u128 / bytes.len() as u128) as usize;
        keep = scaled.saturating_sub(16).min(cut - 1);
    }
}

/// Whether a publish error says the stream is at its limits (`max_bytes`, `max_msgs`).
fn is_full(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("maximum bytes") || t.contains("maximum messages") || t.contains("resource limits")
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, e)
}

/// The offsets of the newlines in `bytes`.
fn memchr_iter(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
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
    fn a_record_too_large_is_cut_to_fit_and_marked() {
        let record = format!(
            "{{\"container_id\":\"c\",\"stream\":\"stdout\",\"pos\":\"5.1\",\"message\":\"{}\"}}",
            "é\\n".repeat(5000)
        );
        let cut = fit(record.as_bytes(), 4000).unwrap();
        assert!(cut.len() <= 4000);
        let v: serde_json::Value = serde_json::from_slice(&cut).unwrap();
        assert_eq!(v["truncated"], true);
        assert_eq!(v["pos"], "5.1");
        assert!(v["message"].as_str().unwrap().starts_with("é\n"), "{v}");
        assert_eq!(fit(record.as_bytes(), 10), None);
    }

    #[test]
    fn stream_limits_are_told_from_other_errors() {
        assert!(is_full("maximum bytes exceeded"));
        assert!(is_full("insufficient resource limits"));
        assert!(!is_full("timed out"));
    }
}
