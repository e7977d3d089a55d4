//! cpal glue: choosing a device, negotiating a stream configuration, building streams whose
//! callbacks only touch the rings of [`crate::ring`], and listing devices.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{
    Device, ErrorKind, FromSample, Host, SampleFormat, SizedSample, Stream, StreamConfig,
    SupportedStreamConfigRange,
};

use crate::ring::{CaptureFeed, PlaybackDrain};
use crate::LiveError;

/// How to replay a file when there is no microphone; appended to "no input device" errors.
pub const REPLAY_HINT: &str = "to run without a microphone, replay a WAV file instead: use node \
    `audio.wav_file` (with: { path: FILE.wav, realtime: true }) in place of `audio.capture`, \
    or run `weir run GRAPH --input FILE.wav`";

/// Which way a stream goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Capture (microphone).
    Input,
    /// Playback (speaker).
    Output,
}

impl Direction {
    fn word(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

/// The device name of a cpal device, or a placeholder when the backend cannot say.
pub fn device_name(device: &Device) -> String {
    device
        .description()
        .map(|d| d.name().to_string())
        .unwrap_or_else(|_| "(unnamed device)".into())
}

/// Finds `name` (`default` for the host's default) among the host's devices of `direction`.
pub fn find_device(host: &Host, name: &str, direction: Direction) -> Result<Device, LiveError> {
    if name.is_empty() || name == "default" {
        let found = match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return found.ok_or_else(|| no_device(direction, "the audio host has no default device"));
    }
    let devices: Vec<Device> = match direction {
        Direction::Input => host.input_devices().map(|d| d.collect()),
        Direction::Output => host.output_devices().map(|d| d.collect()),
    }
    .map_err(|e| no_device(direction, &format!("cannot list devices: {e}")))?;
    let names: Vec<String> = devices.iter().map(device_name).collect();
    let pick = names
        .iter()
        .position(|n| n == name)
        .or_else(|| {
            let lower = name.to_lowercase();
            names.iter().position(|n| n.to_lowercase().contains(&lower))
        })
        .ok_or_else(|| LiveError::DeviceNotFound {
            direction: direction.word(),
            name: name.to_string(),
            available: names.clone(),
        })?;
    Ok(devices
        .into_iter()
        .nth(pick)
        .expect("index from the same list"))
}

fn no_device(direction: Direction, detail: &str) -> LiveError {
    match direction {
        Direction::Input => LiveError::NoInputDevice {
            detail: detail.to_string(),
        },
        Direction::Output => LiveError::NoOutputDevice {
            detail: detail.to_string(),
        },
    }
}

/// What a node asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Channels.
    pub channels: u16,
}

/// The configuration a device agreed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Channels of the device stream.
    pub channels: u16,
    /// Sample format of the device stream (converted to/from `f32` in the callback).
    pub format: SampleFormat,
}

impl Negotiated {
    /// The stream configuration to build, with the backend's default buffer size.
    pub fn stream_config(&self) -> StreamConfig {
        StreamConfig {
            channels: self.channels,
            sample_rate: self.rate,
            buffer_size: cpal::BufferSize::Default,
        }
    }
}

/// Preference among sample formats; `None` for formats the callbacks do not convert.
fn format_rank(f: SampleFormat) -> Option<u32> {
    Some(match f {
        SampleFormat::F32 => 0,
        SampleFormat::I16 => 1,
        SampleFormat::I32 => 2,
        SampleFormat::F64 => 3,
        SampleFormat::U16 => 4,
        SampleFormat::I8 => 5,
        SampleFormat::U8 => 6,
        _ => return None,
    })
}

/// Picks the supported configuration nearest to `want`: the rate closest to the one asked
/// (clamped into each range), then the channel count (more is better than fewer: it can be
/// mixed down), then the sample format (`f32` first).
pub fn nearest_config(ranges: &[SupportedStreamConfigRange], want: Wanted) -> Option<Negotiated> {
    ranges
        .iter()
        .filter_map(|r| {
            let fmt = format_rank(r.sample_format())?;
            let rate = want.rate.clamp(r.min_sample_rate(), r.max_sample_rate());
            let rate_dist = rate.abs_diff(want.rate);
            let ch = r.channels();
            let ch_penalty = match ch.cmp(&want.channels) {
                std::cmp::Ordering::Equal => 0,
                std::cmp::Ordering::Greater => u32::from(ch - want.channels),
                std::cmp::Ordering::Less => 1000 + u32::from(want.channels - ch),
            };
            let n = Negotiated {
                rate,
                channels: ch,
                format: r.sample_format(),
            };
            Some(((rate_dist, ch_penalty, fmt), n))
        })
        .min_by_key(|(k, _)| *k)
        .map(|(_, n)| n)
}

