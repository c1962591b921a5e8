//! The daemon the rounds run against: a private `dockerd` of the torture's own, or the shared
//! test bed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;
use capturer_tests::remove;
use futures_util::stream::{self, StreamExt};

/// The daemon the rounds run against.
pub(super) struct Bed {
    /// A client to it (a new one after each restart).
    pub(super) docker: Docker,
    /// Its address, for the capturer's `--docker-host`.
    pub(super) host: String,
    /// Our own dockerd, if it could be started.
    private: Option<Private>,
}

/// A dockerd of the torture's own, under one directory.
struct Private {
    /// Its socket, data and exec roots, log and pid file.
    dir: PathBuf,
    /// The running dockerd (none while stopped).
    child: Option<Child>,
}

impl Private {
    /// The socket it listens on.
    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// Starts it, logging to `dockerd.log` in its directory.
    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run dockerd: {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGTERM, then waits (it stops its containers first, each within its stop timeout).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                println!("torture: dockerd did not stop within 60 s; killing it");
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of its log (for a start-up failure).
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Bed {
    /// Whether it is the torture's own daemon (which may be restarted).
    pub(super) fn is_private(&self) -> bool {
        self.private.is_some()
    }

    /// The private daemon, or (if it cannot be had, or `shared`) the shared test bed.
    pub(super) async fn open(shared: bool) -> Option<Bed> {
        if !shared {
            match Bed::private().await {
                Ok(bed) => return Some(bed),
                Err(e) => println!(
                    "torture: no private daemon ({e}); falling back to the shared test bed, without daemon restarts"
                ),
            }
        }
        let Some(docker) = capturer_tests::docker().await else {
            println!("torture: no Docker daemon; run scripts/testbed.sh first");
            return None;
        };
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        Some(Bed {
            docker,
            host,
            private: None,
        })
    }

    /// Starts the private daemon and imports the test image into it.
    async fn private() -> Result<Bed, String> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        let dir = std::env::temp_dir().join(format!("lc-torture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut private = Private { dir, child: None };
        private.spawn()?;
        let docker = answer(&mut private).await?;
        // The test image, built the way the test bed builds it (a static busybox, imported).
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testbed.sh");
        let host = format!("unix://{}", private.socket().display());
        let out = Command::new(script)
            .env("DOCKER_HOST", &host)
            .env("TESTBED_DIR", private.dir.join("testbed"))
            .output()
            .map_err(|e| format!("cannot run scripts/testbed.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/testbed.sh could not build the image: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Bed {
            docker,
            host,
            private: Some(private),
        })
    }

    /// Restarts the private daemon (SIGTERM, wait, start, wait until it answers); how long
    /// the stop took.
    pub(super) async fn restart(&mut self) -> Result<Duration, String> {
        let private = self
            .private
            .as_mut()
            .ok_or("the shared daemon is not restarted")?;
        let began = Instant::now();
        private.stop();
        let stopped = began.elapsed();
        private.spawn()?;
        self.docker = answer(private).await?;
        Ok(stopped)
    }

    /// Brings the private daemon back if it is down (after a panic mid-restart).
    pub(super) async fn ensure_up(&mut self) -> Result<(), String> {
        if self.docker.ping().await.is_ok() {
            return Ok(());
        }
        match &mut self.private {
            Some(p) => {
                if p.child.is_none() {
                    p.spawn()?;
                }
                self.docker = answer(p).await?;
                Ok(())
            }
            None => Err("the shared daemon does not answer".into()),
        }
    }

    /// Removes every container labelled `lc.bench=<label>`; returns how many are left after.
    pub(super) async fn remove_label(&self, label: &str) -> usize {
        let ids = self.labelled(label, false).await;
        stream::iter(&ids)
            .for_each_concurrent(8, |id| async move { remove(&self.docker, id).await })
            .await;
        self.labelled(label, false).await.len()
    }

    /// Ids of the containers labelled `lc.bench=<label>`, only running ones if `running`.
    pub(super) async fn labelled(&self, label: &str, running: bool) -> Vec<String> {
        let selector = format!("lc.bench={label}");
        let filters: HashMap<&str, Vec<&str>> = HashMap::from([("label", vec![selector.as_str()])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .unwrap_or_default();
        list.into_iter()
            .filter(|c| {
                !running
                    || matches!(
                        c.state,
                        Some(
                            ContainerSummaryStateEnum::RUNNING
                                | ContainerSummaryStateEnum::RESTARTING
                        )
                    )
            })
            .filter_map(|c| c.id)
            .collect()
    }

    /// Stops the private daemon and deletes its directory (unless `keep`, or something is
    /// still mounted under it: then it says so and leaves it).
    pub(super) fn shutdown(&mut self, keep: bool) {
        let Some(mut private) = self.private.take() else {
            return;
        };
        private.stop();
        if keep {
            println!(
                "torture: the daemon's directory is kept: {}",
                private.dir.display()
            );
            return;
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = private.dir.display().to_string();
        if mounts.lines().any(|l| l.contains(&dir)) {
            println!("torture: something is still mounted under {dir}; left in place");
        } else {
            let _ = std::fs::remove_dir_all(&private.dir);
        }
    }
}

/// Waits (up to 60 s) until the private daemon answers; a client to it.
async fn answer(private: &mut Private) -> Result<Docker, String> {
    let socket = private.socket();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = Docker::connect_with_unix(
            &socket.display().to_string(),
            120,
            bollard::API_DEFAULT_VERSION,
        );
        if let Ok(d) = found {
            if let Ok(d) = d.negotiate_version().await {
                return Ok(d);
            }
        }
        let exited = private
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            private.child = None;
            return Err(format!(
                "dockerd exited at start-up ({status}):\n{}",
                private.log_tail()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "dockerd did not answer within 60 s:\n{}",
                private.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
