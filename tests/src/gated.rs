//! Writers that go on until the test says stop, and SIGKILLs of the capturer while they write:
//! the shape of every "kill it at random moments" test, whatever the sink.

use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;

use crate::capturer::Capturer;
use crate::rng::Rng;
use crate::{start, wait_exit};

/// `n` containers labelled `labels`, each writing bursts of 40 lines per stream at full speed
/// (`c<i> o <k>` to stdout, `c<i> e <k>` to stderr, interleaved, a pair may share its
/// nanosecond), 10 ms apart, until [`GatedWriters::stop`]: however slow the machine, every
/// kill comes while they write.
pub struct GatedWriters {
    /// The containers, in order.
    pub ids: Vec<String>,
    gate: PathBuf,
}

impl GatedWriters {
    /// Starts them; the gate directory lives under the capturer's output.
    ///
    /// # Panics
    /// If a container cannot be started.
    pub async fn start(
        docker: &Docker,
        cap: &Capturer,
        labels: &std::collections::HashMap<String, String>,
        n: usize,
    ) -> GatedWriters {
        let gate = cap.output.join("gate");
        std::fs::create_dir_all(&gate).expect("create the gate directory");
        let mut ids = Vec::new();
        for c in 0..n {
            let script = format!(
                "i=0; while [ ! -f /gate/stop ]; do j=0; while [ $j -lt 40 ]; do \
                 echo \"c{c} o $i\"; echo \"c{c} e $i\" >&2; i=$((i+1)); j=$((j+1)); done; \
                 usleep 10000; done"
            );
            let mut s = crate::exact::spec(labels, &script);
            s.binds = vec![format!("{}:/gate", gate.display())];
            ids.push(start(docker, &s).await.expect("start a gated writer"));
        }
        GatedWriters { ids, gate }
    }

    /// Tells them to stop and waits until every one has exited.
    pub async fn stop(&self, docker: &Docker) {
        std::fs::write(self.gate.join("stop"), b"").expect("close the gate");
        for id in &self.ids {
            wait_exit(docker, id).await;
        }
    }
}

/// SIGKILLs `cap` `kills` times, each after a pause drawn log-uniformly from 20 ms to `max_ms`
/// (as many during a start's recovery as in steady work), starting it again at once; returns
/// the pauses in ms.
pub async fn kill_at_random(
    cap: &mut Capturer,
    rng: &mut Rng,
    kills: usize,
    max_ms: f64,
) -> Vec<u128> {
    let mut moments = Vec::new();
    for _ in 0..kills {
        let after = Duration::from_millis(rng.log_uniform(20.0, max_ms) as u64);
        tokio::time::sleep(after).await;
        moments.push(after.as_millis());
        cap.kill();
        cap.restart();
    }
    moments
}
