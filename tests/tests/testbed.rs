//! The test bed is real: a container's 1000 stdout and 1000 stderr lines, read back through
//! bollard from a real daemon, arrive exactly.

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use capturer_tests::{docker, remove, start, wait_exit, Spec};
use futures_util::StreamExt;

#[tokio::test]
async fn a_real_daemon_serves_exactly_the_lines_a_container_wrote() {
    let Some(docker) = docker().await else { return };
    let info = docker.version().await.expect("daemon version");
    eprintln!("daemon: {:?} API {:?}", info.version, info.api_version);

    let spec = Spec {
        script: "i=1; while [ $i -le 1000 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); done"
            .into(),
        ..Spec::default()
    };
    let id = start(&docker, &spec).await.expect("start container");
    wait_exit(&docker, &id).await;

    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    let mut logs = docker.logs(&id, Some(options));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(item) = logs.next().await {
        match item.expect("log frame") {
            LogOutput::StdOut { message } => {
                out.push(String::from_utf8_lossy(&message).into_owned())
            }
            LogOutput::StdErr { message } => {
                err.push(String::from_utf8_lossy(&message).into_owned())
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    remove(&docker, &id).await;

    let want = |p: &str| (1..=1000).map(|i| format!("{p}-{i}\n")).collect::<Vec<_>>();
    assert_eq!(out, want("out"));
    assert_eq!(err, want("err"));
}
