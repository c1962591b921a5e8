//! Where the benchmarked capturer delivers (`--sink file|nats|loki`): its own output files, a
//! NATS JetStream stream on a `nats-server` the bench starts for the run (issue 14), or the
//! Loki receiver of the tests, serving on a thread of the bench (issue 15; drain only). The
//! drain and the soak take a [`Sink`] and ask a [`Dest`] for the flags, the server's CPU and
//! the stream to read back, so that one benchmark serves every sink.

use capturer_tests::loki::LokiReceiver;
use capturer_tests::nats::{NatsServer, NatsTarget};

use crate::procfs;

/// The capturer's sink under benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// `--sink file` (the default): JSON lines in the output directory.
    File,
    /// `--sink nats`: one JetStream message per line.
    Nats,
    /// `--sink loki`: batches pushed to a Loki receiver.
    Loki,
}

impl Sink {
    /// `--sink file|nats|loki`; `None` for anything else.
    pub fn parse(name: &str) -> Option<Sink> {
        match name {
            "file" => Some(Sink::File),
            "nats" => Some(Sink::Nats),
            "loki" => Some(Sink::Loki),
            _ => None,
        }
    }
}

/// One capturer's destination: nothing to run for the file sink; for NATS a `nats-server -js`
/// of its own (a free loopback port, an empty file store, deleted when this is dropped) and
/// the capturer's default stream (`LOGS`) and subject prefix (`logs`) on it; for Loki a
/// receiver of its own and its URL.
pub struct Dest {
    nats: Option<(NatsServer, NatsTarget)>,
    loki: Option<(LokiReceiver, [String; 4])>,
}

impl Dest {
    /// A destination for run `name`; for NATS, starts its server.
    ///
    /// # Panics
    /// For NATS, if there is no `nats-server` (`scripts/testbed.sh` installs it) or it does
    /// not start.
    pub fn open(sink: Sink, name: &str) -> Dest {
        let nats = (sink == Sink::Nats).then(|| {
            let server = NatsServer::launch(&format!("bench-{name}"))
                .expect("no nats-server: run scripts/testbed.sh, which installs it");
            let target = NatsTarget::new(&server.url());
            (server, target)
        });
        let loki = (sink == Sink::Loki).then(|| {
            let rx = LokiReceiver::start();
            let flags = ["--sink", "loki", "--loki-url", &rx.url()].map(str::to_owned);
            (rx, flags)
        });
        Dest { nats, loki }
    }

    /// The capturer's flags that deliver here, then `extra`.
    pub fn flags<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        match (&self.nats, &self.loki) {
            (Some((_, target)), _) => target.flags(extra),
            (None, Some((_, flags))) => flags
                .iter()
                .map(String::as_str)
                .chain(extra.iter().copied())
                .collect(),
            (None, None) => extra.to_vec(),
        }
    }

    /// The Loki receiver, for `--sink loki`.
    pub fn loki(&self) -> Option<&LokiReceiver> {
        self.loki.as_ref().map(|(rx, _)| rx)
    }

    /// The stream the capturer publishes to, for NATS.
    pub fn target(&self) -> Option<&NatsTarget> {
        self.nats.as_ref().map(|(_, t)| t)
    }

    /// The server's process id, for NATS.
    pub fn server_pid(&self) -> Option<i32> {
        self.nats
            .as_ref()
            .and_then(|(s, _)| s.pid())
            .map(|pid| pid as i32)
    }

    /// The server's CPU seconds so far (user + system, from `/proc/PID/stat`); NaN without one.
    /// For Loki, the bench process's: the receiver is its busy part while the capturer runs.
    pub fn server_cpu(&self) -> f64 {
        if self.loki.is_some() {
            return procfs::sample(std::process::id() as i32).map_or(f64::NAN, |s| s.cpu);
        }
        self.server_pid()
            .and_then(procfs::sample)
            .map_or(f64::NAN, |s| s.cpu)
    }
}
