//! What the daemon still holds for a container: its log read once (no follow) and cut into
//! lines with positions by the very machine the reader runs, so both sides count alike.

use std::time::Duration;

use capturer_core::frame::DAEMON_FRAME_PAYLOAD;
use capturer_core::{
    Command, Config, ContainerMachine, Cursor, Demux, Event, Flow, Generation, Instant, Line,
    LineSink, Message, Position, Stream, StreamSet, Timestamp, TtySplitter, Verdict,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::conn::{self, Io};
use crate::docker::{self, Endpoint, Summary};
use crate::http::{self, Body};

/// How long the daemon may take to answer, and then to send the next bytes of a log.
const WAIT: Duration = Duration::from_secs(60);

/// A connection to the daemon for the audit: bollard to list and inspect, our own HTTP for
/// the logs, as the capturer does.
pub struct Daemon {
    docker: bollard::Docker,
    endpoint: Endpoint,
    api_version: String,
}

/// What the daemon holds for a container.
#[derive(Debug)]
pub enum Held {
    /// Its log.
    Log(DaemonLog),
    /// It does not know the container (removed).
    Gone,
    /// It cannot send the log (a logging driver it cannot read back): why.
    Unreadable(String),
}

impl Held {
    /// The log, if there is one.
    pub fn log(&self) -> Option<&DaemonLog> {
        match self {
            Held::Log(l) => Some(l),
            _ => None,
        }
    }
}

/// How a log request ended.
enum Fetched {
    Read,
    Gone,
    Unreadable(String),
}

/// One container's log as the daemon holds it.
#[derive(Debug, Default)]
pub struct DaemonLog {
    /// Its name.
    pub name: String,
    /// Whether it runs (its log may still grow, and an unfinished last line is not a line yet).
    pub running: bool,
    /// Per stream (by `Stream::index`), its lines stamped at or after the start, in order.
    pub lines: [Vec<Line>; 3],
    /// Per stream, lines stamped before the start.
    pub before_start: [u64; 3],
}

impl Daemon {
    /// Connects and negotiates the API version; the error says why the daemon cannot be used.
    pub async fn connect(host: &str) -> Result<Daemon, String> {
        let endpoint = Endpoint::parse(host);
        let docker = docker::connect(&endpoint)
            .await
            .map_err(|e| e.to_string())?;
        let api_version = format!("v{}", docker.client_version());
        Ok(Daemon {
            docker,
            endpoint,
            api_version,
        })
    }

    /// Every container the daemon knows, running or not.
    pub async fn list(&self) -> Result<Vec<Summary>, String> {
        docker::list_all(&self.docker)
            .await
            .map_err(|e| e.to_string())
    }

    /// The log of container `id`, lines before `start` counted but not kept.
    pub async fn log(&self, id: &str, start: Timestamp) -> Result<Held, String> {
        let Some(meta) = docker::inspect(&self.docker, id)
            .await
            .map_err(|e| format!("inspect {id}: {e}"))?
        else {
            return Ok(Held::Gone);
        };
        let before = self.run_state(id).await?;
        let mut read = Read::new(meta.tty, meta.running, start);
        read.log.name = meta.name.clone();
        let found = match conn::connect(&self.endpoint)
            .await
            .map_err(|e| format!("connect: {e}"))?
        {
            Io::Unix(s) => self.fetch(s, id, &mut read).await?,
            Io::Tcp(s) => self.fetch(s, id, &mut read).await?,
        };
        match found {
            Fetched::Read => {}
            Fetched::Gone => return Ok(Held::Gone),
            Fetched::Unreadable(why) => return Ok(Held::Unreadable(why)),
        }
        // As the reader decides it: a stopped container's unfinished last line is a line only
        // if it did not run at any moment of the read.
        let after = self.run_state(id).await?;
        let stopped_throughout = !meta.running && before.is_some() && before == after;
        read.finish(stopped_throughout)?;
        Ok(Held::Log(read.log))
    }

    async fn run_state(&self, id: &str) -> Result<Option<conn::RunState>, String> {
        conn::run_state(&self.endpoint, &self.api_version, id, WAIT)
            .await
            .map_err(|e| format!("inspect {id}: {e}"))
    }

    /// Reads the whole log into `read`.
    async fn fetch<S>(&self, mut io: S, id: &str, read: &mut Read) -> Result<Fetched, String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let request = format!(
            "GET /{}/containers/{id}/logs?stdout=1&stderr=1&timestamps=1 HTTP/1.1\r\n\
             Host: docker\r\nUser-Agent: log-capturer\r\nConnection: close\r\n\r\n",
            self.api_version
        );
        let mut buf = Vec::with_capacity(64 * 1024);
        let (head, head_len) = tokio::time::timeout(WAIT, async {
            io.write_all(request.as_bytes()).await?;
            loop {
                if io.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "closed before the response head",
                    ));
                }
                if let Some(found) = http::parse_head(&buf).map_err(std::io::Error::other)? {
                    return Ok(found);
                }
            }
        })
        .await
        .map_err(|_| format!("logs of {id}: no answer in {WAIT:?}"))?
        .map_err(|e| format!("logs of {id}: {e}"))?;
        let why = || String::from_utf8_lossy(&buf[head_len..]).trim().to_owned();
        match head.status {
            200 => {}
            404 => return Ok(Fetched::Gone),
            501 => {
                return Ok(Fetched::Unreadable(format!(
                    "the daemon answered 501: {}",
                    why()
                )))
            }
            status => {
                return Err(format!(
                    "logs of {id}: the daemon answered {status}: {}",
                    why()
                ));
            }
        }
        let mut body = Body::new(head.framing);
        let mut pending = buf.split_off(head_len);
        loop {
            let mut problem = None;
            body.decode(&pending, |data| {
                if problem.is_none() {
                    problem = read.push(data).err();
                }
            })
            .map_err(|e| format!("logs of {id}: {e}"))?;
            if let Some(p) = problem {
                return Err(format!("logs of {id}: {p}"));
            }
            if body.is_done() {
                return Ok(Fetched::Read);
            }
            pending.clear();
            let n = tokio::time::timeout(WAIT, io.read_buf(&mut pending))
                .await
                .map_err(|_| format!("logs of {id}: no data for {WAIT:?}"))?
                .map_err(|e| format!("logs of {id}: {e}"))?;
            if n == 0 {
                if body.may_end_at_eof() {
                    return Ok(Fetched::Read);
                }
                return Err(format!("logs of {id}: the connection closed mid-body"));
            }
        }
    }
}

