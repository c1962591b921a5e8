//! The NATS test bed is real, and its helpers read what they should: messages published here
//! with async-nats (no capturer involved) to a stream this test creates come back from
//! [`NatsTarget::read`] exactly, in order, after a SIGKILL and a start of `nats-server` on the
//! same port and store; the server's duplicate window survives that too (the capturer's
//! exactly-once rests on it); and the reader reports a message that breaks the contract.

// Test tooling: a set-up step that fails must fail the test.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use capturer_core::Timestamp;
use capturer_tests::capturer::{exclusive, Capturer};
use capturer_tests::exact::duplicates;
use capturer_tests::nats::{
    assert_published_exactly_once, NatsServer, NatsTarget, DUPLICATE_WINDOW,
};
use capturer_tests::DaemonLine;

/// A fake container id, 64 hex digits like Docker's.
fn container(c: char) -> String {
    c.to_string().repeat(64)
}

/// One line of `id` as the daemon would hold it and the file sink would write it:
/// (daemon line, the record's JSON, its `Nats-Msg-Id`).
fn line(id: &str, stream: &str, i: usize) -> (DaemonLine, String, String) {
    let ts = format!(
        "2025-01-02T03:04:{:02}.{:09}Z",
        i / 1000 % 60,
        i % 1000 * 1000
    );
    let ns = Timestamp::parse_rfc3339(ts.as_bytes()).expect("ts").0;
    let pos = format!("{ns}.1");
    let message = format!("{} {i}", &stream[..1]);
    let record = serde_json::json!({
        "container_id": id,
        "container_name": "/selftest",
        "image": capturer_tests::IMAGE,
        "ts": ts,
        "stream": stream,
        "pos": pos,
        "message": message,
    });
    (
        DaemonLine {
            stream: stream.to_owned(),
            ts,
            message,
        },
        record.to_string(),
        format!("{id}.{stream}.{pos}"),
    )
}

/// Publishes `payload` on `subject` with `Nats-Msg-Id` `msg_id` (if any) and waits for the
/// server's ack; returns whether it said duplicate.
async fn publish(
    js: &jetstream::Context,
    subject: &str,
    payload: &str,
    msg_id: Option<&str>,
) -> bool {
    let mut headers = HeaderMap::new();
    if let Some(id) = msg_id {
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    }
    js.publish_with_headers(subject.to_owned(), headers, payload.to_owned().into())
        .await
        .expect("publish")
        .await
        .expect("the server's ack")
        .duplicate
}

/// Lines per stream of the main fake container: several of the reader's pull batches.
const LINES: usize = 1_500;

