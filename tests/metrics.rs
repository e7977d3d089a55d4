//! `weir run --metrics`: the per-node and per-edge statistics served in the Prometheus text
//! format while the graph runs, read by a real HTTP client (curl).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{data, root, scratch};

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn curl(url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl is installed (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_string(), code.to_string())
}

/// The value of the sample line that starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).map(str::trim))
        .unwrap_or_else(|| panic!("no `{series}` in:\n{metrics}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_are_served_while_the_graph_runs() {
    data("pauses.wav");
    let dir = scratch("metrics");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(root())
        .args([
            "run",
            "graphs/segments.yaml",
            "--set",
            "input.realtime=true",
        ])
        .args(["--metrics", &addr])
        .env("WEIR_OUT", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weir");
    std::thread::sleep(Duration::from_millis(2500));
    let (health, code) = curl(&format!("http://{addr}/health"));
    assert_eq!((health.trim(), code.as_str()), ("ok", "200"));
    let (first, code) = curl(&format!("http://{addr}/metrics"));
    assert_eq!(code, "200");
    std::thread::sleep(Duration::from_millis(1000));
    let (second, _) = curl(&format!("http://{addr}/metrics"));
    let (missing, code) = curl(&format!("http://{addr}/nothing"));
    assert_eq!(code, "404", "{missing}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());

    assert!(
        first.contains("# TYPE weir_edge_sent_total counter"),
        "{first}"
    );
    let series = r#"weir_edge_sent_total{from="input.audio",to="resample.audio"}"#;
    let (a, b) = (sample(&first, series), sample(&second, series));
    // 20 ms frames at the pace of the recording: about 50 per second.
    assert!(a >= 80.0, "{a} frames after 2.5 s");
    assert!(
        b - a >= 30.0,
        "the counter grows while it runs: {a} then {b}"
    );
    let dropped = r#"weir_edge_dropped_total{from="input.audio",to="resample.audio"}"#;
    assert_eq!(sample(&second, dropped), 0.0);
    let calls = r#"weir_node_packets_in_total{node="vad",kind="speech.energy_vad"}"#;
    assert!(sample(&second, calls) >= b - 2.0);
}

#[test]
fn metrics_refuse_an_address_that_is_not_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(root())
        .args(["run", "graphs/segments.yaml", "--metrics", "0.0.0.0:9464"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}
