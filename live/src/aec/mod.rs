//! `audio.aec`: acoustic echo cancellation (WebRTC AEC3 through the pure-Rust crate `aec3`).
//!
//! ```yaml
//! aec:
//!   node: audio.aec
//!   in: { audio: mic.audio, reference: played.audio }
//!   with: { max_wait_ms: 40, max_reference_ms: 1000 }
//!   merge_wait_ms: 0
//! ```
//! Inputs: `audio`, the microphone (mono), and `reference`, what the speaker played (any
//! channels, mixed to mono), at the same rate: 16000, 32000 or 48000 Hz (an error says to
//! put `audio.resample` in front otherwise). Output: `audio`, the microphone with the echo
//! removed, with the input's sample positions, in 10 ms blocks.
//!
//! Both inputs' positions must be on one clock: the reference sample at position `p` was
//! heard by the microphone at its position `p` plus the echo path's delay (AEC3 finds that
//! delay itself, up to about half a second). Take them straight from the devices (capture
//! frames and playback's `played` are stamped from the device sample clocks, holes
//! included): `audio.resample` numbers its output from zero and would lose the clock after
//! a capture overrun. Options: `max_wait_ms` (microphone audio held
//! while its reference has not arrived; past that the microphone goes on, so it is never
//! stalled by the reference), `max_reference_ms` (reference buffered ahead of the
//! microphone; older samples are dropped beyond it). A block with no reference at all is
//! passed through unchanged and counted; late and dropped reference is counted too
//! ([`AecCounters`], and a log line at close). Details in [`align`].

pub mod align;
pub mod canceller;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde::Deserialize;
use weir_engine::{
    Config, Context, Incoming, Input, NodeError, NodeKind, OptionSpec, OptionType, Output, Ports,
    Processor,
};
use weir_media::AudioFrame;

use align::{AlignStats, Aligner};
use canceller::{Canceller, RATES};

/// The ports of `audio.aec`.
#[derive(Clone, Copy, Debug)]
pub struct AecPorts {
    audio: Input<AudioFrame>,
    reference: Input<AudioFrame>,
    output: Output<AudioFrame>,
}

fn ports(p: &mut Ports) -> AecPorts {
    AecPorts {
        audio: p.input("audio", "microphone audio (mono, 16/32/48 kHz)"),
        reference: p.optional_input(
            "reference",
            "what the speaker played, on the microphone's clock, at its rate",
        ),
        output: p.output("audio", "the microphone with the echo removed"),
    }
}

/// The `audio.aec` kind.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "audio.aec",
        "Removes the speaker's echo from the microphone (WebRTC AEC3, crate aec3).",
        ports,
        |c: AecConfig, ports| Ok(AecNode::new(c).with_ports(ports)),
    )
}

/// An `audio.aec` kind called `name` whose node shares `counters` with the caller (tests).
pub fn kind_with_counters(name: &'static str) -> (NodeKind, Arc<AecCounters>) {
    let counters = Arc::new(AecCounters::default());
    let shared = counters.clone();
    let kind = NodeKind::processor(
        name,
        "Echo cancellation with shared counters.",
        ports,
        move |c: AecConfig, ports| {
            let mut node = AecNode::new(c).with_ports(ports);
            node.counters = shared.clone();
            Ok(node)
        },
    );
    (kind, counters)
}

/// Settings of [`AecNode`]: the options of `audio.aec`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AecConfig {
    /// Microphone audio held waiting for its reference, in ms.
    pub max_wait_ms: f64,
    /// Reference buffered ahead of the microphone, in ms.
    pub max_reference_ms: f64,
}

impl Config for AecConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default(
                "max_wait_ms",
                OptionType::Float,
                40.0,
                "microphone audio held while its reference has not arrived, in ms",
            )
            .range(0.0, 1000.0),
            OptionSpec::with_default(
                "max_reference_ms",
                OptionType::Float,
                1000.0,
                "reference buffered ahead of the microphone, in ms",
            )
            .range(50.0, 10_000.0),
        ]
    }
}

impl Default for AecConfig {
    fn default() -> Self {
        AecConfig {
            max_wait_ms: 40.0,
            max_reference_ms: 1000.0,
        }
    }
}

/// What `audio.aec` counted, readable from any thread.
#[derive(Debug, Default)]
pub struct AecCounters {
    /// 10 ms blocks processed.
    pub blocks: AtomicU64,
    /// Blocks passed through unchanged: no reference covered their time.
    pub missing_blocks: AtomicU64,
    /// Reference samples that came after their time was used (dropped).
    pub late_samples: AtomicU64,
    /// Reference samples dropped because too much was buffered ahead of the microphone.
    pub dropped_samples: AtomicU64,
}