/// Negotiates a configuration of `device` for `direction` near `want`.
pub fn negotiate(
    device: &Device,
    direction: Direction,
    want: Wanted,
) -> Result<Negotiated, LiveError> {
    let name = device_name(device);
    let ranges: Result<Vec<_>, _> = match direction {
        Direction::Input => device.supported_input_configs().map(|c| c.collect()),
        Direction::Output => device.supported_output_configs().map(|c| c.collect()),
    };
    let ranges = ranges.unwrap_or_default();
    if let Some(n) = nearest_config(&ranges, want) {
        return Ok(n);
    }
    // Some backends list nothing but still have a default configuration.
    let default = match direction {
        Direction::Input => device.default_input_config(),
        Direction::Output => device.default_output_config(),
    }
    .map_err(|e| {
        no_device(
            direction,
            &format!(
                "device `{name}` has no usable {} configuration: {e}",
                direction.word()
            ),
        )
    })?;
    format_rank(default.sample_format())
        .map(|_| Negotiated {
            rate: default.sample_rate(),
            channels: default.channels(),
            format: default.sample_format(),
        })
        .ok_or_else(|| LiveError::Unsupported {
            device: name,
            detail: format!(
                "its default {} sample format {} is not supported",
                direction.word(),
                default.sample_format()
            ),
        })
}

/// Stream errors reported by the backend, recorded without allocation or locks.
#[derive(Debug, Default)]
pub struct StreamErrors {
    count: AtomicUsize,
    last: AtomicUsize,
}

const KINDS: [ErrorKind; 13] = [
    ErrorKind::DeviceBusy,
    ErrorKind::DeviceChanged,
    ErrorKind::DeviceNotAvailable,
    ErrorKind::HostUnavailable,
    ErrorKind::InvalidInput,
    ErrorKind::PermissionDenied,
    ErrorKind::RealtimeDenied,
    ErrorKind::ResourceExhausted,
    ErrorKind::StreamInvalidated,
    ErrorKind::UnsupportedConfig,
    ErrorKind::UnsupportedOperation,
    ErrorKind::Xrun,
    ErrorKind::BackendError,
];

impl StreamErrors {
    /// Records one error (real-time safe: two atomic stores).
    pub fn record(&self, kind: ErrorKind) {
        let i = KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len());
        self.last.store(i + 1, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Errors recorded so far.
    pub fn count(&self) -> usize {
        self.count.load(Relaxed)
    }

    /// The kind of the last error (`Other` for kinds this crate does not know).
    pub fn last(&self) -> Option<ErrorKind> {
        match self.last.load(Relaxed) {
            0 => None,
            i => Some(KINDS.get(i - 1).copied().unwrap_or(ErrorKind::Other)),
        }
    }
}

/// True for errors after which the stream will deliver nothing more.
pub fn is_fatal(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::DeviceNotAvailable | ErrorKind::StreamInvalidated | ErrorKind::HostUnavailable
    )
}

fn stream_error(device: &Device, what: &str, e: cpal::Error) -> LiveError {
    LiveError::Stream {
        device: device_name(device),
        what: what.to_string(),
        source: e,
    }
}

/// Builds (but does not start) a capture stream that copies into `feed`.
pub fn build_capture_stream(
    device: &Device,
    n: Negotiated,
    feed: CaptureFeed,
    errors: Arc<StreamErrors>,
) -> Result<Stream, LiveError> {
    fn build<T>(
        device: &Device,
        config: StreamConfig,
        mut feed: CaptureFeed,
        errors: Arc<StreamErrors>,
    ) -> Result<Stream, cpal::Error>
    where
        T: SizedSample + Copy,
        f32: FromSample<T>,
    {
        device.build_input_stream::<T, _, _>(
            config,
            move |data: &[T], _| feed.push(data, |s: T| s.to_sample::<f32>()),
            move |e| errors.record(e.kind()),
            None,
        )
    }
    let c = n.stream_config();
    let built = match n.format {
        SampleFormat::F32 => build::<f32>(device, c, feed, errors),
        SampleFormat::I16 => build::<i16>(device, c, feed, errors),
        SampleFormat::I32 => build::<i32>(device, c, feed, errors),
        SampleFormat::F64 => build::<f64>(device, c, feed, errors),
        SampleFormat::U16 => build::<u16>(device, c, feed, errors),
        SampleFormat::I8 => build::<i8>(device, c, feed, errors),
        SampleFormat::U8 => build::<u8>(device, c, feed, errors),
        other => {
            return Err(LiveError::Unsupported {
                device: device_name(device),
                detail: format!("sample format {other}"),
            })
        }
    };
    built.map_err(|e| stream_error(device, "cannot open the input stream", e))
}

