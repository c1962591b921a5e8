//! Where the benchmarked capturer delivers (`--sink file|nats`): its own output files, or a
//! NATS JetStream stream on a `nats-server` the bench starts for the run (issue 14). The drain
//! and the soak take a [`Sink`] and ask a [`Dest`] for the flags, the server's CPU and the
//! stream to read back, so that one benchmark serves both sinks.

use capturer_tests::nats::{NatsServer, NatsTarget};

use crate::procfs;

/// The capturer's sink under benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// `--sink file` (the default): JSON lines in the output directory.
    File,
    /// `--sink nats`: one JetStream message per line.
    Nats,
}

impl Sink {
    /// `--sink file|nats`; `None` for anything else.
    pub fn parse(name: &str) -> Option<Sink> {
        match name {
            "file" => Some(Sink::File),
            "nats" => Some(Sink::Nats),
            _ => None,
        }
    }
}

/// One capturer's destination: nothing to run for the file sink; for NATS a `nats-server -js`
/// of its own (a free loopback port, an empty file store, deleted when this is dropped) and
/// the capturer's default stream (`LOGS`) and subject prefix (`logs`) on it.
pub struct Dest {
    nats: Option<(NatsServer, NatsTarget)>,
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
        Dest { nats }
    }

    /// The capturer's flags that deliver here, then `extra`.
    pub fn flags<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        match &self.nats {
            Some((_, target)) => target.flags(extra),
            None => extra.to_vec(),
        }
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
    pub fn server_cpu(&self) -> f64 {
        self.server_pid()
            .and_then(procfs::sample)
            .map_or(f64::NAN, |s| s.cpu)
    }
}
