//! Graphs across two real `weir run` processes over Zenoh on loopback: audio crosses
//! bit-exact with its timestamps; a subscriber of another port type fails with a clear error.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::{root, scratch, stderr, weir};

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Starts `weir run GRAPH ARGS...` with `WEIR_OUT` = `out` and the peer address in `env`.
fn start(graph: &str, out: &Path, env: (&str, String), args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(root())
        .args(["run", graph])
        .args(args)
        .env("WEIR_OUT", out)
        .env(env.0, env.1)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir")
}

fn finish(child: Child, what: &str) -> Output {
    let out = child.wait_with_output().expect("wait for weir");
    eprintln!("--- {what}:\n{}", stderr(&out));
    out
}

#[test]
fn audio_crosses_two_processes_bit_exact_with_its_timestamps() {
    let local = scratch("net_local");
    let out = weir(
        &["run", "graphs/net/local_audio.yaml"],
        &[("WEIR_OUT", &local)],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let remote = scratch("net_remote");
    let addr = format!("127.0.0.1:{}", free_port());
    let receiver = start(
        "graphs/net/receive_audio.yaml",
        &remote,
        ("WEIR_LISTEN", addr.clone()),
        &["--stats"],
    );
    let sender = start(
        "graphs/net/send_audio.yaml",
        &remote,
        ("WEIR_PEER", addr),
        &[],
    );
    let sent = finish(sender, "sender");
    let received = finish(receiver, "receiver");
    assert!(sent.status.success(), "sender: {}", stderr(&sent));
    assert!(received.status.success(), "receiver: {}", stderr(&received));

    for file in ["received.wav", "received.jsonl"] {
        let want = std::fs::read(local.join(file)).unwrap();
        let got = std::fs::read(remote.join(file)).unwrap();
        assert!(want.len() > 1000, "{file} is too small to prove anything");
        assert!(want == got, "{file} differs after crossing the link");
    }
    let stats = String::from_utf8_lossy(&received.stderr);
    assert!(
        !stats.contains("lost"),
        "nothing is lost on a blocking link:\n{stats}"
    );
}

#[test]
fn a_subscriber_of_another_port_type_fails_with_a_clear_error() {
    let dir = scratch("net_mismatch");
    let addr = format!("127.0.0.1:{}", free_port());
    let graph = dir.join("receive_text.yaml");
    std::fs::write(
        &graph,
        format!(
            "nodes:\n  downlink:\n    node: net.subscribe_text\n    with: {{ key: weir/audio, listen: \"tcp/{addr}\" }}\n  print:\n    node: text.print\n    in: {{ in: downlink.out }}\n"
        ),
    )
    .unwrap();
    let receiver = start(
        graph.to_str().unwrap(),
        &dir,
        ("WEIR_UNUSED", String::new()),
        &[],
    );
    let sender = start("graphs/net/send_audio.yaml", &dir, ("WEIR_PEER", addr), &[]);
    let received = finish(receiver, "receiver");
    let _ = finish(sender, "sender");
    assert_eq!(received.status.code(), Some(1), "{}", stderr(&received));
    let err = stderr(&received);
    assert!(
        err.contains("the publisher sends `audio` packets but `net.subscribe_text` outputs `text`"),
        "{err}"
    );
}