impl AecCounters {
    fn publish(&self, s: AlignStats) {
        self.blocks.store(s.blocks, Relaxed);
        self.missing_blocks.store(s.missing_blocks, Relaxed);
        self.late_samples.store(s.late_samples, Relaxed);
        self.dropped_samples.store(s.dropped_samples, Relaxed);
    }
}

/// Made at the first packet, when the rate is known.
struct State {
    rate: u32,
    canceller: Canceller,
    aligner: Aligner,
    mic: Vec<f32>,
    clean: Vec<f32>,
}

/// Node adapter around [`Aligner`] and [`Canceller`].
pub struct AecNode {
    config: AecConfig,
    ports: AecPorts,
    state: Option<State>,
    mono: Vec<f32>,
    counters: Arc<AecCounters>,
}

impl AecNode {
    /// A node with `config`.
    pub fn new(config: AecConfig) -> Self {
        AecNode {
            config,
            ports: ports(&mut Ports::default()),
            state: None,
            mono: Vec::new(),
            counters: Arc::default(),
        }
    }

    fn with_ports(mut self, ports: AecPorts) -> Self {
        self.ports = ports;
        self
    }

    /// The node's counters.
    pub fn counters(&self) -> Arc<AecCounters> {
        self.counters.clone()
    }

    /// The state at `rate`, made by the first packet of either input.
    fn state_for(&mut self, rate: u32) -> Result<&mut State, NodeError> {
        if !RATES.contains(&rate) {
            return Err(NodeError::new(format!(
                "audio at {rate} Hz: echo cancellation runs at 16000, 32000 or 48000 Hz; put \
                 `audio.resample` (e.g. `rate: 16000`) in front of `audio` and `reference`"
            )));
        }
        if self.state.is_none() {
            let canceller = Canceller::new(rate).map_err(|e| NodeError::new(e.to_string()))?;
            let block = canceller.block_len();
            let ms = |v: f64| (v / 1000.0 * f64::from(rate)) as usize;
            self.state = Some(State {
                rate,
                aligner: Aligner::new(
                    block,
                    ms(self.config.max_wait_ms),
                    ms(self.config.max_reference_ms),
                ),
                canceller,
                mic: vec![0.0; block],
                clean: vec![0.0; block],
            });
        }
        self.state
            .as_mut()
            .ok_or_else(|| NodeError::new("echo canceller missing"))
    }

    /// Processes every due block and sends the cleaned audio.
    fn drain(&mut self, closing: bool, ctx: &mut Context) -> Result<(), NodeError> {
        let Some(st) = self.state.as_mut() else {
            return Ok(());
        };
        let mut out: Vec<f32> = Vec::new();
        let mut start = None;
        loop {
            let canceller = &mut st.canceller;
            let mut failed = None;
            let ready = st.aligner.next(closing, &mut st.mic, |r| {
                if let Err(e) = canceller.render(r) {
                    failed = Some(e);
                }
            });
            if let Some(e) = failed {
                return Err(NodeError::new(e.to_string()));
            }
            let Some(ready) = ready else { break };
            st.canceller
                .process(&st.mic, &mut st.clean)
                .map_err(|e| NodeError::new(e.to_string()))?;
            let block = if ready.covered { &st.clean } else { &st.mic };
            start.get_or_insert(ready.start);
            out.extend_from_slice(&block[..ready.frames]);
            if ready.frames < block.len() {
                break;
            }
        }
        self.counters.publish(st.aligner.stats());
        let Some(start) = start else { return Ok(()) };
        let frame = AudioFrame {
            rate: st.rate,
            channels: 1,
            start_sample: start,
            samples: Arc::from(out),
        };
        ctx.send(self.ports.output, frame.timestamp(), frame)
    }
}

fn rate_mismatch(reference: u32, mic: u32) -> NodeError {
    NodeError::new(format!(
        "reference audio at {reference} Hz but the microphone at {mic} Hz: put \
         `audio.resample` with `rate: {mic}` in front of `reference`"
    ))
}