/// One read of a log through a container machine, as a reader generation runs it.
struct Read {
    machine: ContainerMachine,
    generation: Generation,
    decoder: Decoder,
    log: DaemonLog,
}

enum Decoder {
    Demux(Demux),
    Tty(TtySplitter),
}

impl Read {
    /// A fresh machine from `start`, told the container runs (a follow: an unfinished last
    /// line is not delivered) or has stopped (a draining read), with its stream open.
    fn new(tty: bool, running: bool, start: Timestamp) -> Read {
        let config = Config::default();
        let decoder = if tty {
            Decoder::Tty(TtySplitter::new(DAEMON_FRAME_PAYLOAD))
        } else {
            Decoder::Demux(Demux::new(config.partial_cap + 64))
        };
        let mut machine =
            ContainerMachine::new(config, Cursor::new(start, StreamSet::for_tty(tty)));
        let event = if running {
            Event::ContainerStarted
        } else {
            Event::ContainerDied
        };
        machine.handle(Instant(0), event);
        let mut generation = Generation(0);
        while let Some(c) = machine.poll_command() {
            if let Command::OpenStream { generation: g, .. } = c {
                generation = g;
            }
        }
        machine.handle(Instant(0), Event::StreamOpened { generation });
        Read {
            machine,
            generation,
            decoder,
            log: DaemonLog {
                running,
                ..DaemonLog::default()
            },
        }
    }

    /// Decodes a piece of the body.
    fn push(&mut self, data: &[u8]) -> Result<(), String> {
        let Read {
            machine,
            generation,
            decoder,
            log,
        } = self;
        let mut flow = Flow::Continue;
        let mut feed = |stream: Stream, frame: &[u8]| {
            if flow == Flow::Continue {
                flow = machine.handle_frame(Instant(0), *generation, stream, frame, &mut *log);
            }
        };
        match decoder {
            Decoder::Demux(d) => d
                .push(data, |f| feed(f.stream, f.bytes))
                .map_err(|e| e.to_string())?,
            Decoder::Tty(t) => t.push(data, |f| feed(f.stream, f.bytes)),
        }
        match flow {
            Flow::Continue => Ok(()),
            Flow::Stop => Err("a frame the capturer cannot read either".into()),
        }
    }

    /// The log ended: what the machine makes of its unfinished lines.
    fn finish(&mut self, stopped_throughout: bool) -> Result<(), String> {
        let Read {
            machine,
            generation,
            decoder,
            log,
        } = self;
        match decoder {
            Decoder::Demux(d) => d.finish().map_err(|e| e.to_string())?,
            Decoder::Tty(t) => t.finish(|f| {
                machine.handle_frame(Instant(0), *generation, f.stream, f.bytes, &mut *log);
            }),
        }
        machine.handle_end_of_stream(*generation, stopped_throughout, &mut *log);
        Ok(())
    }
}

impl LineSink for DaemonLog {
    fn line(&mut self, line: Message<'_>, pos: Position) {
        self.lines[line.stream.index()].push(Line::new(line, pos));
    }

    fn dropped(&mut self, stream: Stream, verdict: Verdict) {
        if verdict == Verdict::BeforeStart {
            self.before_start[stream.index()] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multiplexed frame as the daemon sends it.
    fn frame(stream: u8, payload: &str) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload.as_bytes());
        f
    }

    #[test]
    fn positions_count_lines_per_nanosecond_and_skip_what_precedes_the_start() {
        let t = |ns: u32| format!("2024-01-01T00:00:00.{ns:09}Z");
        let mut wire = Vec::new();
        wire.extend(frame(1, &format!("{} early\n", t(1))));
        wire.extend(frame(1, &format!("{} a\n", t(5))));
        wire.extend(frame(2, &format!("{} e\n", t(5))));
        wire.extend(frame(1, &format!("{} b\n", t(5))));
        wire.extend(frame(1, &format!("{} unfinished", t(9))));
        let start = Timestamp::parse_rfc3339(t(5).as_bytes()).unwrap();
        for (stopped, lines) in [(true, 4), (false, 3)] {
            let mut read = Read::new(false, !stopped, start);
            for piece in wire.chunks(7) {
                read.push(piece).unwrap();
            }
            read.finish(stopped).unwrap();
            let log = &read.log;
            let got: Vec<(String, u64)> = Stream::ALL
                .iter()
                .flat_map(|s| &log.lines[s.index()])
                .map(|l| (String::from_utf8_lossy(&l.message).into_owned(), l.pos.n))
                .collect();
            let mut want = vec![("a".to_owned(), 1), ("b".to_owned(), 2)];
            if stopped {
                want.push(("unfinished".to_owned(), 1));
            }
            want.push(("e".to_owned(), 1));
            assert_eq!(got, want);
            assert_eq!(got.len(), lines);
            assert_eq!(log.before_start[Stream::Stdout.index()], 1);
        }
    }
}
