//! `audio.wav_file`: reads a WAV file and emits it as timestamped audio frames.
//!
//! ```yaml
//! mic:
//!   node: audio.wav_file
//!   with: { path: data/question.wav, frame_ms: 20, realtime: false }
//! ```
//! Accepts 8/16/24/32-bit integer and 32-bit float PCM, at 1 Hz to 384 kHz, with 1 to 64
//! channels (other headers are refused before anything is allocated; a frame holds at most
//! [`MAX_FRAME_SAMPLES`] samples). With `realtime: true` each frame is released at its own
//! timestamp on the graph clock, like a microphone (on the virtual clock, as fast as the CPU
//! allows); a stop request ends the stream at once, even mid-wait. A truncated file delivers
//! every whole frame it has, then fails with the position.
//!
//! The kind has [`Role::Recording`]: `weir run --input FILE` sets `path` and `realtime`.

use std::fs::File;
use std::io::BufReader;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hound::{SampleFormat, WavReader};
use serde::Deserialize;
use weir_engine::{
    Config, Context, Flow, NodeError, NodeKind, OptionSpec, OptionType, Output, Ports, Role, Source,
};
use weir_media::AudioFrame;

/// Sample rates accepted in a WAV header, in Hz.
pub const RATE_RANGE: RangeInclusive<u32> = 1..=384_000;
/// Channel counts accepted in a WAV header.
pub const CHANNEL_RANGE: RangeInclusive<u16> = 1..=64;
/// The most samples (all channels) one frame of `audio.wav_file` may hold: 2^22.
pub const MAX_FRAME_SAMPLES: usize = 1 << 22;
/// The most samples [`read_wav`] reserves up front from the header's length (2^24, 64 MiB of
/// `f32`); a longer file grows the buffer as it is actually read.
const MAX_PREALLOCATED: usize = 1 << 24;

/// The ports of `audio.wav_file`.
pub struct WavFilePorts {
    audio: Output<AudioFrame>,
}

fn ports(p: &mut Ports) -> WavFilePorts {
    WavFilePorts {
        audio: p.output("audio", "audio frames, as recorded"),
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::source(
        "audio.wav_file",
        "Reads a WAV file as audio frames (replay or tests).",
        ports,
        |c: WavFileConfig, ports| Ok(WavFileNode::new(c, ports)),
    )
    .role(Role::Recording {
        path: "path",
        realtime: "realtime",
    })
}

/// Settings of [`WavFileNode`]: the options of `audio.wav_file`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WavFileConfig {
    /// File to read.
    pub path: PathBuf,
    /// Frame length in milliseconds.
    pub frame_ms: f64,
    /// Pace output at the speed of the recording (graph time).
    pub realtime: bool,
}

impl Config for WavFileConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::required("path", OptionType::Path, "WAV file to read"),
            OptionSpec::with_default("frame_ms", OptionType::Float, 20.0, "frame length in ms")
                .range(1.0, 10_000.0),
            OptionSpec::with_default(
                "realtime",
                OptionType::Bool,
                false,
                "release frames at the pace of the audio instead of as fast as possible",
            ),
        ]
    }
}

/// Checks a header's rate and channel count against [`RATE_RANGE`] and [`CHANNEL_RANGE`];
/// the error names the file and the accepted range.
pub fn check_spec(spec: &hound::WavSpec, path: &Path) -> Result<(), NodeError> {
    if !RATE_RANGE.contains(&spec.sample_rate) {
        return Err(NodeError::new(format!(
            "`{}`: unsupported sample rate {} Hz in the WAV header (accepted: {}..={} Hz)",
            path.display(),
            spec.sample_rate,
            RATE_RANGE.start(),
            RATE_RANGE.end()
        )));
    }
    if !CHANNEL_RANGE.contains(&spec.channels) {
        return Err(NodeError::new(format!(
            "`{}`: unsupported channel count {} in the WAV header (accepted: {}..={})",
            path.display(),
            spec.channels,
            CHANNEL_RANGE.start(),
            CHANNEL_RANGE.end()
        )));
    }
    Ok(())
}

