//! The HTTP endpoints, served by hyper: `/metrics` (OpenMetrics text), `/livez` (and its old
//! name `/healthz`), `/readyz` and `/debug/tasks` (JSON).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::container::Registry;

/// The longest a client may take over one request and its answer.
const REQUEST_LIMIT: Duration = Duration::from_secs(5);

/// The content type of the OpenMetrics text format that prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves the endpoints on `listener` until `stop` is cancelled. One connection at a time,
/// without keep-alive, each bounded in time: the server is one task, so a slow client cannot
/// hold more, and its answering at all is what `/livez` tells.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    stop: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_LIMIT);
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => return,
            c = listener.accept() => c,
        };
        let Ok((stream, _)) = conn else { continue };
        let service = hyper::service::service_fn(|req: Request<Incoming>| {
            let reply = respond(req.uri().path(), &metrics, &registry);
            async move { Ok::<_, Infallible>(reply) }
        });
        let served = http.serve_connection(TokioIo::new(stream), service);
        match tokio::time::timeout(REQUEST_LIMIT, served).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "a metrics client failed"),
            Err(_) => tracing::debug!("metrics client too slow; dropped"),
        }
    }
}

/// The answer to a GET of `path`.
fn respond(path: &str, metrics: &Metrics, registry: &Registry) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => reply(StatusCode::OK, OPENMETRICS, metrics.encode(registry)),
        // The server task answers on the runtime that runs everything else.
        "/livez" | "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" => match metrics.not_ready() {
            None => reply(StatusCode::OK, "text/plain", "ready\n".to_owned()),
            Some(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        "/debug/tasks" => {
            let (body, violated) = debug_tasks(registry);
            let status = if violated {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            reply(status, "application/json", body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    }
}

fn reply(status: StatusCode, kind: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    r
}

/// Every container's tasks and the core's invariant check of its machine, as JSON, and
/// whether any invariant is broken (each broken one is named under `violations`).
fn debug_tasks(registry: &Registry) -> (String, bool) {
    let mut violations = Vec::new();
    let containers: Vec<serde_json::Value> = super::lock(registry)
        .values()
        .map(|shared| {
            let m = shared.machine();
            let tasks = m.live_tasks();
            let invariants = match m.check_invariants() {
                Ok(()) => "ok".to_owned(),
                Err(v) => {
                    let v = v.to_string();
                    violations.push(serde_json::json!({ "id": &*shared.id, "violation": v }));
                    v
                }
            };
            serde_json::json!({
                "id": &*shared.id,
                "name": shared.meta.name,
                "state": m.phase().as_str(),
                "generation": m.generation().0,
                "tasks": {
                    "reader": shared.live_readers(),
                    "heartbeat": shared.live_heartbeats(),
                },
                "machine_tasks": { "reader": tasks.readers, "heartbeat": tasks.heartbeats },
                "invariants": invariants,
            })
        })
        .collect();
    let violated = !violations.is_empty();
    let body = serde_json::json!({ "containers": containers, "violations": violations });
    (body.to_string(), violated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_each_path_with_its_status() {
        let metrics = Metrics::new();
        let registry = Registry::default();
        let status = |path: &str, m: &Metrics| respond(path, m, &registry).status();
        assert_eq!(status("/metrics", &metrics), StatusCode::OK);
        assert_eq!(status("/livez", &metrics), StatusCode::OK);
        assert_eq!(status("/healthz", &metrics), StatusCode::OK);
        assert_eq!(status("/readyz", &metrics), StatusCode::SERVICE_UNAVAILABLE);
        metrics.set_docker_up(true);
        assert_eq!(status("/readyz", &metrics), StatusCode::OK);
        assert_eq!(status("/debug/tasks", &metrics), StatusCode::OK);
        assert_eq!(status("/nope", &metrics), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_broken_invariant_makes_debug_tasks_answer_500_and_name_it() {
        use capturer_core::{Config, ContainerMachine, Cursor, StreamSet, Timestamp};
        // A cursor whose stdout position lies before its start: invariant 6.
        let good = Cursor::new(Timestamp(100), StreamSet::MULTIPLEXED);
        let mut json = serde_json::to_value(&good).unwrap();
        json["positions"][0]["ts"] = serde_json::json!(5);
        json["positions"][0]["n"] = serde_json::json!(1);
        let bad: Cursor = serde_json::from_value(json).unwrap();
        let meta = crate::docker::ContainerMeta {
            id: "c0ffee".into(),
            name: "broken".into(),
            image: "busybox".into(),
            tty: false,
            labels: Default::default(),
            running: true,
            finished: None,
        };
        let shared = crate::container::Shared::new(
            Arc::new(meta),
            ContainerMachine::new(Config::default(), bad),
        );
        let registry = Registry::default();
        super::super::lock(&registry).insert(shared.id.clone(), Arc::new(shared));
        let answer = respond("/debug/tasks", &Metrics::new(), &registry);
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let (body, violated) = debug_tasks(&registry);
        assert!(violated);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["violations"][0]["id"], "c0ffee", "{body}");
        let named = v["violations"][0]["violation"].as_str().unwrap_or_default();
        assert!(named.starts_with("invariant 6"), "{body}");
        assert_eq!(v["containers"][0]["invariants"], named, "{body}");
    }
}
