//! Publishes awaiting their acknowledgement, in publish order. Each publish asks for its
//! acknowledgement on `<inbox>.<token>`, one subscription receives them all, and the token says
//! which publish an acknowledgement answers: no request map, channel or timer per message
//! (async-nats' own request path cost the capturer a CPU second per million lines,
//! docs/benchmarks.md part 7).

use std::collections::VecDeque;
use std::io;

use async_nats::{Message, StatusCode, Subject};
use bytes::Bytes;
use capturer_core::Position;

/// One line to publish.
pub struct Line {
    /// `<prefix>.<container_id>.<stream>`.
    pub subject: Subject,
    /// `Nats-Msg-Id`: `<container_id>.<stream>.<ts_ns>.<n>`.
    pub id: String,
    /// The line's position in its stream.
    pub pos: Position,
    /// The JSON record.
    pub payload: Bytes,
}

/// Publishes not yet acknowledged, oldest first, with what their acknowledgement said.
#[derive(Default)]
pub struct InFlight {
    queue: VecDeque<(Line, Option<io::Result<()>>)>,
    /// The token of the first in `queue`.
    base: u64,
}

impl InFlight {
    /// The token the next publish asks its acknowledgement under.
    pub fn next_token(&self) -> u64 {
        self.base + self.queue.len() as u64
    }

    /// Records that `line` was published under [`InFlight::next_token`].
    pub fn push(&mut self, line: Line) {
        self.queue.push_back((line, None));
    }

    /// Publishes in flight.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none is in flight.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Records the answer for `token`; an answer for a publish no longer here (one given up
    /// on, and published again under another token) is ignored.
    pub fn answer(&mut self, token: u64, result: io::Result<()>) {
        let Some(i) = token.checked_sub(self.base) else {
            return;
        };
        if let Some((_, slot @ None)) = usize::try_from(i).ok().and_then(|i| self.queue.get_mut(i))
        {
            *slot = Some(result);
        }
    }

    /// Drops the acknowledged publishes at the front; returns the error of the first failed
    /// one if that is what stops it (it stays, with everything after it).
    pub fn pop_acknowledged(&mut self) -> Option<io::Error> {
        while let Some((_, answer)) = self.queue.front() {
            match answer {
                Some(Ok(())) => {
                    self.queue.pop_front();
                    self.base += 1;
                }
                Some(Err(e)) => return Some(io::Error::new(e.kind(), e.to_string())),
                None => break,
            }
        }
        None
    }

    /// Whether every publish in flight has its answer.
    pub fn all_answered(&self) -> bool {
        self.queue.iter().all(|(_, answer)| answer.is_some())
    }

    /// Gives up on every publish not acknowledged (failed, or not answered yet), returning
    /// them in publish order; the acknowledged ones are done.
    pub fn take_unacknowledged(&mut self) -> Vec<Line> {
        self.base += self.queue.len() as u64;
        self.queue
            .drain(..)
            .filter(|(_, answer)| !matches!(answer, Some(Ok(()))))
            .map(|(line, _)| line)
            .collect()
    }
}

/// The token of an acknowledgement: the last token of its subject.
pub fn token(ack: &Message) -> Option<u64> {
    ack.subject.as_str().rsplit('.').next()?.parse().ok()
}

/// What an acknowledgement says: stored (or a duplicate the stream already held), or why not.
pub fn verdict(ack: &Message) -> io::Result<()> {
    if ack.status == Some(StatusCode::NO_RESPONDERS) {
        return Err(io::Error::new(
            // Reset: the sink sets up its link again, and with it the stream.
            io::ErrorKind::ConnectionReset,
            "NATS: no stream takes this subject (was the stream deleted?)",
        ));
    }
    // `{"stream":"LOGS","seq":7}` or `{..,"duplicate":true}` when stored; an `error` object
    // when not. Only the rare error is parsed.
    if !contains(&ack.payload, b"\"error\"") {
        return Ok(());
    }
    let text = serde_json::from_slice::<serde_json::Value>(&ack.payload)
        .ok()
        .and_then(|v| v["error"]["description"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&ack.payload).into_owned());
    let kind = if super::is_full(&text) {
        io::ErrorKind::StorageFull
    } else {
        io::ErrorKind::Other
    };
    Err(io::Error::new(kind, format!("NATS: {text}")))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capturer_core::Timestamp;

    fn line(n: u64) -> Line {
        Line {
            subject: Subject::from("logs.c.stdout"),
            id: format!("c.stdout.1.{n}"),
            pos: Position {
                ts: Timestamp(1),
                n,
            },
            payload: Bytes::new(),
        }
    }

    fn ns(lines: &[Line]) -> Vec<u64> {
        lines.iter().map(|l| l.pos.n).collect()
    }

    #[test]
    fn acknowledgements_in_any_order_release_the_front_in_order() {
        let mut f = InFlight::default();
        for n in 0..4 {
            assert_eq!(f.next_token(), n);
            f.push(line(n));
        }
        f.answer(1, Ok(()));
        assert!(f.pop_acknowledged().is_none());
        assert_eq!(f.len(), 4, "the first is unanswered: nothing is released");
        f.answer(0, Ok(()));
        assert!(f.pop_acknowledged().is_none());
        assert_eq!(f.len(), 2);
        assert_eq!(f.next_token(), 4);
    }

    #[test]
    fn a_failure_gives_back_only_what_was_not_stored_in_order() {
        let mut f = InFlight::default();
        for n in 0..5 {
            f.push(line(n));
        }
        f.answer(0, Ok(()));
        f.answer(1, Err(io::Error::new(io::ErrorKind::StorageFull, "full")));
        f.answer(2, Ok(()));
        f.answer(4, Ok(()));
        let e = f.pop_acknowledged().expect("the failure stops the front");
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert!(!f.all_answered(), "3 is unanswered");
        assert_eq!(ns(&f.take_unacknowledged()), [1, 3]);
        assert!(f.is_empty());
        // A late answer for a publish given up on is ignored; new tokens do not reuse old ones.
        f.answer(3, Ok(()));
        assert_eq!(f.next_token(), 5);
        f.push(line(3));
        f.answer(5, Ok(()));
        assert!(f.pop_acknowledged().is_none());
        assert!(f.is_empty());
    }

    #[test]
    fn verdicts_of_the_server_answers() {
        let ack = |payload: &str| Message {
            subject: Subject::from("_INBOX.x.17"),
            reply: None,
            payload: Bytes::from(payload.to_owned()),
            headers: None,
            status: None,
            description: None,
            length: payload.len(),
        };
        assert_eq!(token(&ack("")), Some(17));
        assert!(verdict(&ack(r#"{"stream":"LOGS","seq":7}"#)).is_ok());
        assert!(verdict(&ack(r#"{"stream":"LOGS","seq":7,"duplicate":true}"#)).is_ok());
        let full = verdict(&ack(
            r#"{"error":{"code":503,"err_code":10077,"description":"maximum bytes exceeded"}}"#,
        ))
        .unwrap_err();
        assert_eq!(full.kind(), io::ErrorKind::StorageFull);
        assert!(
            full.to_string().contains("maximum bytes exceeded"),
            "{full}"
        );
        let mut none = ack("");
        none.status = Some(StatusCode::NO_RESPONDERS);
        assert_eq!(
            verdict(&none).unwrap_err().kind(),
            io::ErrorKind::ConnectionReset
        );
    }
}
