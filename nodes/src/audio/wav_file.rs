//! `audio.wav_file`: reads a WAV file and emits it as timestamped audio frames.
//!
//! ```yaml
//! mic:
//!   node: audio.wav_file
//!   with: { path: data/question.wav, frame_ms: 20, realtime: false }
//! ```
//! Accepts 8/16/24/32-bit integer and 32-bit float PCM, any rate, any channel count.
//! With `realtime: true` frames are released at the pace of the audio, like a microphone.
//! A truncated file delivers every whole frame it has, then fails with the position.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hound::{SampleFormat, WavReader};
use weir_engine::{
    AudioFrame, Flow, Node, NodeError, NodeKind, OptionSpec, OptionType, Options, Outputs, Packet,
    Payload, PortSpec, PortType,
};

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::new(
        "audio.wav_file",
        "Reads a WAV file as audio frames (replay or tests).",
        |o| Ok(Box::new(WavFileNode::new(WavFileConfig::from_options(o)?))),
    )
    .output(PortSpec::new(
        "audio",
        PortType::Audio,
        "audio frames, as recorded",
    ))
    .option(OptionSpec::required(
        "path",
        OptionType::Path,
        "WAV file to read",
    ))
    .option(
        OptionSpec::with_default("frame_ms", OptionType::Float, 20.0, "frame length in ms")
            .range(1.0, 10_000.0),
    )
    .option(OptionSpec::with_default(
        "realtime",
        OptionType::Bool,
        false,
        "release frames at the pace of the audio instead of as fast as possible",
    ))
}

/// Settings of [`WavFileNode`].
#[derive(Clone, Debug, PartialEq)]
pub struct WavFileConfig {
    /// File to read.
    pub path: PathBuf,
    /// Frame length in milliseconds.
    pub frame_ms: f64,
    /// Pace output at real time.
    pub realtime: bool,
}

impl WavFileConfig {
    /// Reads the settings from validated options.
    pub fn from_options(o: &Options) -> Result<Self, NodeError> {
        Ok(WavFileConfig {
            path: PathBuf::from(o.str("path")?),
            frame_ms: o.f64("frame_ms")?,
            realtime: o.bool("realtime")?,
        })
    }
}

/// Converts hound's integer or float samples to `f32` in [-1, 1].
#[derive(Clone, Copy)]
enum SampleDecoder {
    Int { scale: f32 },
    Float,
}

impl SampleDecoder {
    /// The decoder for a file's format; an error names the file and what is supported.
    fn for_spec(spec: &hound::WavSpec, path: &Path) -> Result<Self, NodeError> {
        if spec.channels == 0 || spec.sample_rate == 0 {
            return Err(NodeError::new(format!(
                "`{}`: invalid header ({} channels at {} Hz)",
                path.display(),
                spec.channels,
                spec.sample_rate
            )));
        }
        match (spec.sample_format, spec.bits_per_sample) {
            (SampleFormat::Int, bits @ 8..=32) => Ok(SampleDecoder::Int {
                scale: 1.0 / (1u64 << (bits - 1)) as f32,
            }),
            (SampleFormat::Float, 32) => Ok(SampleDecoder::Float),
            (format, bits) => Err(NodeError::new(format!(
                "`{}`: unsupported sample format {format:?} with {bits} bits \
                 (expected 8/16/24/32-bit integer or 32-bit float)",
                path.display()
            ))),
        }
    }

    /// Appends up to `max` samples to `out`; returns the error that stopped reading early.
    fn read<R: std::io::Read>(
        self,
        reader: &mut WavReader<R>,
        max: usize,
        out: &mut Vec<f32>,
    ) -> Option<hound::Error> {
        fn take<T, R: std::io::Read>(
            reader: &mut WavReader<R>,
            max: usize,
            out: &mut Vec<f32>,
            convert: impl Fn(T) -> f32,
        ) -> Option<hound::Error>
        where
            T: hound::Sample,
        {
            for s in reader.samples::<T>().take(max) {
                match s {
                    Ok(v) => out.push(convert(v)),
                    Err(e) => return Some(e),
                }
            }
            None
        }
        match self {
            SampleDecoder::Int { scale } => take(reader, max, out, |v: i32| v as f32 * scale),
            SampleDecoder::Float => take(reader, max, out, |v: f32| v),
        }
    }
}