/// Frames (per channel) in one `frame_ms` frame at `rate`, for `channels` channels; an error
/// if the frame would hold more than [`MAX_FRAME_SAMPLES`] samples.
pub fn frame_len(frame_ms: f64, rate: u32, channels: u16, path: &Path) -> Result<usize, NodeError> {
    let frames = (frame_ms / 1000.0 * f64::from(rate)).round();
    // `as` saturates (and maps NaN to 0): the check below catches anything absurd.
    let frames = (frames as usize).max(1);
    match frames.checked_mul(usize::from(channels)) {
        Some(n) if n <= MAX_FRAME_SAMPLES => Ok(frames),
        _ => Err(NodeError::new(format!(
            "`{}`: frames of {frame_ms} ms at {rate} Hz x{channels} would hold more than {} \
             samples each; use a smaller frame_ms",
            path.display(),
            MAX_FRAME_SAMPLES
        ))),
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
        check_spec(spec, path)?;
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
/// The header is checked like `audio.wav_file` does (rate in [`RATE_RANGE`], channels in
/// [`CHANNEL_RANGE`]).
pub fn read_wav(path: &Path) -> Result<(hound::WavSpec, Vec<f32>), NodeError> {
    let file = File::open(path).map_err(|e| {
        NodeError::with_source(format!("cannot open WAV file `{}`", path.display()), e)
    })?;
    decode_wav(BufReader::new(file), path)
}

/// Decodes a whole WAV stream (any format `audio.wav_file` reads) as interleaved `f32`
/// samples; `path` names the stream in errors. Header values are range-checked before
/// anything is allocated, and at most `MAX_PREALLOCATED` samples are reserved up front,
/// whatever the header declares.
pub fn decode_wav<R: std::io::Read>(
    input: R,
    path: &Path,
) -> Result<(hound::WavSpec, Vec<f32>), NodeError> {
    let mut reader = wav_reader(input, path)?;
    let spec = reader.spec();
    let decoder = SampleDecoder::for_spec(&spec, path)?;
    let declared = usize::try_from(reader.len()).unwrap_or(usize::MAX);
    let mut samples = Vec::with_capacity(declared.min(MAX_PREALLOCATED));
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
    ports: WavFilePorts,
    reader: Option<WavReader<BufReader<File>>>,
    decoder: SampleDecoder,
    rate: u32,
    channels: u16,
    frame_frames: usize,
    /// Index of the frame after the last one read.
    position: u64,
    total_frames: u64,
    /// A frame read but not sent yet (pacing was interrupted).
    pending: Option<AudioFrame>,
    /// The read error to report once the frames before it are sent.
    failure: Option<hound::Error>,
    /// Nothing more to read.
    exhausted: bool,
}

impl WavFileNode {
    /// A node that will read `config.path` when opened and send on `ports`.
    pub fn new(config: WavFileConfig, ports: WavFilePorts) -> Self {
        WavFileNode {
            config,
            ports,
            reader: None,
            decoder: SampleDecoder::Float,
            rate: 0,
            channels: 0,
            frame_frames: 0,
            position: 0,
            total_frames: 0,
            pending: None,
            failure: None,
            exhausted: false,
        }
    }

    fn path(&self) -> String {
        self.config.path.display().to_string()
    }

    /// Reads the next frame into `pending` (whole frames only), noting a read error and the
    /// end of the file.
    fn read_frame(&mut self) {
        let Some(reader) = self.reader.as_mut() else {
            self.exhausted = true;
            return;
        };
        let channels = usize::from(self.channels);
        let want = self.frame_frames * channels;
        let mut samples = Vec::with_capacity(want);
        self.failure = self.decoder.read(reader, want, &mut samples);
        let short = samples.len() < want;
        // Keep whole frames only (a truncated file may end mid-frame).
        samples.truncate(samples.len() - samples.len() % channels);
        if !samples.is_empty() {
            let frame = AudioFrame {
                rate: self.rate,
                channels: self.channels,
                start_sample: self.position,
                samples: Arc::from(samples),
            };
            self.position = frame.end_sample();
            self.pending = Some(frame);
        }
        self.exhausted = self.failure.is_some() || short || self.position >= self.total_frames;
    }
}

/// Opens a WAV file with an error that says which file and what is wrong with it; the
/// header's rate and channel count are checked (see [`check_spec`]).
pub fn open_wav(path: &std::path::Path) -> Result<WavReader<BufReader<File>>, NodeError> {
    let file = File::open(path).map_err(|e| {
        NodeError::with_source(format!("cannot open WAV file `{}`", path.display()), e)
    })?;
    wav_reader(BufReader::new(file), path)
}

/// A WAV reader on `input` whose header passed the range checks.
fn wav_reader<R: std::io::Read>(input: R, path: &Path) -> Result<WavReader<R>, NodeError> {
    let shown = path.display();
    let reader = WavReader::new(input).map_err(|e| match e {
        hound::Error::IoError(io) => {
            NodeError::with_source(format!("cannot read WAV file `{shown}`"), io)
        }
        other => NodeError::new(format!(
            "`{shown}` is not a readable WAV file: {other} (expected RIFF/WAVE PCM or float)"
        )),
    })?;
    check_spec(&reader.spec(), path)?;
    Ok(reader)
}

impl Source for WavFileNode {
    fn open(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        let reader = open_wav(&self.config.path)?;
        let spec = reader.spec();
        self.decoder = SampleDecoder::for_spec(&spec, &self.config.path)?;
        self.rate = spec.sample_rate;
        self.channels = spec.channels;
        self.frame_frames = frame_len(
            self.config.frame_ms,
            self.rate,
            self.channels,
            &self.config.path,
        )?;
        tracing::info!(
            path = %self.path(), rate = self.rate, channels = self.channels,
            bits = spec.bits_per_sample, frames = reader.duration(), "opened WAV file"
        );
        self.total_frames = u64::from(reader.duration());
        self.reader = Some(reader);
        Ok(())
    }

    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        if self.pending.is_none() && !self.exhausted {
            self.read_frame();
        }
        if let Some(frame) = self.pending.take() {
            let t = frame.timestamp();
            if self.config.realtime && !ctx.sleep_until(t) {
                if ctx.stopping() {
                    return Ok(Flow::Done);
                }
                // Interrupted while waiting: the frame goes out on the next call, on time.
                self.pending = Some(frame);
                return Ok(Flow::Continue);
            }
            ctx.send(self.ports.audio, t, frame)?;
        }
        if let Some(e) = self.failure.take() {
            return Err(NodeError::new(format!(
                "WAV file `{}` is truncated or corrupt after {} frames ({:.3}s): {e}",
                self.path(),
                self.position,
                self.position as f64 / f64::from(self.rate)
            )));
        }
        Ok(if self.exhausted {
            Flow::Done
        } else {
            Flow::Continue
        })
    }

    fn close(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        self.reader = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{run_source_until, temp_dir};
    use std::time::{Duration, Instant};
    use weir_engine::testing::NodeRunner;
    use weir_engine::{ClockKind, Timestamp};

    /// A 16-bit PCM WAV file: header fields as given, `declared` data bytes, then `data`.
    fn wav_bytes(rate: u32, channels: u16, declared: u32, data: &[u8]) -> Vec<u8> {
        let align = channels * 2;
        let mut b = Vec::new();
        b.extend(b"RIFF");
        b.extend(36u32.saturating_add(declared).to_le_bytes());
        b.extend(b"WAVEfmt ");
        b.extend(16u32.to_le_bytes());
        b.extend(1u16.to_le_bytes());
        b.extend(channels.to_le_bytes());
        b.extend(rate.to_le_bytes());
        b.extend((rate.wrapping_mul(u32::from(align))).to_le_bytes());
        b.extend(align.to_le_bytes());
        b.extend(16u16.to_le_bytes());
        b.extend(b"data");
        b.extend(declared.to_le_bytes());
        b.extend(data);
        b
    }

    fn write_pcm16(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn headers_out_of_range_are_refused_with_the_range() {
        let dir = temp_dir("wav-ranges");
        for (name, rate, channels, what) in [
            ("fast.wav", 400_000, 1, "1..=384000 Hz"),
            ("wide.wav", 16_000, 65, "1..=64"),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, wav_bytes(rate, channels, 0, &[])).unwrap();
            let err = read_wav(&path).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(what), "{err}");
            let err = NodeRunner::new(kind())
                .option("path", path.to_str().unwrap())
                .run()
                .unwrap_err()
                .to_string();
            assert!(err.contains(name) && err.contains(what), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn frames_are_capped() {
        let path = Path::new("big.wav");
        assert_eq!(frame_len(20.0, 16_000, 1, path).unwrap(), 320);
        assert_eq!(frame_len(0.01, 16_000, 1, path).unwrap(), 1);
        let err = frame_len(10_000.0, 384_000, 64, path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("big.wav") && err.contains("4194304"), "{err}");
        assert!(frame_len(f64::INFINITY, 8000, 1, path).is_err());
    }

    #[test]
    fn a_huge_declared_length_is_not_allocated() {
        let dir = temp_dir("wav-huge");
        let path = dir.join("lies.wav");
        std::fs::write(&path, wav_bytes(16_000, 1, 0xFFFF_FFF0, &[0u8; 100])).unwrap();
        let err = read_wav(&path).unwrap_err().to_string();
        assert!(
            err.contains("truncated or corrupt after 50 samples"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn frames_cover_the_file_with_exact_timestamps() {
        let dir = temp_dir("wav-frames");
        let path = dir.join("stereo.wav");
        let samples: Vec<i16> = (0..2 * 1000).map(|i| (i % 100) as i16 * 100).collect();
        write_pcm16(&path, 8000, 2, &samples);
        let out = NodeRunner::new(kind())
            .option("path", path.to_str().unwrap())
            .option("frame_ms", 30.0)
            .run()
            .unwrap();
        let frames = out.values::<AudioFrame>("audio");
        assert_eq!(frames.len(), 5); // 240 frames each, the last 40
        let mut next = 0;
        for (f, p) in frames.iter().zip(out.packets("audio")) {
            assert_eq!((f.rate, f.channels, f.start_sample), (8000, 2, next));
            assert_eq!(p.timestamp, Timestamp::from_samples(next, 8000));
            next = f.end_sample();
        }
        assert_eq!(next, 1000);
        let all: Vec<f32> = frames
            .iter()
            .flat_map(|f| f.samples.iter().copied())
            .collect();
        let (_, read) = read_wav(&path).unwrap();
        assert_eq!(all, read);
        assert_eq!(all[3], 300.0 / 32768.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_truncated_file_delivers_its_whole_frames_then_fails() {
        let dir = temp_dir("wav-truncated");
        let path = dir.join("cut.wav");
        // Declares 1000 mono samples, holds 250 and half of the next.
        std::fs::write(&path, wav_bytes(1000, 1, 2000, &[0u8; 501])).unwrap();
        let err = NodeRunner::new(kind())
            .unpaced()
            .option("path", path.to_str().unwrap())
            .option("frame_ms", 100.0)
            .run()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cut.wav") && err.contains("after 250 frames"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn realtime_frames_follow_the_graph_clock() {
        let dir = temp_dir("wav-realtime");
        let path = dir.join("short.wav");
        write_pcm16(&path, 8000, 1, &[0; 1600]); // 200 ms
        let t0 = Instant::now();
        let out = NodeRunner::new(kind())
            .clock(ClockKind::Real)
            .option("path", path.to_str().unwrap())
            .option("realtime", true)
            .run()
            .unwrap();
        let elapsed = t0.elapsed();
        assert_eq!(out.packets("audio").len(), 10);
        assert!(elapsed >= Duration::from_millis(170), "{elapsed:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stop_ends_a_realtime_replay_at_once() {
        let dir = temp_dir("wav-stop");
        let path = dir.join("long.wav");
        write_pcm16(&path, 8000, 1, &vec![0; 8000 * 20]); // 20 s
        let with = format!(
            "{{ path: {}, realtime: true, frame_ms: 20 }}",
            serde_json::to_string(path.to_str().unwrap()).unwrap()
        );
        let (got, after_stop) = run_source_until(
            kind(),
            &with,
            "audio",
            weir_engine::PortType::of::<AudioFrame>(),
            |p| p.timestamp >= Timestamp::from_nanos(100_000_000),
        );
        assert!(after_stop < Duration::from_secs(1), "{after_stop:?}");
        assert!(got.len() >= 6 && got.len() < 100, "{} frames", got.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
