//! Embedding Weir in a program: the program feeds audio it already has (here, read from a
//! WAV file) into a graph and reads speech segments back, with no files in between.
//!
//! `cargo run --example embed [-- FILE.wav]` (default: data/pauses.wav from tools/setup.sh)

use std::path::Path;
use std::sync::Arc;

use weir_engine::{channel_sink, channel_source, Graph, Loader, Packet, Payload};
use weir_media::{AudioFrame, SpeechSegment};

const GRAPH: &str = "
nodes:
  mic: { node: app.audio_in }
  resample: { node: audio.resample, in: { audio: mic.out }, with: { rate: 16000 } }
  vad:
    node: speech.energy_vad
    in: { audio: resample.audio }
    with: { min_silence_ms: 400 }
  segments: { node: app.segments_out, in: { in: vad.segment } }
";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "data/pauses.wav".into());

    // The program's own source and sink become node kinds the graph can use.
    // The source holds a few frames ahead of the graph (feeding blocks when it is full); the
    // sink holds segments until the program reads them, after feeding everything.
    let mut registry = weir_nodes::registry()?;
    let (source, audio_tx) = channel_source("app.audio_in", AudioFrame::PORT, 64);
    let (sink, segments_rx) = channel_sink("app.segments_out", SpeechSegment::PORT, 4096);
    registry.register(source)?;
    registry.register(sink)?;

    let plan = Loader::new(&registry).load_str(Path::new("embedded.yaml"), GRAPH)?;
    let running = Graph::build(plan, &registry)?.start()?;

    // Feed 20 ms frames, as a capture callback would.
    let (spec, samples) = weir_nodes::audio::wav_file::read_wav(std::path::Path::new(&path))?;
    let frame = (spec.sample_rate / 50) as usize * usize::from(spec.channels);
    for (i, chunk) in samples.chunks(frame).enumerate() {
        let audio = AudioFrame {
            rate: spec.sample_rate,
            channels: spec.channels,
            start_sample: (i * frame / usize::from(spec.channels)) as u64,
            samples: Arc::from(chunk),
        };
        audio_tx.send(Packet::new(audio.timestamp(), audio))?;
    }
    drop(audio_tx); // end of stream: the graph flushes and ends

    for packet in segments_rx.iter() {
        if let Some(s) = packet.get::<SpeechSegment>() {
            println!("speech from {} to {}", s.start(), s.end());
        }
    }
    let report = running.wait()?;
    eprintln!("{}", report.table());
    Ok(())
}
