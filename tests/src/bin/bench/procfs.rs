//! What a process costs, read from `/proc` and `wait4`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// CPU, memory and descriptors of a live process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// User + system CPU seconds so far.
    pub cpu: f64,
    /// User CPU seconds.
    pub user: f64,
    /// System CPU seconds.
    pub sys: f64,
    /// Resident set size, bytes.
    pub rss: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Context switches so far, voluntary + involuntary, over all threads.
    pub switches: u64,
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Samples process `pid`; `None` if it is gone.
pub fn sample(pid: i32) -> Option<Sample> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let hz = ticks_per_sec();
    let user = f.get(11)?.parse::<f64>().ok()? / hz;
    let sys = f.get(12)?.parse::<f64>().ok()? / hz;
    let page = 4096u64;
    let rss = f.get(21)?.parse::<u64>().ok()? * page;
    let fds = std::fs::read_dir(dir.join("fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut switches = 0;
    if let Ok(tasks) = std::fs::read_dir(dir.join("task")) {
        for t in tasks.flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            switches +=
                field(&s, "voluntary_ctxt_switches:") + field(&s, "nonvoluntary_ctxt_switches:");
        }
    }
    Some(Sample {
        cpu: user + sys,
        user,
        sys,
        rss,
        fds,
        switches,
    })
}

/// What running a command to its end cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run {
    /// Wall time.
    pub wall: Duration,
    /// User CPU seconds.
    pub user: f64,
    /// System CPU seconds.
    pub sys: f64,
    /// Exit status as wait(2) reports it.
    pub status: i32,
}

/// Runs `cmd` to its end and reports its wall time and CPU (from `wait4`'s rusage).
pub fn run(cmd: &mut Command) -> Run {
    let began = Instant::now();
    // Reaped below by wait4 (which std's Child cannot do, and which gives the rusage).
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("spawn a measured command");
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, with valid pointers.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(r > 0, "wait4 failed");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Run {
        wall: began.elapsed(),
        user: secs(usage.ru_utime),
        sys: secs(usage.ru_stime),
        status,
    }
}

/// The test bed's dockerd, if this harness knows its pid.
pub fn dockerd_pid() -> Option<i32> {
    let text = std::fs::read_to_string("/tmp/log-capturer-testbed/dockerd.pid").ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    sample(pid).map(|_| pid)
}
