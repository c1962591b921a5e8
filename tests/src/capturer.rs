//! Running the real `log-capturer` binary under test, and reading what it captured.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One captured line, as the output contract writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `ts`, as the daemon sent it.
    pub ts: String,
    /// `stream`.
    pub stream: String,
    /// `message`.
    pub message: String,
    /// `container_id`.
    pub container_id: String,
    /// `container_name`.
    pub container_name: String,
    /// `image`.
    pub image: String,
    /// `truncated`, if present.
    pub truncated: bool,
    /// `pos`: the line's position in its stream, `<ts in ns>.<n>`.
    pub pos: String,
}

/// Serializes the end-to-end tests: each runs its own capturer and containers, and the
/// machine has two cores. (Each test has its own runtime; tokio's mutex works across them.)
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The capturer binary, built once per test run (`cargo build -p capturer-runtime`); or, if
/// the environment variable `CAPTURER_BIN` names one, that binary as it is (e.g. an older
/// build, to see what a test makes of it).
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("CAPTURER_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("test executable path");
        // A test runs from target/<profile>/deps/, a binary (the bench) from target/<profile>/.
        let mut profile_dir = exe.parent().expect("target dir").to_owned();
        if profile_dir.file_name().is_some_and(|n| n == "deps") {
            profile_dir = profile_dir.parent().expect("target dir").to_owned();
        }
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_owned();
        let target = profile_dir.parent().expect("target root").to_owned();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "build",
            "-q",
            "-p",
            "capturer-runtime",
            "--bin",
            "log-capturer",
        ])
        .env("CARGO_TARGET_DIR", &target);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building log-capturer failed");
        profile_dir.join("log-capturer")
    })
    .clone()
}

/// A free loopback port (bound then released).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local addr")
}

/// A capturer process under test, with its own output directory.
pub struct Capturer {
    child: Option<Child>,
    /// The output directory.
    pub output: PathBuf,
    /// Where its metrics are served.
    pub metrics: SocketAddr,
    args: Vec<String>,
    log: PathBuf,
    starts: u32,
    /// Standard output to a pipe (kept in `stdout`) instead of [`Capturer::stdout_path`].
    pipe_stdout: bool,
    stdout: Option<ChildStdout>,
    /// Keep the output directory when dropped (the caller removes it, or wants it).
    keep: bool,
}

impl Capturer {
    /// Replaces the argument `old` with `new` for the next start (e.g. a flag's value), so a
    /// restart runs with a corrected setting and the same output and state.
    ///
    /// # Panics
    /// If no argument is `old`.
    pub fn replace_arg(&mut self, old: &str, new: &str) {
        let arg = self
            .args
            .iter_mut()
            .find(|a| a.as_str() == old)
            .unwrap_or_else(|| panic!("no argument {old:?}"));
        *arg = new.to_owned();
    }

    /// Starts `log-capturer run` selecting containers labelled `label` (`key=value`), with
    /// `extra` flags, writing under a fresh directory named after `name`.
    pub fn start(name: &str, label: &str, extra: &[&str]) -> Capturer {
        Capturer::start_with_state(name, label, extra, &[])
    }

    /// Like `start`, with cursor files placed in the state directory first: `(container id,
    /// file contents)`. A stopped container with a cursor is read at start-up.
    pub fn start_with_state(
        name: &str,
        label: &str,
        extra: &[&str],
        state: &[(String, String)],
    ) -> Capturer {
        let mut c = Capturer::prepare(name, label, extra);
        for (id, contents) in state {
            std::fs::write(c.state_dir().join(format!("{id}.json")), contents)
                .expect("write a cursor");
        }
        c.spawn();
        c
    }

