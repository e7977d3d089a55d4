//! Graphs across two real `weir run` processes over Zenoh on loopback: audio crosses
//! bit-exact with its timestamps; a subscriber of another port type fails with a clear error,
//! and so does the publisher.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::{free_port, lost_of, root, scratch, stderr, weir, Spawned};

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
    let sent = finish(sender, "sender");
    assert_eq!(received.status.code(), Some(1), "{}", stderr(&received));
    let err = stderr(&received);
    assert!(
        err.contains("the publisher sends `audio` packets but `net.subscribe_text` outputs `text`"),
        "{err}"
    );
    // The publisher learns it too, from what the subscriber declared.
    assert_eq!(sent.status.code(), Some(1), "{}", stderr(&sent));
    let err = stderr(&sent);
    assert!(
        err.contains("a subscriber of key `weir/audio` expects `text` packets but this publisher sends `audio`"),
        "{err}"
    );
}

/// `seconds` of a 440 Hz tone at 16 kHz mono, written to `path`.
fn tone(path: &Path, seconds: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..16_000 * seconds {
        let x = (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin() * 0.3;
        w.write_sample((x * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// A receiver of `graphs/net/receive_audio.yaml` on `addr`, writing into `out`.
fn receiver(what: &str, addr: &str, out: &Path) -> Spawned {
    Spawned::weir(
        what,
        &["run", "graphs/net/receive_audio.yaml", "--stats"],
        &[
            ("WEIR_LISTEN", addr.to_string()),
            ("WEIR_OUT", out.to_str().unwrap().to_string()),
        ],
    )
}

/// Lines of a JSON-lines file (0 if it does not exist yet).
fn lines_in(path: &Path) -> u64 {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count() as u64)
}

/// What a sender and two receivers counted when the first receiver was stopped mid-stream
/// and another started on the same port.
struct Restart {
    /// Packets the sender took in.
    total: u64,
    /// Packets each receiver wrote.
    got: [u64; 2],
    /// Packets that reached the first receiver but were not written when it stopped.
    unread: u64,
    /// Packets the sender dropped (its `lost` count).
    dropped: u64,
    /// The sender's log.
    log: String,
}

impl Restart {
    /// Sends 12 s of audio at its pace with `overflow` on the link; stops the first receiver
    /// once packets reach its file, then starts the second.
    fn run(name: &str, overflow: &str) -> Restart {
        let dir = scratch(name);
        let input = dir.join("tone.wav");
        tone(&input, 12);
        let (first, second) = (dir.join("first"), dir.join("second"));
        let addr = format!("127.0.0.1:{}", free_port());
        let one = receiver("first receiver", &addr, &first);
        let path = format!("input.path={}", input.display());
        let policy = format!("uplink.overflow={overflow}");
        // Blocking waits for the new receiver far longer than it takes to start, even here.
        let wait = "uplink.link_wait_ms=120000";
        let sender = Spawned::weir(
            "sender",
            &[
                "run",
                "graphs/net/send_audio.yaml",
                "--stats",
                "--set",
                &path,
                "--set",
                "input.realtime=true",
                "--set",
                &policy,
                "--set",
                wait,
            ],
            &[("WEIR_PEER", addr.clone())],
        );
        let patience = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let written =
            |dir: &Path| std::fs::metadata(dir.join("received.jsonl")).map_or(0, |m| m.len());
        while written(&first) == 0 {
            assert!(
                std::time::Instant::now() < patience,
                "nothing reached the first receiver"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        one.terminate();
        let one = one.finish();
        assert!(one.status.success(), "{}", stderr(&one));
        let two = receiver("second receiver", &addr, &second).finish();
        let sent = sender.finish();
        assert!(sent.status.success(), "{}", stderr(&sent));
        assert!(two.status.success(), "{}", stderr(&two));
        // The second receiver starts mid-stream: what it missed is the sender's to count.
        assert_eq!(lost_of(&stderr(&two), "downlink"), 0);
        let log = stderr(&sent);
        Restart {
            total: common::stat_of(&log, "uplink", 2),
            got: [
                lines_in(&first.join("received.jsonl")),
                lines_in(&second.join("received.jsonl")),
            ],
            unread: lost_of(&stderr(&one), "downlink"),
            dropped: lost_of(&log, "uplink"),
            log,
        }
    }

    /// Zenoh has no end-to-end acknowledgement: a message on its way when the first
    /// receiver stopped is known to neither side. Everything else is received or counted.
    fn assert_accounted(&self) {
        let counted = self.got[0] + self.unread + self.dropped + self.got[1];
        assert_eq!(self.total, 600, "12 s in 20 ms frames");
        assert!(
            counted <= self.total && self.total - counted <= 1,
            "{} sent; received {:?}, unread at the stop {}, dropped by the sender {}",
            self.total,
            self.got,
            self.unread,
            self.dropped
        );
        assert!(self.got[0] > 0 && self.got[1] > 0, "{:?}", self.got);
        assert!(
            self.log.contains("no subscriber any more"),
            "the loss is reported: {}",
            self.log
        );
        assert!(
            self.log.contains("a subscriber is back: publishing again"),
            "and the recovery: {}",
            self.log
        );
    }
}

#[test]
fn a_restarted_subscriber_is_found_again_and_every_missed_packet_is_counted() {
    let drop = Restart::run("net_restart_drop", "drop");
    drop.assert_accounted();
    assert!(drop.dropped > 0, "packets went out while no one listened");
    // Blocking, the sender waits for the new receiver (up to link_wait_ms) and drops
    // nothing.
    let block = Restart::run("net_restart_block", "block");
    block.assert_accounted();
    assert_eq!(block.dropped, 0, "{}", block.log);
}

/// `(t, start_sample)` of each line of a `received.jsonl`.
fn times(path: &Path) -> Vec<(f64, u64)> {
    common::read_jsonl(path)
        .iter()
        .map(|l| {
            (
                l["t"].as_f64().unwrap(),
                l["start_sample"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_restarted_publishers_clock_from_zero_continues_the_old_stream_on_the_subscriber() {
    let dir = scratch("net_publisher_restart");
    let (long, short) = (dir.join("long.wav"), dir.join("short.wav"));
    tone(&long, 12);
    tone(&short, 2);
    let addr = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let receiving = Spawned::weir(
        "receiver",
        &[
            "run",
            "graphs/net/receive_audio.yaml",
            "--stats",
            "--metrics",
            &metrics,
        ],
        &[
            ("WEIR_LISTEN", addr.clone()),
            ("WEIR_OUT", dir.to_str().unwrap().to_string()),
        ],
    );
    let send = |what: &str, input: &Path, realtime: &str| {
        let path = format!("input.path={}", input.display());
        let pace = format!("input.realtime={realtime}");
        Spawned::weir(
            what,
            &[
                "run",
                "graphs/net/send_audio.yaml",
                "--set",
                &path,
                "--set",
                &pace,
            ],
            &[("WEIR_PEER", addr.clone())],
        )
    };
    let first = send("first sender", &long, "true");
    let out = common::node_series(
        "weir_node_packets_out_total",
        "downlink",
        "net.subscribe_audio",
    );
    common::wait_until(120, "nothing reached the receiver", || {
        common::metric(&metrics, &out).is_some_and(|n| n >= 50.0)
    });
    first.kill();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let second = send("second sender", &short, "false").finish();
    assert!(second.status.success(), "{}", stderr(&second));
    let received = receiving.finish();
    let log = stderr(&received);
    assert!(received.status.success(), "{log}");

    let got = times(&dir.join("received.jsonl"));
    let restart = got
        .iter()
        .skip(1)
        .position(|&(_, start)| start == 0)
        .expect("the second sender's stream, from sample 0")
        + 1;
    let (old, new) = got.split_at(restart);
    assert!(old.len() >= 50, "{} packets before the kill", old.len());
    for (i, (_, start)) in old.iter().enumerate() {
        assert_eq!(
            *start,
            i as u64 * 320,
            "the first stream arrives whole until the kill"
        );
    }
    assert_eq!(
        new.len(),
        100,
        "the whole second stream (2 s in 20 ms frames)"
    );
    // The new clock started from zero; the subscriber continued the old one: monotonic, the
    // second stream's spacing exact, and the second away (at least) shows as a gap.
    let (last_old, first_new) = (old[old.len() - 1].0, new[0].0);
    assert!(
        first_new >= last_old + 1.0,
        "the new stream starts at {first_new} s, the old ended at {last_old} s"
    );
    for (i, (t, start)) in new.iter().enumerate() {
        assert_eq!(*start, i as u64 * 320);
        assert!((t - first_new - i as f64 * 0.02).abs() < 1e-6, "{t} at {i}");
    }
    assert_eq!(
        lost_of(&log, "downlink"),
        0,
        "a new stream is not a gap: {log}"
    );
    assert_eq!(
        log.matches("a restarted publisher").count(),
        1,
        "the restart is reported once: {log}"
    );
}
