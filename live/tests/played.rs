//! `audio.playback`'s `played` output on the virtual speaker: it carries exactly what the
//! device was handed, silence included, with positions from the device's sample count, and
//! after an interrupt the silence that was played instead of the flushed audio.
//! `cargo test -p weir-live --test played`.

use std::sync::Arc;

use weir_engine::testing::NodeRunner;
use weir_engine::{ClockKind, Packet, Timestamp};
use weir_live::playback;
use weir_live::virtual_device::VirtualSpeaker;
use weir_media::{AudioFrame, Event};

const RATE: u32 = 48_000;

/// `seconds` of a 440 Hz tone in 20 ms frames; with `burst`, every packet is stamped at 0
/// so the (paced) feeder sends them all at once and the playback ring fills.
fn tone(seconds: f64, burst: bool) -> Vec<Packet> {
    let n = (seconds * f64::from(RATE)) as usize;
    let samples: Vec<f32> = (0..n)
        .map(|i| 0.3 * (i as f32 * 440.0 * std::f32::consts::TAU / RATE as f32).sin())
        .collect();
    samples
        .chunks(960)
        .enumerate()
        .map(|(k, c)| {
            let f = AudioFrame {
                rate: RATE,
                channels: 1,
                start_sample: (k * 960) as u64,
                samples: Arc::from(c),
            };
            let at = if burst {
                Timestamp::ZERO
            } else {
                f.timestamp()
            };
            Packet::new(at, f)
        })
        .collect()
}

/// The `played` frames, checked contiguous from 0, as one stream.
fn played(out: &weir_engine::testing::RunOutput) -> Vec<f32> {
    let mut all = Vec::new();
    for f in out.values::<AudioFrame>("played") {
        assert_eq!(f.start_sample, all.len() as u64, "no hole in the positions");
        assert_eq!((f.rate, f.channels), (RATE, 1));
        all.extend_from_slice(&f.samples);
    }
    all
}

#[test]
fn played_is_what_the_speaker_was_handed() {
    let speaker = VirtualSpeaker::new(RATE, 1);
    let (kind, _) = playback::kind_with_device("test.speaker", speaker.device());
    let input = tone(0.5, false);
    let out = NodeRunner::new(kind)
        .clock(ClockKind::Real)
        .feed("audio", input)
        .run()
        .expect("playback runs");
    let played = played(&out);
    let recorded = speaker.recorded();
    assert!(
        played.len() >= RATE as usize / 2,
        "{} samples",
        played.len()
    );
    let n = played.len().min(recorded.len());
    assert_eq!(&played[..n], &recorded[..n], "sample for sample");
    let sounding = played.iter().filter(|&&s| s != 0.0).count();
    assert!(
        sounding >= RATE as usize / 2 - 960,
        "the whole tone: {sounding}"
    );
}

#[test]
fn after_an_interrupt_played_shows_silence_not_the_flushed_audio() {
    let speaker = VirtualSpeaker::new(RATE, 1);
    let (kind, counters) = playback::kind_with_device("test.speaker", speaker.device());
    let out = NodeRunner::new(kind)
        .clock(ClockKind::Real)
        .option("buffer_ms", 500.0)
        .feed("audio", tone(2.0, true))
        .interrupt_at([Packet::new(
            Timestamp::from_secs_f64(0.8),
            Event::new("speech_start", serde_json::json!({})),
        )])
        .run()
        .expect("playback runs");
    let played = played(&out);
    let recorded = speaker.recorded();
    let n = played.len().min(recorded.len());
    assert_eq!(&played[..n], &recorded[..n], "sample for sample");
    let flushed = counters
        .flushed_frames
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(flushed > 0, "the interrupt discarded queued audio");
    let sounding = played.iter().filter(|&&s| s != 0.0).count() as u64;
    assert!(
        sounding + flushed <= 2 * u64::from(RATE),
        "what was flushed was never played: {sounding} + {flushed}"
    );
}