    /// Like `start`, but not started yet: its directories exist (emptied), and
    /// [`Capturer::restart`] starts it. For a test that prepares the output directory first
    /// (mounts a file system on it, say).
    pub fn prepare(name: &str, label: &str, extra: &[&str]) -> Capturer {
        let output = std::env::temp_dir().join(format!("lc-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&output);
        let state_dir = output.join("out").join(".state");
        std::fs::create_dir_all(&state_dir).expect("create the output directory");
        let metrics = free_addr();
        let mut args: Vec<String> = vec![
            "run".into(),
            "--output".into(),
            output.join("out").display().to_string(),
            "--include-label".into(),
            label.into(),
            "--metrics-addr".into(),
            metrics.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = output.join("capturer.log");
        Capturer {
            child: None,
            output,
            metrics,
            args,
            log,
            starts: 0,
            pipe_stdout: false,
            stdout: None,
            keep: false,
        }
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the capturer log");
        let stdout = if self.pipe_stdout {
            Stdio::piped()
        } else {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.stdout_path())
                .expect("open the capturer's stdout file")
                .into()
        };
        let mut child = Command::new(binary())
            .args(&self.args)
            .env("LOG_CAPTURER_LOG", "info")
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .expect("start log-capturer");
        self.stdout = child.stdout.take();
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the metrics endpoint answers (the capturer is up and discovering).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.try_metrics().is_some() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "log-capturer exited at start-up with {status}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("log-capturer did not come up:\n{}", self.log_text());
    }

    /// Starts it again with the same settings (same output and state); or for the first time,
    /// after [`Capturer::prepare`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn();
    }

    /// From the next start on: standard output to a pipe, which nobody reads until the test
    /// takes it ([`Capturer::take_stdout`]); or (`false`) appended to
    /// [`Capturer::stdout_path`] again.
    pub fn pipe_stdout(&mut self, pipe: bool) {
        self.pipe_stdout = pipe;
    }

    /// Keeps the output directory when this is dropped: the caller decides (the torture keeps
    /// a failed round's output and removes a passed one's).
    pub fn keep_output(&mut self) {
        self.keep = true;
    }

    /// The read end of the standard output pipe of the last start, if it went to a pipe.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// The capturer's process id.
    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map(|c| c.id() as i32)
            .expect("capturer running")
    }

    /// Sends SIGTERM and waits for it to exit; returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.wait_exit(Duration::from_secs(30))
    }

    /// Sends SIGKILL and reaps it.
    pub fn kill(&mut self) {
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        self.wait_exit(Duration::from_secs(10));
    }

    /// Sends SIGTERM and waits at most `limit` for it to exit: its status and how long it
    /// took, or `None` if it did not exit in time (it is SIGKILLed then, so a test that found
    /// it hanging fails at once instead of hanging too).
    pub fn terminate_within(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let began = Instant::now();
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let status = self.try_wait_exit(limit)?;
        Some((status, began.elapsed()))
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        self.try_wait_exit(limit).unwrap_or_else(|| {
            panic!(
                "log-capturer did not exit within {limit:?}:\n{}",
                self.log_text()
            )
        })
    }

    /// Waits at most `limit` for the process to exit; if it does not, SIGKILLs and reaps it.
    fn try_wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("capturer running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait for log-capturer") {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The capturer's resident set size in bytes (`VmRSS`), or `None` if it is not running.
    pub fn rss(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = status.lines().find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()
        })?;
        Some(kib * 1024)
    }

    /// The capturer's own log (stderr), for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the capturer's standard output goes (the `--sink stdout` lines).
    pub fn stdout_path(&self) -> PathBuf {
        self.output.join("stdout.jsonl")
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.output.join("out").join(".state")
    }

    fn try_metrics(&self) -> Option<String> {
        http_get(self.metrics, "/metrics")
    }

    /// `/metrics`, as text.
    pub fn metrics_text(&self) -> String {
        self.try_metrics().unwrap_or_default()
    }

    /// One sample of `/metrics` (`name` with its labels, e.g. `log_capturer_tasks_alive`).
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// The sum of every sample of metric `name` (over its labels); 0 if absent.
    pub fn metric_sum(&self, name: &str) -> f64 {
        self.metrics_text()
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let value = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} ")?.1,
                    None => rest.strip_prefix(' ')?,
                };
                value.trim().parse::<f64>().ok()
            })
            .sum()
    }

    /// `/debug/tasks`, parsed.
    pub fn debug_tasks(&self) -> serde_json::Value {
        let body = http_get(self.metrics, "/debug/tasks").unwrap_or_default();
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    }

    /// The capture files of `container_id`, in order (rotated files first).
    pub fn files(&self, container_id: &str) -> Vec<PathBuf> {
        let dir = self.output.join("out");
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter_map(|p| {
                        let name = p.file_name()?.to_str()?.to_owned();
                        let rest = name.strip_prefix(container_id)?.strip_prefix(".jsonl")?;
                        let order = match rest.strip_prefix('.') {
                            Some(n) => n.parse().ok()?,
                            None if rest.is_empty() => u64::MAX,
                            None => return None,
                        };
                        Some((order, p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.into_iter().map(|(_, p)| p).collect()
    }

    /// Every line captured for `container_id`, in file order (rotated files first).
    pub fn records(&self, container_id: &str) -> Vec<Record> {
        let mut out = Vec::new();
        for path in self.files(container_id) {
            let text = std::fs::read_to_string(&path).expect("read captured output");
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("not a JSON line in {}: {e}: {line:?}", path.display())
                });
                out.push(
                    record(&v).unwrap_or_else(|| panic!("a field is missing or mistyped: {line}")),
                );
            }
        }
        out
    }

    /// Like [`Capturer::records`], for a capture that may hold torn records: a line that is not
    /// one record (a SIGKILL cut a write short, and the next process appended to the fragment)
    /// is counted, and the last record that starts inside it is kept; bytes after the last
    /// newline (a write in progress, or a fragment) are counted, not parsed.
    pub fn records_lenient(&self, container_id: &str) -> Lenient {
        let mut out = Lenient::default();
        for path in self.files(container_id) {
            if let Ok(bytes) = std::fs::read(&path) {
                out.add(&bytes);
            }
        }
        out
    }

    /// Waits until at least `n` lines of `container_id` are captured, or `limit` passes.
    pub fn wait_for_lines(&self, container_id: &str, n: usize, limit: Duration) -> Vec<Record> {
        let deadline = Instant::now() + limit;
        loop {
            let records = self.records(container_id);
            if records.len() >= n || Instant::now() > deadline {
                return records;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Capturer {
    /// Kills the process; removes the output directory unless the test is failing (it is
    /// kept for a look then) or [`Capturer::keep_output`] was called, so that passing runs
    /// leave nothing behind (they used to leave about 250 MB each in the temp directory).
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.keep && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.output);
        }
    }
}

/// A plain HTTP/1.0 GET on loopback; `None` if nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some(body.to_owned())
}