/// Builds (but does not start) a playback stream that drains `drain`.
pub fn build_playback_stream(
    device: &Device,
    n: Negotiated,
    drain: PlaybackDrain,
    errors: Arc<StreamErrors>,
) -> Result<Stream, LiveError> {
    fn build<T>(
        device: &Device,
        config: StreamConfig,
        mut drain: PlaybackDrain,
        errors: Arc<StreamErrors>,
    ) -> Result<Stream, cpal::Error>
    where
        T: SizedSample + FromSample<f32>,
    {
        device.build_output_stream::<T, _, _>(
            config,
            move |data: &mut [T], _| drain.pull(data, T::EQUILIBRIUM, |s: f32| T::from_sample(s)),
            move |e| errors.record(e.kind()),
            None,
        )
    }
    let c = n.stream_config();
    let built = match n.format {
        SampleFormat::F32 => build::<f32>(device, c, drain, errors),
        SampleFormat::I16 => build::<i16>(device, c, drain, errors),
        SampleFormat::I32 => build::<i32>(device, c, drain, errors),
        SampleFormat::F64 => build::<f64>(device, c, drain, errors),
        SampleFormat::U16 => build::<u16>(device, c, drain, errors),
        SampleFormat::I8 => build::<i8>(device, c, drain, errors),
        SampleFormat::U8 => build::<u8>(device, c, drain, errors),
        other => {
            return Err(LiveError::Unsupported {
                device: device_name(device),
                detail: format!("sample format {other}"),
            })
        }
    };
    built.map_err(|e| stream_error(device, "cannot open the output stream", e))
}

/// Lists the input and output devices of the default host with their supported
/// configurations, for `weir devices`.
pub fn devices_report() -> Result<String, LiveError> {
    devices_report_for(&cpal::default_host())
}

/// Lists the input and output devices of `host` with their supported configurations.
pub fn devices_report_for(host: &Host) -> Result<String, LiveError> {
    let mut s = String::new();
    let _ = writeln!(s, "audio host: {}", host.id().name());
    for direction in [Direction::Input, Direction::Output] {
        let devices: Vec<Device> = match direction {
            Direction::Input => host.input_devices().map(|d| d.collect()),
            Direction::Output => host.output_devices().map(|d| d.collect()),
        }
        .map_err(|source| LiveError::Enumerate { source })?;
        let default = match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        }
        .map(|d| device_name(&d));
        let _ = writeln!(s, "{} devices:", direction.word());
        if devices.is_empty() {
            let _ = writeln!(s, "  (none)");
        }
        for d in &devices {
            describe_device(&mut s, d, direction, default.as_deref());
        }
    }
    Ok(s)
}

fn describe_device(s: &mut String, d: &Device, direction: Direction, default: Option<&str>) {
    let name = device_name(d);
    let mark = if default == Some(name.as_str()) {
        " (default)"
    } else {
        ""
    };
    let _ = writeln!(s, "  {name}{mark}");
    let ranges = match direction {
        Direction::Input => d.supported_input_configs().map(|c| c.collect::<Vec<_>>()),
        Direction::Output => d.supported_output_configs().map(|c| c.collect::<Vec<_>>()),
    };
    match ranges {
        Ok(r) if r.is_empty() => {
            let _ = writeln!(s, "    no supported configurations reported");
        }
        Ok(r) => {
            for line in summarize(&r) {
                let _ = writeln!(s, "    {line}");
            }
        }
        Err(e) => {
            let _ = writeln!(s, "    cannot query configurations: {e}");
        }
    }
}

/// One line per sample format and rate range, channel counts folded into ranges.
fn summarize(ranges: &[SupportedStreamConfigRange]) -> Vec<String> {
    let mut groups: Vec<((String, u32, u32), Vec<u16>)> = Vec::new();
    for c in ranges {
        let key = (
            c.sample_format().to_string(),
            c.min_sample_rate(),
            c.max_sample_rate(),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, chans)) => chans.push(c.channels()),
            None => groups.push((key, vec![c.channels()])),
        }
    }
    groups
        .into_iter()
        .map(|((format, min, max), mut chans)| {
            chans.sort_unstable();
            chans.dedup();
            let rates = if min == max {
                format!("{min} Hz")
            } else {
                format!("{min}-{max} Hz")
            };
            format!("{} ch, {rates}, {format}", fold(&chans))
        })
        .collect()
}

/// `[1, 2, 3, 6]` as `1-3, 6`.
fn fold(values: &[u16]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            values[i].to_string()
        } else {
            format!("{}-{}", values[i], values[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}
