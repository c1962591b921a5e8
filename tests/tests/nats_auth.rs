//! End to end: `--nats-creds` against a real `nats-server` in operator mode (decentralized JWT
//! authentication), with the real dockerd.
//!
//! The server trusts an operator made by the test ([`NatsServer::use_operator`]) and knows one
//! account with JetStream. It must refuse a client without credentials and a user of an
//! account it does not know; a capturer given such a user must stay up, count its sink's
//! errors and name the refusal in its log; and once given the good user's credentials, every
//! line must arrive in the stream exactly once (nothing lost meanwhile).
//!
//! Without `nats-server` or Docker the test skips, unless `CI` is set: then it fails.

// Test tooling: a set-up step that fails must fail the test.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use bollard::Docker;
use capturer_tests::capturer::{by_stream, exclusive, Capturer};
use capturer_tests::exact::{assert_stopped_cleanly, label, numbered, pairs, spec, tail};
use capturer_tests::nats::{assert_published_exactly_once, NatsServer, NatsTarget};
use capturer_tests::{daemon_lines, docker, remove, start, wait_exit, DaemonLine};

/// How long the test waits for the stream to hold every line.
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);
/// Lines per stream the container writes.
const LINES: usize = 1_000;
/// What async-nats says (and the capturer logs) when the server refuses a user.
const REFUSED: &str = "authorization violation";

/// Waits until the stream holds as many messages of `id` as the daemon has lines, and returns
/// the daemon's lines: call it once the container has exited.
async fn await_delivery(docker: &Docker, target: &NatsTarget, id: &str) -> Vec<DaemonLine> {
    let truth = daemon_lines(docker, id, false).await;
    let have = target.wait_for(id, truth.len(), DELIVERY_LIMIT).await;
    eprintln!(
        "nats_auth: {}: the daemon has {} lines, the stream {have} messages",
        &id[..12],
        truth.len()
    );
    truth
}

/// The capturer's lines that name the server's refusal.
fn refusals(cap: &Capturer) -> usize {
    cap.log_text()
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains(REFUSED))
        .count()
}

/// The capturer's own reports of its sink's failure: one per kind of error until it works
/// again, however often it retries.
fn sink_failure_reports(cap: &Capturer) -> usize {
    cap.log_text()
        .lines()
        .filter(|l| l.contains("log_capturer::sink") && l.contains("retrying with backoff"))
        .count()
}

#[tokio::test]
async fn operator_mode_creds_deliver_each_line_once_and_unknown_users_are_refused() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let Some(mut server) = NatsServer::prepare("nauth") else {
        return;
    };
    let began = Instant::now();
    let creds = server.use_operator();
    server.start();
    let url = server.url();
    let target = NatsTarget::new(&url).with_creds(&creds.good);
    let stranger = NatsTarget::new(&url).with_creds(&creds.stranger);

    // The server enforces authentication: no credentials, or a user of an account it does not
    // know, and it refuses the connection; the good user connects.
    for (who, client) in [
        ("a client without credentials", NatsTarget::new(&url)),
        (
            "a user of an account the server does not know",
            stranger.clone(),
        ),
    ] {
        let answer = client.context().await.map(|_| ());
        assert!(
            answer
                .as_ref()
                .is_err_and(|e| e.to_ascii_lowercase().contains(REFUSED)),
            "{who} is refused with an {REFUSED:?}: {answer:?}\n--- nats-server log ---\n{}",
            tail(&server.log_text(), 20)
        );
    }
    target.context().await.unwrap_or_else(|e| {
        panic!(
            "the good user connects: {e}\n--- nats-server log ---\n{}",
            tail(&server.log_text(), 20)
        )
    });

    // A capturer with the stranger's credentials: it stays up, publishes nothing, counts its
    // sink's errors and says why in its log (the lines wait in the daemon's log).
    let (sel, labels) = label("nauth");
    let mut cap = Capturer::start("nauth", &sel, &stranger.flags(&["--stop-timeout", "2s"]));
    let id = start(&docker, &spec(&labels, &pairs("u", LINES)))
        .await
        .expect("start");
    wait_exit(&docker, &id).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while cap.metric_sum("log_capturer_sink_errors_total") == 0.0 || refusals(&cap) == 0 {
        assert!(
            Instant::now() < deadline,
            "a user the server refuses, and after 15 s sink errors {} and {} log lines naming an {REFUSED:?}:\n{}",
            cap.metric_sum("log_capturer_sink_errors_total") + 0.0,
            refusals(&cap),
            tail(&cap.log_text(), 20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A moment more: it keeps running (and retrying) while refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        cap.metric("log_capturer_tasks_alive").is_some(),
        "the capturer stays up while the server refuses it:\n{}",
        tail(&cap.log_text(), 20)
    );
    let errors = cap.metric_sum("log_capturer_sink_errors_total") + 0.0;
    let refused = refusals(&cap);
    assert_eq!(
        sink_failure_reports(&cap),
        1,
        "{errors} failed writes, one kind of error: the capturer reports it once:\n{}",
        tail(&cap.log_text(), 30)
    );
    let report = cap
        .log_text()
        .lines()
        .find(|l| l.contains("log_capturer::sink") && l.contains("retrying with backoff"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        report.to_ascii_lowercase().contains(REFUSED),
        "the capturer's own report names the refusal, not only the client library's log:
  {report}"
    );
    let first_refusal = cap
        .log_text()
        .lines()
        .find(|l| l.to_ascii_lowercase().contains(REFUSED))
        .map(str::to_owned)
        .unwrap_or_default();
    let wrong_stop = cap.terminate();
    eprintln!(
        "nats_auth: refused: {errors} sink errors, the sink's failure reported once, {refused} log lines naming the refusal, stopped with {wrong_stop}; the first:\n  {first_refusal}"
    );
    // Nothing was published: the good user finds no message of the container, not even the
    // stream.
    let count = target.count(&id).await;
    assert!(
        matches!(&count, Ok(0))
            || count
                .as_ref()
                .is_err_and(|e| e.contains("stream not found")),
        "nothing is published by a user the server refuses: {count:?}"
    );

    // The good user's credentials, the same state: every line, once.
    cap.replace_arg(
        &creds.stranger.display().to_string(),
        &creds.good.display().to_string(),
    );
    cap.restart();
    let truth = await_delivery(&docker, &target, &id).await;
    let status = cap.terminate();
    let context = "--nats-creds in operator mode, after a refused user";
    let stored = target.read(&id).await;
    assert_published_exactly_once(&truth, &stored, &cap, context);
    let s = by_stream(&stored.records);
    assert_eq!(s["stdout"], numbered("u o", 0..LINES), "{context}");
    assert_eq!(s["stderr"], numbered("u e", 0..LINES), "{context}");
    let info = target
        .info()
        .await
        .expect("the capturer created the stream");
    assert_eq!(
        info.state.messages,
        2 * LINES as u64,
        "nothing else in the stream"
    );
    assert_stopped_cleanly(status, &cap);
    eprintln!(
        "nats_auth: account {}: {} messages, each line once, in {:?} (stranger's account {})",
        creds.account,
        stored.messages.len(),
        began.elapsed(),
        creds.unknown_account
    );
    remove(&docker, &id).await;
}
