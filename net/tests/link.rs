//! The subscriber against a raw Zenoh publisher on loopback: gaps in the sequence numbers
//! are counted as lost, and a foreign message or another encoding version stops the node
//! with the reason.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use weir_engine::{channel_sink, Graph, Loader, Packet, Payload, Registry, RunReport, Timestamp};
use weir_media::AudioFrame;
use weir_net::wire::{write_header, Header, Kind};
use weir_net::Codecs;
use zenoh::Wait;

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn frame(start: u64) -> AudioFrame {
    AudioFrame {
        rate: 16_000,
        channels: 1,
        start_sample: start,
        samples: Arc::from(vec![0.25; 160]),
    }
}

fn message(kind: Kind, seq: u64, payload: Option<&AudioFrame>) -> Vec<u8> {
    let timestamp = payload.map_or(Timestamp::ZERO, AudioFrame::timestamp);
    let header = Header {
        kind,
        port: if payload.is_some() {
            "audio".into()
        } else {
            "".into()
        },
        stream: 1,
        seq,
        timestamp,
    };
    let mut out = Vec::new();
    write_header(&header, &mut out).unwrap();
    if let Some(frame) = payload {
        let packet = Packet::new(timestamp, frame.clone());
        Codecs::media()
            .get("audio")
            .unwrap()
            .encode(&packet, &mut out)
            .unwrap();
    }
    out
}

/// Runs a subscriber graph listening on a free port while a raw Zenoh session publishes
/// `messages` to it; returns the run's result and what reached the sink.
fn receive(messages: Vec<Vec<u8>>) -> (Result<RunReport, weir_engine::RunError>, Vec<Packet>) {
    let port = free_port();
    let mut registry = Registry::new();
    weir_net::register(&mut registry).unwrap();
    let (sink, rx) = channel_sink("test.out", AudioFrame::PORT, 1024);
    registry.register(sink).unwrap();
    let yaml = format!(
        "nodes:\n  sub: {{ node: net.subscribe_audio, with: {{ key: test/link, listen: \"tcp/127.0.0.1:{port}\" }} }}\n  out: {{ node: test.out, in: {{ in: sub.out }} }}\n"
    );
    let plan = Loader::new(&registry)
        .load_str(Path::new("link.yaml"), &yaml)
        .unwrap();
    let running = Graph::build(plan, &registry).unwrap().start().unwrap();

    let mut config = zenoh::Config::default();
    config.insert_json5("mode", "\"peer\"").unwrap();
    config
        .insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    config
        .insert_json5("connect/endpoints", &format!("[\"tcp/127.0.0.1:{port}\"]"))
        .unwrap();
    config.insert_json5("listen/endpoints", "[]").unwrap();
    let session = zenoh::open(config).wait().unwrap();
    let publisher = session.declare_publisher("test/link").wait().unwrap();
    let waited = (0..200).find(|_| {
        let matching = publisher.matching_status().wait().unwrap().matching();
        if !matching {
            std::thread::sleep(Duration::from_millis(25));
        }
        matching
    });
    assert!(waited.is_some(), "the subscriber never appeared");
    for m in messages {
        publisher.put(m).wait().unwrap();
    }
    let result = running.wait();
    let got = rx.try_iter().collect();
    session.close().wait().unwrap();
    (result, got)
}

#[test]
fn gaps_in_the_sequence_are_counted_as_lost() {
    let messages = vec![
        message(Kind::Data, 0, Some(&frame(0))),
        message(Kind::Data, 1, Some(&frame(160))),
        message(Kind::Data, 5, Some(&frame(800))),
        message(Kind::Data, 6, Some(&frame(960))),
        message(Kind::End, 7, None),
    ];
    let (result, got) = receive(messages);
    let report = result.unwrap();
    assert_eq!(report.node("sub").unwrap().lost, 3);
    let starts: Vec<u64> = got
        .iter()
        .map(|p| p.get::<AudioFrame>().unwrap().start_sample)
        .collect();
    assert_eq!(starts, [0, 160, 800, 960]);
    assert_eq!(got[2].timestamp, Timestamp::from_nanos(50_000_000));
    assert!(report.table().contains("lost"));
}

#[test]
fn a_foreign_message_stops_the_subscriber_with_the_reason() {
    let (result, _) = receive(vec![b"{\"hello\": 1}".to_vec()]);
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("key `test/link`") && err.contains("not a Weir packet"),
        "{err}"
    );
}

#[test]
fn another_encoding_version_stops_the_subscriber_with_the_reason() {
    let mut m = message(Kind::Data, 0, Some(&frame(0)));
    let other = weir_net::wire::VERSION + 1;
    m[4..6].copy_from_slice(&other.to_le_bytes());
    let (result, _) = receive(vec![m]);
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(&format!("encoding version {other} is not supported")),
        "{err}"
    );
}

/// A raw Zenoh peer listening on a free port that declares `token` (what a subscriber of
/// another build would announce) and subscribes to `test/link`; a `net.publish` graph
/// connects to it and is fed one frame. Returns the run's result.
fn publish_to(token: &str) -> Result<RunReport, weir_engine::RunError> {
    let port = free_port();
    let mut config = zenoh::Config::default();
    config.insert_json5("mode", "\"peer\"").unwrap();
    config
        .insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    config
        .insert_json5("listen/endpoints", &format!("[\"tcp/127.0.0.1:{port}\"]"))
        .unwrap();
    let session = zenoh::open(config).wait().unwrap();
    let _token = session.liveliness().declare_token(token).wait().unwrap();
    let _subscriber = session
        .declare_subscriber("test/link")
        .callback(|_| {})
        .wait()
        .unwrap();

    let mut registry = Registry::new();
    weir_net::register(&mut registry).unwrap();
    let (source, tx) = weir_engine::channel_source("test.in", AudioFrame::PORT, 16);
    registry.register(source).unwrap();
    let yaml = format!(
        "nodes:\n  src: {{ node: test.in }}\n  pub: {{ node: net.publish, in: {{ in: src.out }}, with: {{ key: test/link, connect: \"tcp/127.0.0.1:{port}\" }} }}\n"
    );
    let plan = Loader::new(&registry)
        .load_str(Path::new("publish.yaml"), &yaml)
        .unwrap();
    let running = Graph::build(plan, &registry).unwrap().start().unwrap();
    let f = frame(0);
    tx.send(Packet::new(f.timestamp(), f)).unwrap();
    drop(tx);
    let result = running.wait();
    session.close().wait().unwrap();
    result
}

#[test]
fn a_subscriber_of_another_encoding_version_stops_the_publisher_with_the_reason() {
    let err = publish_to("weir_expects/v9/audio/test/link")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a subscriber of key `test/link` reads encoding version 9"),
        "{err}"
    );
}

#[test]
fn a_subscriber_of_the_same_type_and_version_is_served() {
    let token = format!("weir_expects/v{}/audio/test/link", weir_net::wire::VERSION);
    assert!(publish_to(&token).is_ok());
}