/// Reads a whole WAV file (any format `audio.wav_file` reads) as interleaved `f32` samples.
pub fn read_wav(path: &Path) -> Result<(hound::WavSpec, Vec<f32>), NodeError> {
    let mut reader = open_wav(path)?;
    let spec = reader.spec();
    let decoder = SampleDecoder::for_spec(&spec, path)?;
    let mut samples = Vec::with_capacity(reader.len() as usize);
    match decoder.read(&mut reader, usize::MAX, &mut samples) {
        None => Ok((spec, samples)),
        Some(e) => Err(NodeError::new(format!(
            "WAV file `{}` is truncated or corrupt after {} samples: {e}",
            path.display(),
            samples.len()
        ))),
    }
}

/// Source node reading a WAV file.
pub struct WavFileNode {
    config: WavFileConfig,
    reader: Option<WavReader<BufReader<File>>>,
    decoder: SampleDecoder,
    rate: u32,
    channels: u16,
    frame_frames: usize,
    position: u64,
    total_frames: u64,
    started: Option<Instant>,
}

impl WavFileNode {
    /// A node that will read `config.path` when opened.
    pub fn new(config: WavFileConfig) -> Self {
        WavFileNode {
            config,
            reader: None,
            decoder: SampleDecoder::Float,
            rate: 0,
            channels: 0,
            frame_frames: 0,
            position: 0,
            total_frames: 0,
            started: None,
        }
    }

    fn path(&self) -> String {
        self.config.path.display().to_string()
    }
}

/// Opens a WAV file with an error that says which file and what is wrong with it.
pub fn open_wav(path: &std::path::Path) -> Result<WavReader<BufReader<File>>, NodeError> {
    let shown = path.display();
    let file = File::open(path)
        .map_err(|e| NodeError::with_source(format!("cannot open WAV file `{shown}`"), e))?;
    WavReader::new(BufReader::new(file)).map_err(|e| match e {
        hound::Error::IoError(io) => {
            NodeError::with_source(format!("cannot read WAV file `{shown}`"), io)
        }
        other => NodeError::new(format!(
            "`{shown}` is not a readable WAV file: {other} (expected RIFF/WAVE PCM or float)"
        )),
    })
}

impl Node for WavFileNode {
    fn open(&mut self) -> Result<(), NodeError> {
        let reader = open_wav(&self.config.path)?;
        let spec = reader.spec();
        self.decoder = SampleDecoder::for_spec(&spec, &self.config.path)?;
        self.rate = spec.sample_rate;
        self.channels = spec.channels;
        self.frame_frames =
            ((self.config.frame_ms / 1000.0 * f64::from(self.rate)).round() as usize).max(1);
        tracing::info!(
            path = %self.path(), rate = self.rate, channels = self.channels,
            bits = spec.bits_per_sample, frames = reader.duration(), "opened WAV file"
        );
        self.total_frames = u64::from(reader.duration());
        self.reader = Some(reader);
        Ok(())
    }

    fn produce(&mut self, out: &mut Outputs) -> Result<Flow, NodeError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Flow::Done);
        };
        let want = self.frame_frames * usize::from(self.channels);
        let mut samples = Vec::with_capacity(want);
        let failure = self.decoder.read(reader, want, &mut samples);
        let short = samples.len() < want;
        // Keep whole frames only (a truncated file may end mid-frame).
        samples.truncate(samples.len() - samples.len() % usize::from(self.channels));
        if !samples.is_empty() {
            let frame = AudioFrame {
                rate: self.rate,
                channels: self.channels,
                start_sample: self.position,
                samples: Arc::from(samples),
            };
            self.position = frame.end_sample();
            if self.config.realtime {
                self.pace(frame.start_sample);
            }
            out.send(0, Packet::new(frame.timestamp(), Payload::Audio(frame)))?;
        }
        if let Some(e) = failure {
            return Err(NodeError::new(format!(
                "WAV file `{}` is truncated or corrupt after {} frames ({:.3}s): {e}",
                self.path(),
                self.position,
                self.position as f64 / f64::from(self.rate)
            )));
        }
        let done = short || self.position >= self.total_frames;
        Ok(if done { Flow::Done } else { Flow::Continue })
    }
}

impl WavFileNode {
    /// Sleeps until the wall-clock time of the frame starting at `start_sample`.
    fn pace(&mut self, start_sample: u64) {
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = started + Duration::from_secs_f64(start_sample as f64 / f64::from(self.rate));
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}
