//! Resampling graphs on recorded and synthetic audio: exact output lengths, a clean sine,
//! and timestamps that match sample positions.

mod common;

use std::f64::consts::PI;
use std::path::Path;

use common::{data, read_wav, registry, root, scratch, stderr, wav_frames, weir};
use weir_engine::{channel_sink, Graph, Loader, Payload, Timestamp};
use weir_media::AudioFrame;

fn expected_len(frames: u64, from: u32, to: u32) -> u64 {
    (frames as f64 * f64::from(to) / f64::from(from)).round() as u64
}

#[test]
fn resample_graph_gives_exact_lengths_at_every_rate() {
    let out = scratch("resample_lengths");
    for (file, rate) in [
        ("synth/question_22k.wav", 22050),
        ("synth/question_44k_stereo.wav", 44100),
        ("synth/command_48k.wav", 48000),
        ("pocketsphinx/cards/001.wav", 16000),
    ] {
        let input = data(file);
        let run = weir(
            &[
                "run",
                "graphs/resample.yaml",
                "--input",
                input.to_str().unwrap(),
            ],
            &[("WEIR_OUT", &out)],
        );
        assert!(run.status.success(), "{file}: {}", stderr(&run));
        let (spec, samples) = read_wav(&out.join("resampled_16k.wav"));
        assert_eq!((spec.sample_rate, spec.channels), (16000, 1), "{file}");
        let want = expected_len(wav_frames(&input), rate, 16000);
        assert_eq!(samples.len() as u64, want, "{file}: output length");
        let peak = samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.05, "{file}: output is silent (peak {peak})");
    }
}

fn write_sine(path: &Path, rate: u32, freq: f64, secs: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(f64::from(rate) * secs) as u64 {
        w.write_sample((2.0 * PI * freq * i as f64 / f64::from(rate)).sin() as f32 * 0.5)
            .unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn sine_48k_to_16k_keeps_frequency_and_60db_snr() {
    let dir = scratch("resample_sine");
    let input = dir.join("sine_1k_48k.wav");
    write_sine(&input, 48000, 1000.0, 2.0);
    let run = weir(
        &[
            "run",
            "graphs/resample.yaml",
            "--input",
            input.to_str().unwrap(),
            "--set",
            "output.format=float32",
        ],
        &[("WEIR_OUT", &dir)],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let (spec, out) = read_wav(&dir.join("resampled_16k.wav"));
    assert_eq!(spec.sample_rate, 16000);
    assert_eq!(out.len(), 32000);
    // Against the exact 1 kHz sine at 16 kHz, away from the edges.
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (i, &y) in out.iter().enumerate().take(30400).skip(1600) {
        let x = (2.0 * PI * 1000.0 * i as f64 / 16000.0).sin() * 0.5;
        signal += x * x;
        noise += (f64::from(y) - x).powi(2);
    }
    let snr = 10.0 * (signal / noise).log10();
    assert!(snr > 60.0, "SNR {snr:.1} dB");
    // Frequency: rising zero crossings per second.
    let crossings = out[1600..30400]
        .windows(2)
        .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
        .count();
    assert!(
        (crossings as f64 / 1.8 - 1000.0).abs() < 2.0,
        "{crossings} crossings in 1.8 s"
    );
}

#[test]
fn timestamps_increase_and_match_sample_positions() {
    let mut reg = registry();
    let (sink, rx) = channel_sink("test.collect", AudioFrame::PORT, 64);
    reg.register(sink).unwrap();
    let input = data("synth/question_44k_stereo.wav");
    let yaml = format!(
        "nodes:
  input: {{ node: audio.wav_file, with: {{ path: '{}', frame_ms: 7 }} }}
  resample: {{ node: audio.resample, in: {{ audio: input.audio }}, with: {{ rate: 16000 }} }}
  collect: {{ node: test.collect, in: {{ in: resample.audio }} }}
",
        input.display()
    );
    let plan = Loader::new(&reg)
        .load_str(Path::new("t.yaml"), &yaml)
        .unwrap();
    let running = Graph::build(plan, &reg).unwrap().start().unwrap();
    let packets: Vec<_> = rx.iter().collect();
    running.wait().unwrap();

    let mut next = 0u64;
    let mut last: Option<Timestamp> = None;
    for p in &packets {
        let a = p.get::<AudioFrame>().expect("not audio");
        assert_eq!((a.rate, a.channels), (16000, 1));
        assert_eq!(a.start_sample, next, "gap or overlap in the stream");
        assert_eq!(p.timestamp, Timestamp::from_samples(a.start_sample, 16000));
        if let Some(l) = last {
            assert!(p.timestamp > l, "timestamps must strictly increase");
        }
        last = Some(p.timestamp);
        next = a.end_sample();
    }
    assert_eq!(next, expected_len(wav_frames(&input), 44100, 16000));
}

#[test]
fn sinc_method_also_gives_exact_lengths() {
    let out = scratch("resample_sinc");
    let input = data("synth/question_22k.wav");
    let run = weir(
        &[
            "run",
            "graphs/resample.yaml",
            "--input",
            input.to_str().unwrap(),
            "--set",
            "resample.method=sinc",
        ],
        &[("WEIR_OUT", &out)],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let (_, samples) = read_wav(&out.join("resampled_16k.wav"));
    assert_eq!(
        samples.len() as u64,
        expected_len(wav_frames(&input), 22050, 16000)
    );
    let _ = root();
}