/// What [`Capturer::records_lenient`] read.
#[derive(Clone, Debug, Default)]
pub struct Lenient {
    /// The records, in file order.
    pub records: Vec<Record>,
    /// Lines that were not one whole record.
    pub torn: usize,
    /// Bytes after the last newline of a file.
    pub unterminated: usize,
}

impl Lenient {
    /// Reads one file's (or one pipe's) JSON lines, as [`Capturer::records_lenient`] does.
    pub fn read(bytes: &[u8]) -> Lenient {
        let mut out = Lenient::default();
        out.add(bytes);
        out
    }

    /// Adds what `bytes` hold: a line that is not one record is counted as torn and the last
    /// record that starts inside it is kept; bytes after the last newline are counted, not
    /// parsed.
    pub fn add(&mut self, bytes: &[u8]) {
        const START: &str = "{\"container_id\":";
        let text = String::from_utf8_lossy(bytes);
        let Some((whole, tail)) = text.rsplit_once('\n') else {
            self.unterminated += text.len();
            return;
        };
        self.unterminated += tail.len();
        for line in whole.split('\n') {
            let parsed = serde_json::from_str::<serde_json::Value>(line).ok();
            match parsed.as_ref().and_then(record) {
                Some(r) => self.records.push(r),
                None => {
                    self.torn += 1;
                    let last = line.rfind(START).and_then(|at| {
                        let v = serde_json::from_str::<serde_json::Value>(&line[at..]).ok()?;
                        record(&v)
                    });
                    self.records.extend(last);
                }
            }
        }
    }
}

/// One record from its JSON object; `None` if a field is missing or mistyped. (Also how the
/// NATS reader turns a message's payload back into a record.)
pub fn record(v: &serde_json::Value) -> Option<Record> {
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    Some(Record {
        ts: s("ts")?,
        stream: s("stream")?,
        message: s("message")?,
        container_id: s("container_id")?,
        container_name: s("container_name")?,
        image: s("image")?,
        truncated: v["truncated"].as_bool().unwrap_or(false),
        pos: s("pos")?,
    })
}

/// Lines per stream, in order: `stream -> messages`.
pub fn by_stream(records: &[Record]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for r in records {
        out.entry(r.stream.clone())
            .or_default()
            .push(r.message.clone());
    }
    out
}
