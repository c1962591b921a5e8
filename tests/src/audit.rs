//! Running `log-capturer audit` on a capture under test, and reading its report.

use std::process::Command;

use crate::capturer::{binary, Capturer};

/// What one audit said.
#[derive(Debug)]
pub struct Audit {
    /// Its exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its report (standard output).
    pub stdout: String,
    /// Its messages (standard error).
    pub stderr: String,
}

impl Audit {
    /// The `--json` report, parsed.
    ///
    /// # Panics
    /// If the report is not JSON (the audit was run without `--json`, or failed).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "the audit's report is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The report of container `id` in the `--json` report.
    ///
    /// # Panics
    /// If the report does not name it.
    pub fn container(&self, id: &str) -> serde_json::Value {
        self.json()["containers"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["id"] == id).cloned())
            .unwrap_or_else(|| panic!("the audit does not name {id}:\n{}", self.stdout))
    }
}

/// Runs `log-capturer audit` on `cap`'s output and state directory with `extra` arguments (the
/// daemon is the one `DOCKER_HOST` names, as for the capturer).
///
/// # Panics
/// If the binary cannot be run.
pub fn audit(cap: &Capturer, extra: &[&str]) -> Audit {
    let out = Command::new(binary())
        .arg("audit")
        .arg("--output")
        .arg(cap.output.join("out"))
        .arg("--state-dir")
        .arg(cap.state_dir())
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("run log-capturer audit: {e}"));
    Audit {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts that the audit of `cap`'s output exits 0 and finds each of `ids` exact, with every
/// one of its lines judged (none pending: the capture is complete).
///
/// # Panics
/// If it does not.
pub fn assert_audit_exact(cap: &Capturer, ids: &[&str]) {
    let a = audit(cap, &["--json"]);
    assert_eq!(
        a.code,
        Some(0),
        "log-capturer audit:\n{}\n{}",
        a.stdout,
        a.stderr
    );
    for id in ids {
        let c = a.container(id);
        let sum = |key: &str| -> u64 {
            c["streams"]
                .as_array()
                .map(|s| s.iter().filter_map(|s| s[key].as_u64()).sum())
                .unwrap_or(0)
        };
        assert!(
            c["verdict"] == "exact" && sum("judged") > 0 && sum("judged") == sum("exact"),
            "log-capturer audit of {id}: {c:#}"
        );
        assert_eq!(sum("pending"), 0, "log-capturer audit of {id}: {c:#}");
    }
}
