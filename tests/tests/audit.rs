//! End to end: `log-capturer audit` against real captures and the real daemon. A capture
//! stopped gracefully is exact; the same output with a line deleted, one duplicated and two
//! swapped is not, and the audit names each kind, its container and the first difference's
//! position; lines written after the capture stopped are pending, not lost.

// Test tooling: a set-up step that fails must fail the test.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use capturer_tests::audit::{audit, Audit};
use capturer_tests::capturer::{exclusive, Capturer};
use capturer_tests::exact::{
    assert_stopped_cleanly, label, pairs, spec, unique_at_least, wait_until,
};
use capturer_tests::{daemon_lines, docker, remove, start, wait_exit};

/// The counts the audit gives for `stream` of a container report.
fn stream(c: &serde_json::Value, stream: &str) -> serde_json::Value {
    c["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stream"] == stream).cloned())
        .unwrap_or_else(|| panic!("no {stream} in {c:#}"))
}

/// The sum of count `key` over a container report's streams.
fn total(c: &serde_json::Value, key: &str) -> u64 {
    c["streams"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s[key].as_u64()).sum())
        .unwrap_or(0)
}

/// Starts `specs` under a capturer selecting `sel`, waits until each has exited and its `want`
/// lines are captured, and stops the capturer gracefully. Returns the capturer and the ids.
async fn capture(
    docker: &Docker,
    name: &str,
    sel: &str,
    specs: &[(capturer_tests::Spec, usize)],
) -> (Capturer, Vec<String>) {
    let mut cap = Capturer::start(name, sel, &[]);
    let mut ids = Vec::new();
    for (s, _) in specs {
        ids.push(start(docker, s).await.expect("start"));
    }
    for (id, (_, want)) in ids.iter().zip(specs) {
        wait_exit(docker, id).await;
        wait_until(&cap, id, Duration::from_secs(60), unique_at_least(*want));
    }
    let status = cap.terminate();
    assert_stopped_cleanly(status, &cap);
    (cap, ids)
}

fn show(a: &Audit) -> String {
    format!("exit {:?}\n{}\n{}", a.code, a.stdout, a.stderr)
}

#[tokio::test]
async fn a_a_graceful_capture_is_exact() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("audit-a");
    let mut tty = spec(
        &labels,
        "i=0; while [ $i -lt 500 ]; do echo \"tty $i\"; i=$((i+1)); done",
    );
    tty.tty = true;
    // A line over the 1 MiB cap: captured as a truncated record and the rest.
    let long = format!(
        "{}; head -c 1200000 /dev/zero | tr '\\0' x; echo; echo after",
        pairs("l", 100)
    );
    let specs = [
        (spec(&labels, &pairs("p", 3000)), 6000),
        (spec(&labels, &pairs("q", 3000)), 6000),
        (tty, 500),
        (spec(&labels, &long), 203),
    ];
    let (cap, ids) = capture(&docker, "audit-a", &sel, &specs).await;
    let a = audit(&cap, &["--json"]);
    assert_eq!(a.code, Some(0), "{}", show(&a));
    for (id, (s, _)) in ids.iter().zip(&specs) {
        let c = a.container(id);
        assert_eq!(c["verdict"], "exact", "{c:#}");
        let truth = daemon_lines(&docker, id, s.tty).await;
        // The long line is one line to the daemon's oracle and two records to the capture.
        let records =
            truth.len() as u64 + u64::from(truth.iter().any(|l| l.message.len() > 1 << 20));
        assert_eq!(total(&c, "judged"), records, "{c:#}");
        assert_eq!(total(&c, "exact"), records, "{c:#}");
        assert_eq!(total(&c, "pending"), 0, "{c:#}");
    }
    assert_eq!(stream(&a.container(&ids[2]), "console")["exact"], 500);
    assert_eq!(stream(&a.container(&ids[0]), "stderr")["exact"], 3000);
    // The text report says the same.
    let text = audit(&cap, &[]);
    assert_eq!(text.code, Some(0), "{}", show(&text));
    assert!(
        text.stdout.contains("judged 4: 4 exact, 0 different"),
        "{}",
        show(&text)
    );
    for id in &ids {
        remove(&docker, id).await;
    }
}

/// The lines of `path`.
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read a capture file")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn field(line: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).expect("a record");
    v[key].as_str().expect("a string field").to_owned()
}