impl Processor for AecNode {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(frame) = self.ports.audio.get(&input) {
            if frame.channels != 1 {
                return Err(NodeError::new(format!(
                    "microphone audio with {} channels: echo cancellation takes mono; capture \
                     with `channels: 1`",
                    frame.channels
                )));
            }
            let st = self.state_for(frame.rate)?;
            if st.rate != frame.rate {
                return Err(rate_mismatch(st.rate, frame.rate));
            }
            if st.aligner.breaks_mic(frame.start_sample) {
                self.drain(true, ctx)?;
            }
            if let Some(st) = self.state.as_mut() {
                st.aligner.push_mic(frame.start_sample, &frame.samples);
            }
            return self.drain(false, ctx);
        }
        let frame = self.ports.reference.expect(&input)?;
        let ch = usize::from(frame.channels.max(1));
        self.mono.clear();
        self.mono.extend(
            frame
                .samples
                .chunks_exact(ch)
                .map(|f| f.iter().sum::<f32>() / ch as f32),
        );
        let mono = std::mem::take(&mut self.mono);
        let st = self.state_for(frame.rate)?;
        if st.rate != frame.rate {
            return Err(rate_mismatch(frame.rate, st.rate));
        }
        st.aligner.push_reference(frame.start_sample, &mono);
        self.mono = mono;
        self.drain(false, ctx)
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        self.drain(true, ctx)?;
        if let Some(st) = &self.state {
            let s = st.aligner.stats();
            tracing::info!(
                blocks = s.blocks,
                missing_blocks = s.missing_blocks,
                late_samples = s.late_samples,
                dropped_samples = s.dropped_samples,
                gap_samples = s.gap_samples,
                "aec: closed"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_engine::testing::NodeRunner;
    use weir_engine::Packet;

    const RATE: u32 = 16_000;

    /// `samples` cut into 20 ms frames from position `start`.
    fn frames(samples: &[f32], start: u64, rate: u32) -> Vec<Packet> {
        samples
            .chunks(rate as usize / 50)
            .enumerate()
            .map(|(i, c)| {
                let f = AudioFrame {
                    rate,
                    channels: 1,
                    start_sample: start + (i * rate as usize / 50) as u64,
                    samples: Arc::from(c),
                };
                Packet::new(f.timestamp(), f)
            })
            .collect()
    }

    fn output(out: &weir_engine::testing::RunOutput) -> Vec<f32> {
        let mut v = Vec::new();
        let mut next = 0;
        for f in out.values::<AudioFrame>("audio") {
            assert_eq!(f.start_sample, next, "contiguous positions");
            next += f.frames() as u64;
            v.extend_from_slice(&f.samples);
        }
        v
    }

    fn energy(x: &[f32]) -> f64 {
        x.iter().map(|&s| f64::from(s) * f64::from(s)).sum()
    }

    /// Far-end speech and its echo (30 ms later, at half amplitude).
    fn far_and_echo() -> (Vec<f32>, Vec<f32>) {
        let far = canceller::voice(RATE as usize * 5, RATE, 3);
        let d = 480;
        let echo = (0..far.len())
            .map(|i| if i >= d { 0.5 * far[i - d] } else { 0.0 })
            .collect();
        (far, echo)
    }

    #[test]
    fn node_removes_the_echo_of_its_reference() {
        let (far, echo) = far_and_echo();
        let (kind, counters) = kind_with_counters("test.aec");
        let out = NodeRunner::new(kind)
            .option("max_wait_ms", 40.0)
            .feed("audio", frames(&echo, 0, RATE))
            .feed("reference", frames(&far, 0, RATE))
            .run()
            .expect("aec runs");
        let clean = output(&out);
        assert_eq!(clean.len(), echo.len(), "every microphone sample comes out");
        let tail = echo.len() - 2 * RATE as usize;
        let erle = 10.0 * (energy(&echo[tail..]) / energy(&clean[tail..]).max(1e-12)).log10();
        assert!(erle > 10.0, "echo reduced by only {erle:.1} dB");
        assert_eq!(counters.missing_blocks.load(Relaxed), 0);
        assert_eq!(counters.blocks.load(Relaxed), 500);
    }

    #[test]
    fn without_a_reference_the_microphone_passes_through_and_is_counted() {
        let (_, echo) = far_and_echo();
        let (kind, counters) = kind_with_counters("test.aec");
        let out = NodeRunner::new(kind)
            .feed("audio", frames(&echo, 0, RATE))
            .run()
            .expect("aec runs");
        assert_eq!(output(&out), echo, "unchanged");
        assert_eq!(counters.missing_blocks.load(Relaxed), 500);
    }

    #[test]
    fn a_reference_at_another_rate_asks_for_a_resampler() {
        let (far, echo) = far_and_echo();
        let err = NodeRunner::new(kind())
            .feed("audio", frames(&echo, 0, RATE))
            .feed("reference", frames(&far, 0, 48_000))
            .run()
            .expect_err("48 kHz reference with a 16 kHz microphone");
        let msg = err.to_string();
        assert!(
            msg.contains("audio.resample") && msg.contains("16000"),
            "{msg}"
        );
    }
}
