//! Virtual audio devices on cpal's `custom` host: hardware swapped out in tests and benches.
//!
//! [`VirtualMic`] plays a buffer of samples through the normal `build_input_stream` path, one
//! callback per block, paced at real time (or as fast as possible) like a sound card's
//! interrupt. It records when each callback started and how long it took, so a test can show
//! that a slow consumer never stalled the callback. [`VirtualSpeaker`] calls an output
//! callback at real time and records what it was given. A [`Room`] feeds what the speaker
//! played back into a microphone (delayed, attenuated, filtered): the echo a kiosk hears. [`VirtualHost`] lists both, for
//! [`crate::devices_report_for`].
//!
//! These threads stand in for hardware: they may allocate and lock; the code under test (the
//! callbacks the nodes hand to cpal) still may not.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::platform::{CustomDevice, CustomHost};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    Data, DeviceDescription, DeviceDescriptionBuilder, DeviceId, Error, ErrorKind,
    InputCallbackInfo, InputStreamTimestamp, OutputCallbackInfo, OutputStreamTimestamp,
    SampleFormat, StreamConfig, StreamInstant, SupportedBufferSize, SupportedStreamConfig,
    SupportedStreamConfigRange,
};

mod room;

pub use room::Room;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// When one virtual-microphone callback ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallbackRecord {
    /// Position (in frames) just after the block delivered.
    pub end_frame: u64,
    /// When the callback was called.
    pub at: Instant,
    /// How long the callback took.
    pub took: Duration,
    /// How late the call was against the real-time schedule.
    pub late: Duration,
}

struct MicState {
    name: String,
    samples: Arc<[f32]>,
    rate: u32,
    channels: u16,
    block_frames: usize,
    realtime: bool,
    finished: AtomicBool,
    log: Mutex<Vec<CallbackRecord>>,
    started: Mutex<Option<Instant>>,
    holds: Mutex<Holds>,
    room: Option<Room>,
}

/// Where the microphone waits (playing silence) until released, and how long it waited.
#[derive(Default)]
struct Holds {
    /// Positions in the samples, in order, not yet passed.
    pending: std::collections::VecDeque<usize>,
    /// Releases asked for and not yet carried out.
    released: usize,
    /// (position in the samples, frames of silence played there) for each passed hold.
    waited: Vec<(usize, u64)>,
}

/// A microphone that plays `samples` (interleaved) once, then stays silent (no callbacks).
#[derive(Clone)]
pub struct VirtualMic(Arc<MicState>);

impl VirtualMic {
    /// A real-time microphone of `rate` Hz and `channels` that plays `samples`, 480-frame
    /// callbacks.
    pub fn new(samples: impl Into<Arc<[f32]>>, rate: u32, channels: u16) -> Self {
        VirtualMic(Arc::new(MicState {
            name: "Weir virtual microphone".into(),
            samples: samples.into(),
            rate: rate.max(1),
            channels: channels.max(1),
            block_frames: 480,
            realtime: true,
            finished: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            started: Mutex::new(None),
            holds: Mutex::default(),
            room: None,
        }))
    }

    fn edit(self, f: impl FnOnce(&mut MicState)) -> Self {
        let mut state = Arc::try_unwrap(self.0).unwrap_or_else(|shared| MicState {
            name: shared.name.clone(),
            samples: shared.samples.clone(),
            rate: shared.rate,
            channels: shared.channels,
            block_frames: shared.block_frames,
            realtime: shared.realtime,
            finished: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            started: Mutex::new(None),
            holds: Mutex::default(),
            room: shared.room.clone(),
        });
        f(&mut state);
        VirtualMic(Arc::new(state))
    }

    /// Frames per callback (the device's period).
    pub fn block_frames(self, frames: usize) -> Self {
        self.edit(|s| s.block_frames = frames.max(1))
    }

    /// Paces callbacks at real time (`true`, the default) or calls them back to back.
    pub fn realtime(self, realtime: bool) -> Self {
        self.edit(|s| s.realtime = realtime)
    }

    /// Makes the microphone stop at these frame positions of its samples and play silence
    /// until [`VirtualMic::release`] is called once per position: a test can start the next
    /// utterance when something has happened (the speaker began an answer).
    pub fn hold_at(self, frames: impl IntoIterator<Item = usize>) -> Self {
        let mut pending: Vec<usize> = frames.into_iter().collect();
        pending.sort_unstable();
        self.edit(|s| {
            s.holds = Mutex::new(Holds {
                pending: pending.into(),
                ..Holds::default()
            })
        })
    }