#[tokio::test]
async fn published_messages_survive_a_sigkill_of_the_server_and_read_back_exactly() {
    let _serial = exclusive().await;
    let Some(mut server) = NatsServer::launch("selftest") else {
        return;
    };
    // A dotted prefix and a stream name of its own: what the capturer's flags allow.
    let target = NatsTarget::named(&server.url(), "SELFTEST", "lc.selftest");
    let info = target.create_stream(-1).await.expect("create the stream");
    assert_eq!(info.config.storage, stream::StorageType::File);
    assert_eq!(info.config.subjects, vec!["lc.selftest.>".to_owned()]);
    assert_eq!(info.config.duplicate_window, DUPLICATE_WINDOW);

    let (a, b, c) = (container('a'), container('b'), container('c'));
    let js = target.context().await.expect("connect");
    // Container a: stdout and stderr interleaved, with b's lines in between; pipelined, then
    // every ack awaited.
    let mut truth = Vec::new();
    let mut acks = Vec::new();
    for i in 0..LINES {
        for (id, s) in [(&a, "stdout"), (&a, "stderr"), (&b, "stdout")] {
            if id == &b && i % 10 != 0 {
                continue;
            }
            let (daemon, payload, msg_id) = line(id, s, i);
            if id == &a {
                truth.push(daemon);
            }
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
            let ack = js
                .publish_with_headers(target.subject(id, s), headers, payload.into())
                .await
                .expect("publish");
            acks.push(ack);
        }
    }
    for ack in acks {
        let ack = ack.await.expect("the server's ack");
        assert!(!ack.duplicate, "a new message id is no duplicate");
    }
    // The same line again, as a capturer restarted after a SIGKILL might publish it: the
    // server drops it.
    let (_, payload, msg_id) = line(&a, "stdout", 7);
    assert!(
        publish(&js, &target.subject(&a, "stdout"), &payload, Some(&msg_id)).await,
        "the duplicate window drops a message id seen before"
    );
    drop(js);

    // SIGKILL right after the last ack, start again on the same port and store.
    let url = server.url();
    server.kill();
    assert!(!server.is_running());
    let began = Instant::now();
    assert!(
        target.count(&a).await.is_err(),
        "no server: counting fails, it does not hang"
    );
    assert!(
        target.try_read(&a).await.is_err(),
        "no server: reading fails"
    );
    assert!(
        began.elapsed() < Duration::from_secs(12),
        "a dead server is noticed quickly: {:?}",
        began.elapsed()
    );
    server.start();
    assert_eq!(server.url(), url, "the same port after a restart");

    let stored = target.read(&a).await;
    assert_eq!(
        stored.messages.len(),
        2 * LINES,
        "{:?}",
        stored.faults.first()
    );
    assert!(
        stored.faults.is_empty(),
        "{:?}",
        &stored.faults[..3.min(stored.faults.len())]
    );
    assert!(
        stored.messages.windows(2).all(|w| w[0].seq < w[1].seq),
        "stream order"
    );
    let want: Vec<(String, String)> = truth
        .iter()
        .map(|l| (l.stream.clone(), l.message.clone()))
        .collect();
    let got: Vec<(String, String)> = stored
        .records
        .iter()
        .map(|r| (r.stream.clone(), r.message.clone()))
        .collect();
    assert_eq!(got, want, "everything, in publishing order");
    assert!(duplicates(&stored.records).is_empty());
    assert_eq!(target.count(&a).await.expect("count"), 2 * LINES as u64);
    assert_eq!(
        target
            .wait_for(&b, LINES / 10, Duration::from_secs(5))
            .await,
        LINES as u64 / 10
    );
    // The oracle the end-to-end tests use accepts it (the capturer is only there for its log,
    // which is empty: it is never started).
    let cap = Capturer::prepare("nats-selftest", "lc.e2e=selftest", &[]);
    assert_published_exactly_once(&truth, &stored, &cap, "self-test");
    let _ = std::fs::remove_dir_all(&cap.output);

    // The duplicate window survived the SIGKILL: the capturer relies on it after its own.
    let js = target.context().await.expect("connect again");
    let (_, payload, msg_id) = line(&a, "stderr", LINES - 1);
    assert!(
        publish(&js, &target.subject(&a, "stderr"), &payload, Some(&msg_id)).await,
        "after a SIGKILL of the server, a message id seen before is still a duplicate"
    );

    // Container c: one message of each kind the reader must report.
    let (_, good, good_id) = line(&c, "stdout", 1);
    let (_, second, _) = line(&c, "stdout", 2);
    let (_, third, third_id) = line(&c, "stderr", 3);
    let (_, fourth, fourth_id) = line(&c, "stdout", 4);
    publish(&js, &target.subject(&c, "stdout"), &good, Some(&good_id)).await;
    publish(&js, &target.subject(&c, "stdout"), &second, Some("wrong")).await;
    publish(&js, &target.subject(&c, "stdout"), &third, Some(&third_id)).await;
    publish(
        &js,
        &target.subject(&c, "stdout"),
        &format!("{fourth}\n"),
        Some(&fourth_id),
    )
    .await;
    publish(
        &js,
        &target.subject(&c, "stdout"),
        "{\"container_id\":\"cc",
        None,
    )
    .await;
    drop(js);
    let stored = target.read(&c).await;
    assert_eq!(stored.messages.len(), 5);
    assert_eq!(stored.records.len(), 4);
    assert_eq!(stored.torn, 1);
    let faults = stored.faults.join("\n");
    assert_eq!(stored.faults.len(), 4, "{faults}");
    for (seq_of, what) in [
        (1, "Nats-Msg-Id"),
        (2, "subject"),
        (3, "not exactly one JSON object"),
        (4, "not one record"),
    ] {
        let m = &stored.messages[seq_of];
        assert!(
            stored
                .faults
                .iter()
                .any(|f| f.contains(&format!("message {} ", m.seq)) && f.contains(what)),
            "message {seq_of} of c ({what}) is reported: {faults}"
        );
    }
    // Nothing at all for an unknown container: an empty read, at once.
    let began = Instant::now();
    assert!(target.read(&container('d')).await.messages.is_empty());
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_server_started_late_serves_the_same_port_and_is_found_by_url() {
    let _serial = exclusive().await;
    let Some(mut server) = NatsServer::prepare("selftest-late") else {
        return;
    };
    let target = NatsTarget::new(&server.url());
    assert!(target.context().await.is_err(), "not started yet");
    assert!(!server.is_running());
    server.start();
    assert!(server.is_running());
    let info = target
        .create_stream(64 * 1024)
        .await
        .expect("create the stream");
    assert_eq!(info.config.max_bytes, 64 * 1024);
    assert_eq!(info.config.subjects, vec!["logs.>".to_owned()]);
    assert_eq!(info.config.discard, stream::DiscardPolicy::New);
    // Fill it: a publish that does not fit is refused.
    let js = target.context().await.expect("connect");
    let id = container('e');
    let mut refused = None;
    for i in 0..1_000 {
        let (_, payload, msg_id) = line(&id, "stdout", i);
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
        let ack = js
            .publish_with_headers(target.subject(&id, "stdout"), headers, payload.into())
            .await
            .expect("publish");
        if let Err(e) = ack.await {
            refused = Some((i, e.to_string()));
            break;
        }
    }
    let (at, error) = refused.expect("a 64 KiB stream refuses a message at last");
    eprintln!("nats self-test: message {at} refused: {error}");
    assert_eq!(target.count(&id).await.expect("count"), at as u64);
    // Room again.
    let info = target
        .set_max_bytes(1 << 20)
        .await
        .expect("raise max_bytes");
    assert_eq!(info.config.max_bytes, 1 << 20);
    let (_, payload, msg_id) = line(&id, "stdout", at);
    assert!(!publish(&js, &target.subject(&id, "stdout"), &payload, Some(&msg_id)).await);
    let stored = target.read(&id).await;
    assert_eq!(stored.records.len(), at + 1);
    assert!(stored.faults.is_empty(), "{:?}", stored.faults.first());
}
