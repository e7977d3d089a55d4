//! Smoke test of the real ALSA backend without a sound card: ALSA's `file` plugin, set up by
//! `tests/alsa/asound.conf` through `ALSA_CONFIG_PATH`, feeds a raw file as the default
//! capture device, and `audio.capture` (default host, default device) captures it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_engine::{channel_sink, Graph, Loader, Payload, Registry};
use weir_media::AudioFrame;

const RATE: u32 = 48_000;

fn signal(frames: usize) -> Vec<f32> {
    (0..frames)
        .map(|i| 0.25 * (i as f32 * 0.013).sin() + 0.01 * ((i * 37 % 101) as f32 / 101.0))
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn alsa_file_plugin_feeds_the_default_capture_device() {
    let conf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/alsa/asound.conf");
    let raw = std::env::temp_dir().join(format!("weir-alsa-{}.f32", std::process::id()));
    let file = signal(RATE as usize * 4);
    let bytes: Vec<u8> = file.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&raw, bytes).expect("write raw file");
    // This test binary runs only this test: no other thread reads the environment.
    std::env::set_var("ALSA_CONFIG_PATH", &conf);
    std::env::set_var("WEIR_ALSA_INFILE", &raw);
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();

    let mut registry = Registry::new();
    weir_live::register(&mut registry).expect("new kinds");
    // Room for everything the run captures: the test reads it after the run.
    let (sink, rx) = channel_sink("test.audio_out", AudioFrame::PORT, 4096);
    registry.register(sink).expect("new kind");
    let yaml = "
nodes:
  mic: { node: audio.capture, with: { device: default, rate: 48000, channels: 1 } }
  out: { node: test.audio_out, in: { in: mic.audio } }
";
    let plan = Loader::new(&registry)
        .load_str(Path::new("alsa.yaml"), yaml)
        .expect("valid graph");
    let running = Graph::build(plan, &registry).unwrap().start().unwrap();
    drop(registry);
    std::thread::sleep(Duration::from_millis(500));
    running.stop_handle().stop();
    let result = running.wait();
    let _ = std::fs::remove_file(&raw);
    result.expect("capture through ALSA runs");

    let packets: Vec<_> = rx.iter().collect();
    assert!(
        !packets.is_empty(),
        "no audio came from the ALSA file plugin"
    );
    let mut checked = 0;
    for p in &packets {
        let a = p.get::<AudioFrame>().expect("audio");
        assert_eq!((a.rate, a.channels), (RATE, 1));
        let (s, e) = (a.start_sample as usize, a.end_sample() as usize);
        if e <= file.len() {
            assert_eq!(&a.samples[..], &file[s..e], "samples at frame {s}");
            checked += a.frames();
        }
    }
    let end = packets
        .last()
        .and_then(|p| p.get::<AudioFrame>())
        .map(AudioFrame::end_sample);
    eprintln!(
        "{} packets, {checked} frames checked against the file, last end {end:?}",
        packets.len()
    );
    assert!(
        checked >= 960,
        "at least one whole packet read from the file"
    );
}
