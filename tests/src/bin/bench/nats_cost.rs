//! What one stored message costs nats-server, by what the publish asks of it: the server is the
//! largest share of the NATS drain's CPU (docs/benchmarks.md part 7), and this says which part
//! of the sink's contract it pays for.
//!
//! Each variant publishes `--lines` records of the drain's size to a fresh server's stream (file
//! storage, 10-minute duplicate window, as the sink creates it), 4,096 in flight, the way the
//! sink does (reply subject `<inbox>.<token>`, one subscription for every acknowledgement):
//!
//! - `sink`: with a reply and `Nats-Msg-Id`, as the sink publishes;
//! - `short-id`: the same with the container id's first 16 digits in `Nats-Msg-Id` instead of
//!   all 64 (what a shorter id would save);
//! - `no-id`: with a reply, no `Nats-Msg-Id` (no deduplication);
//! - `no-ack`: neither (the server stores and answers nothing; the floor, and unsafe: nothing
//!   says a message was stored).
//!
//! Prints the server's CPU seconds per million messages for each, over `--rounds` rounds, and
//! how many each stored; fails if an acknowledged variant stored any message other than once.

use std::time::{Duration, Instant};

use async_nats::jetstream::stream::{Config, StorageType};
use async_nats::HeaderMap;
use bytes::Bytes;
use capturer_tests::nats::NatsServer;
use futures_util::StreamExt;

use crate::{median, procfs};

/// Publishes in flight at most, as in the sink.
const IN_FLIGHT: usize = 4096;

/// The variants, as named on the command line's output.
const VARIANTS: [&str; 4] = ["sink", "short-id", "no-id", "no-ack"];

/// Runs every variant `rounds` times, `lines` messages each; prints the medians.
pub async fn run(lines: usize, rounds: usize) -> bool {
    let mut per_million: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut exact = true;
    for round in 1..=rounds {
        for (v, variant) in VARIANTS.iter().enumerate() {
            let (server_cpu, wall, stored) = one(variant, lines).await;
            let m = server_cpu / lines as f64 * 1e6;
            println!(
                "round {round}: {variant:>6}: {stored} of {lines} messages stored in {wall:.2}s, nats-server {server_cpu:.2} CPU s ({m:.2} per million)"
            );
            // With acknowledgements, every one is stored once; without, the server may shed.
            exact &= *variant == "no-ack" || stored == lines;
            per_million[v].push(m);
        }
    }
    println!("\nmedians over {rounds} rounds, nats-server CPU s per million messages:");
    for (v, variant) in VARIANTS.iter().enumerate() {
        println!(
            "  {variant:>6}: {:.2}",
            median(per_million[v].iter().copied())
        );
    }
    exact
}

/// One variant against a fresh server: its CPU seconds, the wall time until all are stored (or,
/// without acknowledgements, until the stream stops growing), and how many it holds.
async fn one(variant: &str, lines: usize) -> (f64, f64, usize) {
    let server = NatsServer::launch("cost").expect("nats-server (run scripts/testbed.sh)");
    let pid = server.pid().expect("nats-server runs") as i32;
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(Config {
        name: "COST".into(),
        subjects: vec!["cost.>".into()],
        storage: StorageType::File,
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .expect("create the stream");
    let id = "c".repeat(64);
    let subject = format!("cost.{id}.stdout");
    // A record of the drain's length (its container id, name, image, ts, pos and message).
    let payload = Bytes::from(format!(
        "{{\"container_id\":\"{id}\",\"container_name\":\"writer\",\"image\":\"log-capturer-testbed/busybox:latest\",\"ts\":\"2026-11-30T06:00:00.123456789Z\",\"stream\":\"stdout\",\"pos\":\"1796018400123456789.1\",\"message\":\"line 123456 of the drain\"}}"
    ));
    let inbox = client.new_inbox();
    let mut acks = client
        .subscribe(format!("{inbox}.*"))
        .await
        .expect("subscribe");
    let before = procfs::sample(pid).expect("nats-server runs").cpu;
    let began = Instant::now();
    let (mut sent, mut acked) = (0, 0);
    let mut grew = Instant::now();
    while acked < lines {
        while sent < lines && (variant == "no-ack" || sent - acked < IN_FLIGHT) {
            let mut headers = HeaderMap::new();
            let position = format!("stdout.1796018400123456789.{sent}");
            match variant {
                "sink" => {
                    headers.insert("Nats-Msg-Id", format!("{}.{position}", &id[..16]).as_str())
                }
                "full-id" => headers.insert("Nats-Msg-Id", format!("{id}.{position}").as_str()),
                _ => {}
            }
            let sent_ok = if variant == "no-ack" {
                client
                    .publish_with_headers(subject.clone(), headers, payload.clone())
                    .await
            } else {
                let reply = format!("{inbox}.{sent}");
                client
                    .publish_with_reply_and_headers(
                        subject.clone(),
                        reply,
                        headers,
                        payload.clone(),
                    )
                    .await
            };
            sent_ok.expect("publish");
            sent += 1;
        }
        if variant == "no-ack" {
            // Nothing answers: poll the stream until it holds them all, or stops growing (a
            // server that sheds load drops what it cannot take, and says so to nobody).
            let mut stream = js.get_stream("COST").await.expect("stream");
            let now = stream.info().await.expect("info").state.messages as usize;
            if now > acked {
                (acked, grew) = (now, Instant::now());
            } else if grew.elapsed() > Duration::from_secs(5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let ack = acks.next().await.expect("acknowledgement");
        assert!(
            !ack.payload.windows(7).any(|w| w == b"\"error\""),
            "a publish failed: {:?}",
            ack.payload
        );
        acked += 1;
    }
    let wall = began.elapsed().as_secs_f64();
    let cpu = procfs::sample(pid).expect("nats-server runs").cpu - before;
    let mut stream = js.get_stream("COST").await.expect("stream");
    let stored = stream.info().await.expect("info").state.messages as usize;
    (cpu, wall, stored)
}
