//! The output streams of a container, and which of them a container can write.

use std::fmt;

/// One output stream of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Stream {
    /// Standard output of a container without a TTY.
    Stdout,
    /// Standard error of a container without a TTY.
    Stderr,
    /// The single raw stream of a container with a TTY.
    Console,
}

impl Stream {
    /// Every stream, in index order.
    pub const ALL: [Stream; 3] = [Stream::Stdout, Stream::Stderr, Stream::Console];

    /// A dense index for per-stream arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in the output contract (`stdout`, `stderr`, `console`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Console => "console",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The streams a container writes: stdout and stderr, or the console alone (TTY).
///
/// The cursor's `since` is the minimum over these streams, so a stream that has written nothing
/// yet holds the reopen point at the capture's start: its first message may carry an older
/// timestamp than the other stream's last one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct StreamSet(u8);

impl StreamSet {
    /// stdout and stderr: a container without a TTY.
    pub const MULTIPLEXED: StreamSet = StreamSet(0b011);
    /// The console alone: a container with a TTY.
    pub const TTY: StreamSet = StreamSet(0b100);

    /// The set for a container, from its `Config.Tty`.
    pub fn for_tty(tty: bool) -> StreamSet {
        if tty {
            StreamSet::TTY
        } else {
            StreamSet::MULTIPLEXED
        }
    }

    /// Whether `stream` is in the set.
    pub fn contains(self, stream: Stream) -> bool {
        self.0 & (1 << stream.index()) != 0
    }

    /// The set with `stream` added.
    pub fn with(self, stream: Stream) -> StreamSet {
        StreamSet(self.0 | (1 << stream.index()))
    }

    /// The streams in the set, in index order.
    pub fn iter(self) -> impl Iterator<Item = Stream> {
        Stream::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}