    /// Lets the microphone go on past its next hold.
    pub fn release(&self) {
        lock(&self.0.holds).released += 1;
    }

    /// The device frame at which frame `frame` of the samples was (or will be) played: the
    /// position plus the silence played at the holds before it, so far.
    pub fn device_frame(&self, frame: usize) -> u64 {
        let holds = lock(&self.0.holds);
        let waited: u64 = holds
            .waited
            .iter()
            .filter(|&&(at, _)| at <= frame)
            .map(|&(_, n)| n)
            .sum();
        frame as u64 + waited
    }

    /// Puts the microphone in `room` with its speaker: what the speaker plays comes back into
    /// the microphone through the room's echo path, mixed with the microphone's samples (and
    /// during its holds). The speaker must play at the microphone's rate; mono.
    pub fn in_room(self, room: Room) -> Self {
        self.edit(|s| s.room = Some(room))
    }

    /// Renames the device.
    pub fn named(self, name: &str) -> Self {
        self.edit(|s| s.name = name.to_string())
    }

    /// The microphone as a cpal device.
    pub fn device(&self) -> cpal::Device {
        cpal::Device::from(CustomDevice::from_device(self.clone()))
    }

    /// True once every sample has been delivered.
    pub fn finished(&self) -> bool {
        self.0.finished.load(Relaxed)
    }

    /// Waits until every sample has been delivered, at most `timeout`; true if it was.
    pub fn wait_finished(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while !self.finished() {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Every callback so far.
    pub fn callbacks(&self) -> Vec<CallbackRecord> {
        lock(&self.0.log).clone()
    }

    /// The samples the microphone plays.
    pub fn samples(&self) -> Arc<[f32]> {
        self.0.samples.clone()
    }

    /// When the stream started: frame `n` of the samples is heard at `started + n / rate`
    /// (its callback runs at that time too, on a real-time microphone). `None` before `play`.
    pub fn started(&self) -> Option<Instant> {
        *lock(&self.0.started)
    }

    fn range(&self) -> SupportedStreamConfigRange {
        SupportedStreamConfigRange::new(
            self.0.channels,
            self.0.rate,
            self.0.rate,
            SupportedBufferSize::Range {
                min: self.0.block_frames as u32,
                max: self.0.block_frames as u32,
            },
            SampleFormat::F32,
        )
    }

    /// The device thread: one callback per block, on schedule.
    fn run<D>(self, mut callback: D, controls: Arc<Controls>)
    where
        D: FnMut(&Data, &InputCallbackInfo) + Send + 'static,
    {
        let s = &self.0;
        let ch = usize::from(s.channels);
        let mut buffer = vec![0.0f32; s.block_frames * ch];
        let Some(start) = controls.wait_for_play() else {
            return;
        };
        *lock(&s.started) = Some(start);
        let mut pos = 0usize;
        let mut device_pos = 0usize;
        let total = s.samples.len() / ch;
        while pos < total && !controls.exit.load(Relaxed) {
            if controls.paused.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let due = start + Duration::from_secs_f64(device_pos as f64 / f64::from(s.rate));
            let now = Instant::now();
            if s.realtime && due > now {
                std::thread::sleep(due - now);
            }
            let (n, held) = s.next_block(pos, total);
            let block = &mut buffer[..n * ch];
            if held {
                block.fill(0.0);
            } else {
                block.copy_from_slice(&s.samples[pos * ch..(pos + n) * ch]);
            }
            if let Some(room) = &s.room {
                room.add_echo(block, ch, device_pos as u64, start);
            }
            let at = Instant::now();
            let stamp = stream_instant(at - controls.start);
            let info = InputCallbackInfo::new(InputStreamTimestamp {
                callback: stamp,
                capture: stamp,
            });
            // SAFETY: `block` is a live, initialised `[f32]` of `n * ch` samples for the whole
            // call, and the format given is `F32`.
            let data =
                unsafe { Data::from_parts(block.as_mut_ptr().cast(), n * ch, SampleFormat::F32) };
            callback(&data, &info);
            device_pos += n;
            if !held {
                pos += n;
            }
            let record = CallbackRecord {
                end_frame: device_pos as u64,
                at,
                took: at.elapsed(),
                late: if s.realtime {
                    at.saturating_duration_since(due)
                } else {
                    Duration::ZERO
                },
            };
            lock(&s.log).push(record);
        }
        s.finished.store(true, Relaxed);
    }
}

impl MicState {
    /// The next block: `(frames, held)`, silence if the samples are held at `pos`; a block
    /// ends at the next hold.
    fn next_block(&self, pos: usize, total: usize) -> (usize, bool) {
        let mut holds = lock(&self.holds);
        if holds.pending.front() == Some(&pos) {
            if holds.released == 0 {
                let block = self.block_frames as u64;
                match holds.waited.last_mut() {
                    Some((at, n)) if *at == pos => *n += block,
                    _ => holds.waited.push((pos, block)),
                }
                return (self.block_frames, true);
            }
            holds.released -= 1;
            holds.pending.pop_front();
        }
        let limit = holds.pending.front().map_or(total, |&h| h.min(total));
        (
            self.block_frames.min(limit - pos).max(1).min(total - pos),
            false,
        )
    }
}

fn stream_instant(d: Duration) -> StreamInstant {
    StreamInstant::new(d.as_secs(), d.subsec_nanos())
}

impl PartialEq for VirtualMic {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for VirtualMic {}

impl Hash for VirtualMic {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl fmt::Debug for VirtualMic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualMic")
            .field("name", &self.0.name)
            .field("rate", &self.0.rate)
            .field("channels", &self.0.channels)
            .finish()
    }
}

impl fmt::Display for VirtualMic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)
    }
}

