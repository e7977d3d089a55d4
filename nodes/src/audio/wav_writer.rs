//! `audio.wav_writer`: writes audio frames to a WAV file.
//!
//! ```yaml
//! save:
//!   node: audio.wav_writer
//!   in: { audio: resample.audio }
//!   with: { path: out/speech16k.wav, format: pcm16 }
//! ```
//! The file is created at the first frame (its folder must exist) and takes its rate and
//! channel count; a later change is an error. The header is finalized at end of stream. In a replay
//! (`weir run --input`) this node takes the place of a speaker (`audio.playback`).

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use hound::{SampleFormat, WavSpec, WavWriter};
use serde::Deserialize;
use weir_engine::{
    Config, Context, Incoming, Input, NodeError, NodeKind, OptionSpec, OptionType, Ports,
    Processor, Role,
};
use weir_media::AudioFrame;

/// Sample format of the file written by `audio.wav_writer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WavFormat {
    /// 16-bit integer PCM (samples clamped to [-1, 1]).
    Pcm16,
    /// 32-bit float.
    Float32,
}

/// Options of `audio.wav_writer`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WavWriterConfig {
    /// File to create.
    pub path: PathBuf,
    /// Sample format of the file.
    pub format: WavFormat,
}

impl Config for WavWriterConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::required("path", OptionType::Path, "WAV file to create"),
            OptionSpec::with_default(
                "format",
                OptionType::Choice(&["pcm16", "float32"]),
                "pcm16",
                "sample format of the file",
            ),
        ]
    }
}

/// The ports of `audio.wav_writer`.
pub struct WavWriterPorts {
    audio: Input<AudioFrame>,
}

fn ports(p: &mut Ports) -> WavWriterPorts {
    WavWriterPorts {
        audio: p.input("audio", "audio to write"),
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "audio.wav_writer",
        "Writes audio frames to a WAV file.",
        ports,
        |c: WavWriterConfig, ports| {
            Ok(WavWriterNode {
                ports,
                path: c.path,
                float: c.format == WavFormat::Float32,
                writer: None,
                format: None,
            })
        },
    )
    .role(Role::Writer {
        path: "path",
        extension: "wav",
    })
}

/// Sink node writing a WAV file.
pub struct WavWriterNode {
    ports: WavWriterPorts,
    path: PathBuf,
    float: bool,
    writer: Option<WavWriter<BufWriter<File>>>,
    format: Option<(u32, u16)>,
}

impl WavWriterNode {
    fn error(&self, what: &str, e: hound::Error) -> NodeError {
        NodeError::new(format!("{what} `{}`: {e}", self.path.display()))
    }
}

impl Processor for WavWriterNode {
    fn process(&mut self, input: Incoming, _ctx: &mut Context) -> Result<(), NodeError> {
        let frame = self.ports.audio.expect(&input)?;
        match self.format {
            None => {
                let spec = WavSpec {
                    channels: frame.channels,
                    sample_rate: frame.rate,
                    bits_per_sample: if self.float { 32 } else { 16 },
                    sample_format: if self.float {
                        SampleFormat::Float
                    } else {
                        SampleFormat::Int
                    },
                };
                let w = WavWriter::create(&self.path, spec)
                    .map_err(|e| self.error("cannot create WAV file", e))?;
                self.writer = Some(w);
                self.format = Some((frame.rate, frame.channels));
            }
            Some(f) if f != (frame.rate, frame.channels) => {
                return Err(NodeError::new(format!(
                    "`{}`: audio format changed mid-stream from {} Hz x{} to {} Hz x{}",
                    self.path.display(),
                    f.0,
                    f.1,
                    frame.rate,
                    frame.channels
                )))
            }
            Some(_) => {}
        }
        let float = self.float;
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let result: Result<(), hound::Error> = if float {
            frame.samples.iter().try_for_each(|&s| w.write_sample(s))
        } else {
            frame
                .samples
                .iter()
                .try_for_each(|&s| w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16))
        };
        result.map_err(|e| self.error("cannot write WAV file", e))
    }

    /// Writes the header's sizes and flushes the file: runs at end of stream, including
    /// after a stop request (Ctrl-C, SIGTERM).
    fn close(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(w) = self.writer.take() {
            w.finalize()
                .map_err(|e| self.error("cannot finish WAV file", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use weir_engine::testing::NodeRunner;
    use weir_engine::Packet;

    fn frames(rate: u32, channels: u16, blocks: &[&[f32]]) -> Vec<Packet> {
        let mut pos = 0;
        blocks
            .iter()
            .map(|b| {
                let f = AudioFrame {
                    rate,
                    channels,
                    start_sample: pos,
                    samples: Arc::from(*b),
                };
                pos = f.end_sample();
                Packet::new(f.timestamp(), f)
            })
            .collect()
    }

    #[test]
    fn close_finalizes_a_readable_file() {
        let dir = std::env::temp_dir().join(format!("weir-wav-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (format, float) in [("pcm16", false), ("float32", true)] {
            let path = dir.join(format!("{format}.wav"));
            NodeRunner::new(kind())
                .unpaced()
                .option("path", path.to_str().unwrap())
                .option("format", format)
                .feed(
                    "audio",
                    frames(8000, 2, &[&[0.5, -0.5, 0.25, 0.0], &[2.0, -2.0]]),
                )
                .run()
                .unwrap();
            let (spec, samples) = crate::audio::wav_file::read_wav(&path).unwrap();
            assert_eq!((spec.sample_rate, spec.channels), (8000, 2));
            assert_eq!(spec.sample_format == SampleFormat::Float, float);
            assert_eq!(samples.len(), 6);
            let expected = [0.5, -0.5, 0.25, 0.0];
            for (a, b) in samples.iter().zip(expected) {
                assert!((a - b).abs() < 1e-3, "{a} vs {b}");
            }
            if float {
                assert_eq!(&samples[4..], [2.0, -2.0]);
            } else {
                assert!(samples[4] > 0.99 && samples[5] < -0.99);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_format_change_mid_stream_is_an_error() {
        let dir = std::env::temp_dir().join(format!("weir-wav-change-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.wav");
        let mut packets = frames(8000, 1, &[&[0.0; 80]]);
        packets.extend(
            frames(16000, 1, &[&[0.0; 160], &[0.0; 160]])
                .into_iter()
                .skip(1),
        );
        let err = NodeRunner::new(kind())
            .unpaced()
            .option("path", path.to_str().unwrap())
            .feed("audio", packets)
            .run()
            .unwrap_err()
            .to_string();
        assert!(err.contains("format changed mid-stream"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