#[tokio::test]
async fn b_a_tampered_output_is_different_and_each_difference_is_named() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("audit-b");
    let specs: Vec<_> = ["u", "d", "c", "s"]
        .iter()
        .map(|p| (spec(&labels, &pairs(p, 1000)), 2000))
        .collect();
    let (cap, ids) = capture(&docker, "audit-b", &sel, &specs).await;
    let exact = audit(&cap, &[]);
    assert_eq!(exact.code, Some(0), "before tampering: {}", show(&exact));

    // One kind of tampering per container; `ids[0]` is left alone.
    let mut first: HashMap<&str, (String, String)> = HashMap::new();
    for (id, kind) in ids[1..].iter().zip(["lost", "duplicated", "reordered"]) {
        let files = cap.files(id);
        let path = files.last().expect("a capture file");
        let mut l = lines(path);
        let k = 700;
        let (pos, s) = (field(&l[k], "pos"), field(&l[k], "stream"));
        match kind {
            "lost" => {
                l.remove(k);
            }
            "duplicated" => l.insert(k + 1, l[k].clone()),
            _ => {
                let j = (k + 1..l.len())
                    .find(|&j| field(&l[j], "stream") == s)
                    .expect("a later line of the same stream");
                l.swap(k, j);
            }
        }
        std::fs::write(path, l.join("\n") + "\n").expect("tamper");
        first.insert(id, (kind.to_owned(), format!("{s} {pos}")));
    }

    let a = audit(&cap, &["--json"]);
    assert_eq!(a.code, Some(1), "{}", show(&a));
    assert_eq!(a.container(&ids[0])["verdict"], "exact", "{}", show(&a));
    for id in &ids[1..] {
        let c = a.container(id);
        let (kind, at) = &first[id.as_str()];
        let (s, pos) = at.split_once(' ').expect("stream and pos");
        assert_eq!(c["verdict"], "different", "{c:#}");
        let counts = stream(&c, s);
        for k in ["lost", "duplicated", "reordered", "differing", "extra"] {
            let want = u64::from(k == kind);
            assert_eq!(counts[k], want, "{kind} in {s}: {k} {c:#}");
        }
        let d = &c["first_difference"];
        assert_eq!(
            (d["kind"].as_str(), d["stream"].as_str(), d["pos"].as_str()),
            (Some(kind.as_str()), Some(s), Some(pos)),
            "{c:#}"
        );
        assert!(d["daemon"].is_string() && d["ts"].is_string(), "{c:#}");
    }
    // The text names each kind next to its container.
    let text = audit(&cap, &[]);
    assert_eq!(text.code, Some(1), "{}", show(&text));
    assert!(
        text.stdout.contains("judged 4: 1 exact, 3 different"),
        "{}",
        show(&text)
    );
    for id in &ids[1..] {
        let (kind, at) = &first[id.as_str()];
        let (s, pos) = at.split_once(' ').expect("stream and pos");
        let block = text
            .stdout
            .split(&format!("({}", &id[..12]))
            .nth(1)
            .expect("the container's block");
        assert!(
            block.contains(&format!("1 {kind}"))
                && block.contains(&format!("first difference: {s} {kind} at pos {pos}")),
            "{}",
            show(&text)
        );
    }
    for id in &ids {
        remove(&docker, id).await;
    }
}

#[tokio::test]
async fn c_lines_written_after_the_capture_stopped_are_pending_not_lost() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("audit-c");
    let specs = [(spec(&labels, &pairs("r", 500)), 1000)];
    let (cap, ids) = capture(&docker, "audit-c", &sel, &specs).await;
    // The same script once more: 1,000 lines after the cursor that nobody captures.
    docker
        .start_container(&ids[0], None)
        .await
        .expect("start again");
    wait_exit(&docker, &ids[0]).await;
    let a = audit(&cap, &["--json"]);
    assert_eq!(a.code, Some(0), "{}", show(&a));
    let c = a.container(&ids[0]);
    assert_eq!(c["verdict"], "exact", "{c:#}");
    for s in ["stdout", "stderr"] {
        let counts = stream(&c, s);
        assert_eq!(
            (counts["exact"].as_u64(), counts["pending"].as_u64()),
            (Some(500), Some(500)),
            "{c:#}"
        );
        assert_eq!(counts["lost"], 0, "{c:#}");
    }
    remove(&docker, &ids[0]).await;
}

#[test]
fn d_a_daemon_that_does_not_answer_is_an_error_not_a_verdict() {
    let cap = Capturer::prepare("audit-d", "lc.e2e=none", &[]);
    let a = audit(&cap, &["--docker-host", "unix:///nonexistent/docker.sock"]);
    assert_eq!(a.code, Some(3), "{}", show(&a));
    assert!(
        a.stderr.contains("cannot reach the Docker daemon"),
        "{}",
        show(&a)
    );
    let bad = audit(&cap, &["--include-name", "["]);
    assert_eq!(bad.code, Some(2), "{}", show(&bad));
}