/// Start, pause and exit flags shared by a virtual stream and its device thread.
struct Controls {
    start: Instant,
    playing: AtomicBool,
    paused: AtomicBool,
    exit: AtomicBool,
}

impl Controls {
    fn new() -> Arc<Self> {
        Arc::new(Controls {
            start: Instant::now(),
            playing: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            exit: AtomicBool::new(false),
        })
    }

    /// Waits for the first `play`; `None` if the stream was dropped first.
    fn wait_for_play(&self) -> Option<Instant> {
        while !self.playing.load(Relaxed) {
            if self.exit.load(Relaxed) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Some(Instant::now())
    }
}

/// A stream of a virtual device: stops and joins its thread when dropped.
pub struct VirtualStream {
    controls: Arc<Controls>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl StreamTrait for VirtualStream {
    fn play(&self) -> Result<(), Error> {
        self.controls.paused.store(false, Relaxed);
        self.controls.playing.store(true, Relaxed);
        Ok(())
    }

    fn pause(&self) -> Result<(), Error> {
        self.controls.paused.store(true, Relaxed);
        Ok(())
    }

    fn now(&self) -> StreamInstant {
        stream_instant(self.controls.start.elapsed())
    }

    fn buffer_size(&self) -> Result<cpal::FrameCount, Error> {
        Err(Error::new(ErrorKind::UnsupportedOperation))
    }
}

impl Drop for VirtualStream {
    fn drop(&mut self) {
        self.controls.exit.store(true, Relaxed);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

fn spawn_stream(name: &str, body: impl FnOnce(Arc<Controls>) + Send + 'static) -> VirtualStream {
    let controls = Controls::new();
    let c = controls.clone();
    let thread = std::thread::Builder::new()
        .name(format!("virtual:{name}"))
        .spawn(move || body(c))
        .ok();
    VirtualStream {
        controls,
        thread: Mutex::new(thread),
    }
}

fn check_config(
    config: &StreamConfig,
    format: SampleFormat,
    rate: u32,
    channels: u16,
) -> Result<(), Error> {
    if format != SampleFormat::F32 || config.sample_rate != rate || config.channels != channels {
        return Err(Error::with_message(
            ErrorKind::UnsupportedConfig,
            format!("the virtual device only does {channels} ch {rate} Hz f32"),
        ));
    }
    Ok(())
}

impl DeviceTrait for VirtualMic {
    type SupportedInputConfigs = std::vec::IntoIter<SupportedStreamConfigRange>;
    type SupportedOutputConfigs = std::vec::IntoIter<SupportedStreamConfigRange>;
    type Stream = VirtualStream;

    fn description(&self) -> Result<DeviceDescription, Error> {
        Ok(DeviceDescriptionBuilder::new(&self.0.name).build())
    }

    fn id(&self) -> Result<DeviceId, Error> {
        Ok(DeviceId::new(cpal::HostId::Custom, &self.0.name))
    }

    fn supported_input_configs(&self) -> Result<Self::SupportedInputConfigs, Error> {
        Ok(vec![self.range()].into_iter())
    }

    fn supported_output_configs(&self) -> Result<Self::SupportedOutputConfigs, Error> {
        Ok(Vec::new().into_iter())
    }

    fn default_input_config(&self) -> Result<SupportedStreamConfig, Error> {
        Ok(self.range().with_max_sample_rate())
    }

    fn default_output_config(&self) -> Result<SupportedStreamConfig, Error> {
        Err(Error::new(ErrorKind::UnsupportedOperation))
    }

    fn build_input_stream_raw<D, E>(
        &self,
        config: StreamConfig,
        sample_format: SampleFormat,
        data_callback: D,
        _error_callback: E,
        _timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&Data, &InputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        check_config(&config, sample_format, self.0.rate, self.0.channels)?;
        let mic = self.clone();
        Ok(spawn_stream(&self.0.name, move |c| {
            mic.run(data_callback, c)
        }))
    }

    fn build_output_stream_raw<D, E>(
        &self,
        _config: StreamConfig,
        _sample_format: SampleFormat,
        _data_callback: D,
        _error_callback: E,
        _timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        Err(Error::new(ErrorKind::UnsupportedOperation))
    }
}

struct SpeakerState {
    name: String,
    rate: u32,
    channels: u16,
    block_frames: usize,
    recorded: Mutex<Vec<f32>>,
    callbacks: AtomicU64,
    started: Mutex<Option<Instant>>,
}

/// A speaker that calls its output callback at real time and keeps everything it was given.
#[derive(Clone)]
pub struct VirtualSpeaker(Arc<SpeakerState>);

impl VirtualSpeaker {
    /// A speaker of `rate` Hz and `channels`, 480-frame callbacks.
    pub fn new(rate: u32, channels: u16) -> Self {
        VirtualSpeaker(Arc::new(SpeakerState {
            name: "Weir virtual speaker".into(),
            rate: rate.max(1),
            channels: channels.max(1),
            block_frames: 480,
            recorded: Mutex::new(Vec::new()),
            callbacks: AtomicU64::new(0),
            started: Mutex::new(None),
        }))
    }

    /// The speaker as a cpal device.
    pub fn device(&self) -> cpal::Device {
        cpal::Device::from(CustomDevice::from_device(self.clone()))
    }

    /// Everything played so far (interleaved), silence included.
    pub fn recorded(&self) -> Vec<f32> {
        lock(&self.0.recorded).clone()
    }

    /// Calls `f` with everything played so far, without copying it.
    pub fn with_recorded<R>(&self, f: impl FnOnce(&[f32]) -> R) -> R {
        f(&lock(&self.0.recorded))
    }

    /// The speaker's sample rate.
    pub fn rate(&self) -> u32 {
        self.0.rate
    }

    /// When the stream started: recorded frame `n` was played at `started + n / rate` (its
    /// callback ran then; the virtual speaker has no latency after it). `None` before `play`.
    pub fn started(&self) -> Option<Instant> {
        *lock(&self.0.started)
    }

    /// Output callbacks so far.
    pub fn callbacks(&self) -> u64 {
        self.0.callbacks.load(Relaxed)
    }

    fn range(&self) -> SupportedStreamConfigRange {
        SupportedStreamConfigRange::new(
            self.0.channels,
            self.0.rate,
            self.0.rate,
            SupportedBufferSize::Range {
                min: self.0.block_frames as u32,
                max: self.0.block_frames as u32,
            },
            SampleFormat::F32,
        )
    }

    fn run<D>(self, mut callback: D, controls: Arc<Controls>)
    where
        D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
    {
        let s = &self.0;
        let len = s.block_frames * usize::from(s.channels);
        let mut buffer = vec![0.0f32; len];
        let Some(start) = controls.wait_for_play() else {
            return;
        };
        *lock(&s.started) = Some(start);
        let mut pos = 0u64;
        while !controls.exit.load(Relaxed) {
            let due = start + Duration::from_secs_f64(pos as f64 / f64::from(s.rate));
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if controls.paused.load(Relaxed) {
                continue;
            }
            buffer.fill(0.0);
            let stamp = stream_instant(controls.start.elapsed());
            let info = OutputCallbackInfo::new(OutputStreamTimestamp {
                callback: stamp,
                playback: stamp,
            });
            // SAFETY: `buffer` is a live, initialised `[f32]` of `len` samples for the whole
            // call, and the format given is `F32`.
            let mut data =
                unsafe { Data::from_parts(buffer.as_mut_ptr().cast(), len, SampleFormat::F32) };
            callback(&mut data, &info);
            s.callbacks.fetch_add(1, Relaxed);
            lock(&s.recorded).extend_from_slice(&buffer);
            pos += s.block_frames as u64;
        }
    }
}

impl PartialEq for VirtualSpeaker {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for VirtualSpeaker {}

impl Hash for VirtualSpeaker {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl fmt::Debug for VirtualSpeaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualSpeaker")
            .field("rate", &self.0.rate)
            .field("channels", &self.0.channels)
            .finish()
    }
}

impl fmt::Display for VirtualSpeaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)
    }
}

impl DeviceTrait for VirtualSpeaker {
    type SupportedInputConfigs = std::vec::IntoIter<SupportedStreamConfigRange>;
    type SupportedOutputConfigs = std::vec::IntoIter<SupportedStreamConfigRange>;
    type Stream = VirtualStream;

