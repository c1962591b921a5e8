//! The standard-output sink. A pipe cannot be fsynced: lines are durable once the reader of
//! the pipe has them, which is as far as the capturer can see. It cannot be read back either,
//! so a SIGKILL replays up to a checkpoint interval of lines here (the file sink does not).

use std::io::{self, Write};
use std::sync::Arc;

use super::pending::Pending;
use super::Output;
use crate::state::Mark;

/// Standard output, written whole lines at a time.
pub struct StdoutOutput {
    out: io::Stdout,
    pending: Pending,
}

impl StdoutOutput {
    /// The process's standard output.
    pub fn new() -> StdoutOutput {
        StdoutOutput {
            out: io::stdout(),
            pending: Pending::default(),
        }
    }
}

impl Output for StdoutOutput {
    fn take(&mut self, _id: &Arc<str>, bytes: Vec<u8>) {
        self.pending.push(bytes);
    }

    fn write(&mut self) -> io::Result<()> {
        let mut out = self.out.lock();
        self.pending.write_to(&mut out, |_| {})?;
        out.flush()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.write()
    }

    fn mark(&self, _id: &str) -> Option<Mark> {
        None
    }

    fn close(&mut self, _id: &str) -> io::Result<()> {
        Ok(())
    }
}
