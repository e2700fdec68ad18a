//! The `panel-sim` binary: `--servers N` prints one `server <i> <url>` line per server.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::client;

#[tokio::test]
async fn binary_starts_several_servers() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_panel-sim"))
        .args([
            "--servers",
            "2",
            "--accounts",
            "3",
            "--profile",
            "wp2",
            "--version",
            "11.128.0.9",
            "--api-token",
            "TESTTOKEN",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn panel-sim");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut urls = Vec::new();
    for i in 1..=2 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("a line");
        let rest = line
            .strip_prefix(&format!("server {i} "))
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        assert!(rest.starts_with("http://127.0.0.1:"), "{line}");
        urls.push(rest.to_owned());
    }
    assert_ne!(urls[0], urls[1]);

    for url in &urls {
        let body: Value = client()
            .get(format!("{url}/json-api/get_current_profile?api.version=1"))
            .header("Authorization", "whm root:TESTTOKEN")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["data"]["code"], "WP2");
        let body: Value = client()
            .get(format!(
                "{url}/json-api/list_integration_links?api.version=1&user=user3"
            ))
            .header("Authorization", "whm root:TESTTOKEN")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["metadata"]["result"], 1, "{body}");
    }
    child.kill().await.unwrap();
}