    fn description(&self) -> Result<DeviceDescription, Error> {
        Ok(DeviceDescriptionBuilder::new(&self.0.name).build())
    }

    fn id(&self) -> Result<DeviceId, Error> {
        Ok(DeviceId::new(cpal::HostId::Custom, &self.0.name))
    }

    fn supported_input_configs(&self) -> Result<Self::SupportedInputConfigs, Error> {
        Ok(Vec::new().into_iter())
    }

    fn supported_output_configs(&self) -> Result<Self::SupportedOutputConfigs, Error> {
        Ok(vec![self.range()].into_iter())
    }

    fn default_input_config(&self) -> Result<SupportedStreamConfig, Error> {
        Err(Error::new(ErrorKind::UnsupportedOperation))
    }

    fn default_output_config(&self) -> Result<SupportedStreamConfig, Error> {
        Ok(self.range().with_max_sample_rate())
    }

    fn build_input_stream_raw<D, E>(
        &self,
        _config: StreamConfig,
        _sample_format: SampleFormat,
        _data_callback: D,
        _error_callback: E,
        _timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&Data, &InputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        Err(Error::new(ErrorKind::UnsupportedOperation))
    }

    fn build_output_stream_raw<D, E>(
        &self,
        config: StreamConfig,
        sample_format: SampleFormat,
        data_callback: D,
        _error_callback: E,
        _timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        check_config(&config, sample_format, self.0.rate, self.0.channels)?;
        let speaker = self.clone();
        Ok(spawn_stream(&self.0.name, move |c| {
            speaker.run(data_callback, c)
        }))
    }
}

/// A custom host holding at most one virtual microphone and one virtual speaker.
#[derive(Clone, Default)]
pub struct VirtualHost {
    mic: Option<VirtualMic>,
    speaker: Option<VirtualSpeaker>,
}

impl VirtualHost {
    /// A host with these devices (each the default of its direction).
    pub fn new(mic: Option<VirtualMic>, speaker: Option<VirtualSpeaker>) -> Self {
        VirtualHost { mic, speaker }
    }

    /// The host as a cpal host.
    pub fn host(self) -> cpal::Host {
        cpal::Host::from(CustomHost::from_host(self))
    }
}

impl HostTrait for VirtualHost {
    type Devices = std::vec::IntoIter<cpal::Device>;
    type Device = cpal::Device;

    fn is_available() -> bool {
        true
    }

    fn devices(&self) -> Result<Self::Devices, Error> {
        let mut v = Vec::new();
        v.extend(self.mic.as_ref().map(VirtualMic::device));
        v.extend(self.speaker.as_ref().map(VirtualSpeaker::device));
        Ok(v.into_iter())
    }

    fn default_input_device(&self) -> Option<Self::Device> {
        self.mic.as_ref().map(VirtualMic::device)
    }

    fn default_output_device(&self) -> Option<Self::Device> {
        self.speaker.as_ref().map(VirtualSpeaker::device)
    }
}
