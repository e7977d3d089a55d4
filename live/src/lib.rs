//! # weir-live: live audio devices
//!
//! cpal capture and playback nodes whose audio callbacks only copy into lock-free buffers.
//!
//! ## Layers
//! - [`ring`]: the real-time hand-off, with no cpal in it: the callback side copies into a
//!   preallocated SPSC ring (`ringbuf`) and counts what did not fit; the node side cuts the
//!   ring into frames stamped from the device's sample count. Testable on its own.
//! - [`device`]: cpal glue: device lookup, nearest-configuration negotiation, stream
//!   building for every sample format, [`devices_report`].
//! - [`capture`] (`audio.capture`) and [`playback`] (`audio.playback`): thin nodes.
//! - [`denoise`] (`audio.denoise`): RNNoise noise suppression (pure DSP, no device).
//! - [`aec`] (`audio.aec`): echo cancellation (WebRTC AEC3 via the pure-Rust `aec3` crate):
//!   the microphone minus what the speaker played.
//! - [`virtual_device`]: a cpal custom-host microphone that plays a buffer at real time
//!   through the normal `build_input_stream` path, and a speaker that records; tests and
//!   benches run the real nodes on them without a sound card.
//!
//! ## Real-time rule
//! Nothing in a cpal data callback allocates, locks, logs or blocks. Losses (capture
//! overruns, playback underruns, backend errors) are counted with atomics in the callback and
//! reported from the node's thread: in the log, as events, and in a summary at close.
//!
//! ## Example: the capture node on a virtual microphone
//! ```
//! use weir_live::capture::{CaptureConfig, CaptureNode};
//! use weir_live::virtual_device::VirtualMic;
//!
//! let samples: Vec<f32> = (0..4800).map(|i| (i as f32 * 0.01).sin()).collect();
//! let mic = VirtualMic::new(samples, 48_000, 1);
//! let node = CaptureNode::with_device(CaptureConfig::default(), mic.device());
//! assert!(node.negotiated().is_none()); // the stream opens with the node, on its thread
//! ```
//!
//! ## Example: registering the kinds
//! ```
//! let mut registry = weir_engine::Registry::new();
//! weir_live::register(&mut registry).unwrap();
//! let capture = registry.get("audio.capture").unwrap();
//! assert_eq!(capture.role, weir_engine::Role::Live);
//! ```

pub mod aec;
pub mod capture;
pub mod denoise;
pub mod device;
pub mod playback;
pub mod ring;
pub mod virtual_device;

pub use device::{devices_report, devices_report_for};

use weir_engine::{DuplicateKind, Registry};

/// Registers the live audio node kinds: `audio.capture`, `audio.playback`, `audio.denoise`,
/// `audio.aec`.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register(capture::kind())?;
    registry.register(playback::kind())?;
    registry.register(denoise::kind())?;
    registry.register(aec::kind())
}

/// Why a live audio device could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// No microphone can be opened.
    #[error(
        "no audio input device is available ({detail}); {}",
        device::REPLAY_HINT
    )]
    NoInputDevice {
        /// What the audio backend said.
        detail: String,
    },
    /// No speaker can be opened.
    #[error(
        "no audio output device is available ({detail}); write audio to a file with \
         `audio.wav_writer` instead"
    )]
    NoOutputDevice {
        /// What the audio backend said.
        detail: String,
    },
    /// A device was asked for by a name no device has.
    #[error(
        "no {direction} device is called `{name}`; available: {}",
        if available.is_empty() { "none".to_string() } else { available.join(", ") }
    )]
    DeviceNotFound {
        /// `input` or `output`.
        direction: &'static str,
        /// The name asked for.
        name: String,
        /// Names of the devices there are.
        available: Vec<String>,
    },
    /// The device offers nothing this crate can convert.
    #[error("device `{device}`: unsupported configuration: {detail}")]
    Unsupported {
        /// Device name.
        device: String,
        /// What is unsupported.
        detail: String,
    },
    /// The backend refused to build or start a stream.
    #[error("device `{device}`: {what}: {source}")]
    Stream {
        /// Device name.
        device: String,
        /// What was being done.
        what: String,
        /// The backend's error.
        source: cpal::Error,
    },
    /// The devices could not be listed.
    #[error("cannot list audio devices: {source}")]
    Enumerate {
        /// The backend's error.
        source: cpal::Error,
    },
}
