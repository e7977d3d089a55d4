//! `audio.wav_writer`: writes audio frames to a WAV file.
//!
//! ```yaml
//! save:
//!   node: audio.wav_writer
//!   in: { audio: resample.audio }
//!   with: { path: out/speech16k.wav, format: pcm16 }
//! ```
//! The file takes the rate and channel count of the first frame; a later change is an error.
//! The header is finalized at end of stream.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use hound::{SampleFormat, WavSpec, WavWriter};
use weir_engine::{
    Node, NodeError, NodeKind, OptionSpec, OptionType, Outputs, Packet, Payload, PortSpec, PortType,
};

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::new(
        "audio.wav_writer",
        "Writes audio frames to a WAV file.",
        |o| {
            Ok(Box::new(WavWriterNode {
                path: PathBuf::from(o.str("path")?),
                float: o.str("format")? == "float32",
                writer: None,
                format: None,
            }))
        },
    )
    .input(PortSpec::new("audio", PortType::Audio, "audio to write"))
    .option(OptionSpec::required(
        "path",
        OptionType::Path,
        "WAV file to create",
    ))
    .option(OptionSpec::with_default(
        "format",
        OptionType::Choice(&["pcm16", "float32"]),
        "pcm16",
        "sample format of the file",
    ))
}

/// Sink node writing a WAV file.
pub struct WavWriterNode {
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

impl Node for WavWriterNode {
    fn process(
        &mut self,
        _port: usize,
        packet: Packet,
        _out: &mut Outputs,
    ) -> Result<(), NodeError> {
        let Payload::Audio(frame) = packet.payload else {
            return Ok(());
        };
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

    fn close(&mut self, _out: &mut Outputs) -> Result<(), NodeError> {
        if let Some(w) = self.writer.take() {
            w.finalize()
                .map_err(|e| self.error("cannot finish WAV file", e))?;
        }
        Ok(())
    }
}
