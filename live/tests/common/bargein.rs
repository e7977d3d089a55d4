//! Runs `graphs/voice_assistant_live.yaml` on a virtual microphone and speaker, the real
//! models and the real clock, and measures barge-ins on what the speaker played. Shared by
//! the barge-in test and `examples/bench_bargein.rs`.

// Each user (the test, the bench) needs only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use weir_engine::{
    channel_sink, channel_source, Graph, Loader, Packet, Role, RunReport, Timestamp,
};
use weir_live::aec::{self, AecCounters};
use weir_live::ring::PlaybackCounters;
use weir_live::virtual_device::{Room, VirtualMic, VirtualSpeaker};
use weir_live::{capture, playback};
use weir_media::{AudioFrame, Token};
use weir_nodes::audio::resample::{Method, StreamResampler};

/// The devices' rate (the graph's microphone and speaker run at 48 kHz).
pub const RATE: u32 = 48_000;

/// Silence the microphone plays first: it starts when the capture node opens, while the
/// models are still loading (a few seconds), and what it plays meanwhile is lost (counted as
/// ring overruns). Speech starts after this.
pub const LEAD_IN: f64 = 10.0;

/// The repository's root (models and data are found from there).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A recording from `data/` as 48 kHz mono.
pub fn clip(name: &str) -> Vec<f32> {
    let path = root().join("data").join(name);
    let mut reader = hound::WavReader::open(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; fetch the recordings with `bash tools/fetch-data.sh`",
            path.display()
        )
    });
    let spec = reader.spec();
    let scale = 1.0 / f32::from(1u16 << (spec.bits_per_sample.min(16) - 1));
    let raw: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| f32::from(s.expect("16-bit sample")) * scale)
        .collect();
    let ch = usize::from(spec.channels);
    let mono: Vec<f32> = raw
        .chunks_exact(ch)
        .map(|f| f.iter().sum::<f32>() / ch as f32)
        .collect();
    if spec.sample_rate == RATE {
        return mono;
    }
    let mut r = StreamResampler::new(spec.sample_rate, RATE, 1, Method::Fft).expect("resampler");
    let mut out = Vec::new();
    r.push(&mono, &mut out).expect("resample");
    r.finish(&mut out).expect("resample");
    out
}

/// Microphone input built from recordings and silences, with where each recording starts.
#[derive(Default)]
pub struct Script {
    /// 48 kHz mono samples.
    pub samples: Vec<f32>,
    /// (first frame, last frame + 1) of each recording, in order.
    pub speech: Vec<(usize, usize)>,
    /// Where the microphone waits for the speaker (see [`Script::talk_over`]).
    pub holds: Vec<usize>,
}

/// How much of an answer the speaker plays before the user talks over it.
pub const TALK_OVER_AFTER: Duration = Duration::from_millis(700);

impl Script {
    /// Appends `seconds` of silence.
    pub fn silence(&mut self, seconds: f64) -> &mut Self {
        let n = (seconds * f64::from(RATE)) as usize;
        self.samples.extend(std::iter::repeat_n(0.0, n));
        self
    }

    /// Waits (playing silence) until the speaker has played [`TALK_OVER_AFTER`] of sound
    /// since the previous wait, so that what follows is spoken over an answer whatever the
    /// machine's speed.
    pub fn talk_over(&mut self) -> &mut Self {
        self.holds.push(self.samples.len());
        self
    }

    /// Appends a recording.
    pub fn say(&mut self, clip: &[f32]) -> &mut Self {
        let start = self.samples.len();
        self.samples.extend_from_slice(clip);
        self.speech.push((start, self.samples.len()));
        self
    }
}

/// What a run left behind.
pub struct Session {
    /// The microphone (its start time).
    pub mic: VirtualMic,
    /// The speaker (everything it played).
    pub speaker: VirtualSpeaker,
    /// The speaker node's ring counters.
    pub counters: Arc<PlaybackCounters>,
    /// Tokens released by the turn gate (the printed answer).
    pub tokens: Vec<Packet>,
    /// The run's statistics.
    pub report: RunReport,
    /// The echo canceller's counters, if the run had one.
    pub aec: Option<Arc<AecCounters>>,
}

/// The speaker heard by the microphone through a [`Room`], and whether `audio.aec` cleans
/// the microphone before the VAD.
#[derive(Clone, Copy, Debug)]
pub struct Echo {
    /// Echo path delay, ms.
    pub delay_ms: f64,
    /// Direct sound's gain.
    pub gain: f32,
    /// Put `audio.aec` (at 16 kHz) between the microphone's resampler and the VAD.
    pub aec: bool,
}

/// The nodes added for `Echo::aec`: the reference (what the virtual speaker played, stamped
/// on the microphone's clock by [`feed_reference`]) and the canceller, at the devices' 48 kHz
/// straight on the capture's frames, whose positions are the device's sample clock (the
/// resampler renumbers its output from zero, which would lose the clock after an overrun).
const AEC_NODES: &str = r#"
  played:
    node: test.played
  aec:
    node: test.aec
    in: { audio: mic.audio, reference: played.out }
    merge_wait_ms: 0
    queue: { size: 64, overflow: drop_oldest }
"#;

/// Sends what `speaker` played, in 10 ms frames, positioned on `mic`'s sample clock (the
/// speaker's frame `s` sounds at the microphone's frame `s + (speaker start - mic start)`),
/// until `stop`. Stands in for `audio.playback`'s `played` output, which the live graph
/// cannot feed back into the microphone's path (the engine rejects cycles).
fn feed_reference(
    mic: VirtualMic,
    speaker: VirtualSpeaker,
    tx: Sender<Packet>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let block = RATE as usize / 100;
        let mut sent = 0usize;
        while !stop.load(Relaxed) {
            let (Some(m), Some(k)) = (mic.started(), speaker.started()) else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let offset = if k >= m {
                ((k - m).as_secs_f64() * f64::from(RATE)).round() as i64
            } else {
                -(((m - k).as_secs_f64() * f64::from(RATE)).round() as i64)
            };
            let available = speaker.with_recorded(|r| r.len());
            while sent + block <= available {
                let samples: Vec<f32> = speaker.with_recorded(|r| r[sent..sent + block].to_vec());
                let at = sent as i64 + offset;
                sent += block;
                let Ok(at) = u64::try_from(at) else { continue };
                let frame = AudioFrame {
                    rate: RATE,
                    channels: 1,
                    start_sample: at,
                    samples: Arc::from(samples),
                };
                let _ = tx.try_send(Packet::new(Timestamp::from_samples(at, RATE), frame));
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    })
}

/// Runs the live voice assistant graph with `script` on the microphone until it has all
/// been heard, then stops it and lets it drain. `set` overrides options (`node.option=value`).
pub fn run(script: &Script, set: &[String]) -> Session {
    run_with(script, set, None)
}

/// [`run`], with the speaker's echo in the microphone (and `audio.aec`) as `echo` says.
pub fn run_with(script: &Script, set: &[String], echo: Option<Echo>) -> Session {
    let root = root();
    let graph = root.join("graphs/voice_assistant_live.yaml");
    let mut yaml = std::fs::read_to_string(&graph)
        .expect("the live graph")
        .replace("node: audio.capture", "node: test.mic")
        .replace("node: audio.playback", "node: test.speaker")
        .replace("node: text.print", "node: test.tokens");
    let with_aec = echo.is_some_and(|e| e.aec);
    if with_aec {
        let mic_input = "    in: { audio: mic.audio }\n    with: { rate: 16000 }";
        assert!(
            yaml.contains(mic_input),
            "the live graph resamples the microphone"
        );
        yaml = yaml.replace(
            mic_input,
            "    in: { audio: aec.audio }\n    with: { rate: 16000 }",
        );
        yaml.push_str(AEC_NODES);
    }
    let speaker = VirtualSpeaker::new(RATE, 1);
    let mut mic = VirtualMic::new(script.samples.clone(), RATE, 1).hold_at(script.holds.clone());
    if let Some(e) = echo {
        mic = mic.in_room(Room::new(&speaker, e.delay_ms, e.gain));
    }
    let mut registry = weir_nodes::registry().expect("built-in kinds");
    weir_ml::register(&mut registry).expect("ml kinds");
    let (mic_kind, _) = capture::kind_with_device("test.mic", mic.device());
    registry
        .register(mic_kind.role(Role::Live))
        .expect("new kind");
    let (speaker_kind, counters) = playback::kind_with_device("test.speaker", speaker.device());
    registry
        .register(speaker_kind.role(Role::LiveOutput))
        .expect("new kind");
    let (sink, tokens) = channel_sink("test.tokens", <Token as weir_engine::Payload>::PORT, 65_536);
    registry.register(sink).expect("new kind");
    let (aec_kind, aec_counters) = aec::kind_with_counters("test.aec");
    registry.register(aec_kind).expect("new kind");
    let (played_kind, played_tx) = channel_source(
        "test.played",
        <AudioFrame as weir_engine::Payload>::PORT,
        1024,
    );
    registry.register(played_kind).expect("new kind");
    // The graph names its models relative to the repository.
    std::env::set_current_dir(&root).expect("cd to the repository");
    let overrides = set
        .iter()
        .map(|s| s.parse::<weir_engine::Override>())
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = Loader::new(&registry)
        .overrides(overrides)
        .load_str(Path::new("voice_assistant_live.yaml"), &yaml)
        .unwrap_or_else(|e| panic!("{e}"));
    let running = Graph::build(plan, &registry)
        .expect("graph builds")
        .start()
        .expect("graph starts");
    drop(registry);
    let stop_reference = Arc::new(AtomicBool::new(false));
    let reference = with_aec.then(|| {
        feed_reference(
            mic.clone(),
            speaker.clone(),
            played_tx.clone(),
            stop_reference.clone(),
        )
    });
    drop(played_tx);
    let mut heard = 0;
    for _ in &script.holds {
        let until = Instant::now() + Duration::from_secs(120);
        let need = (TALK_OVER_AFTER.as_secs_f64() * f64::from(RATE)) as usize;
        loop {
            let played = speaker.recorded();
            let sound = played[heard.min(played.len())..]
                .iter()
                .filter(|&&x| x != 0.0)
                .count();
            if sound >= need || Instant::now() > until {
                heard = played.len();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        mic.release();
    }
    let seconds = script.samples.len() as f64 / f64::from(RATE) + 120.0;
    assert!(
        mic.wait_finished(Duration::from_secs_f64(seconds * 2.0 + 60.0)),
        "the virtual microphone did not finish"
    );
    stop_reference.store(true, Relaxed);
    if let Some(t) = reference {
        t.join().expect("reference thread");
    }
    running.stop_handle().stop();
    let report = running.wait().expect("graph runs");
    Session {
        mic,
        speaker,
        counters,
        tokens: tokens.try_iter().collect(),
        report,
        aec: with_aec.then_some(aec_counters),
    }
}

/// One interruption seen on the speaker.
#[derive(Clone, Copy, Debug)]
pub struct Cut {
    /// The speaker was playing (a non-silent sample in the 50 ms before the interrupting
    /// speech began).
    pub was_playing: bool,
    /// From the first sample of the interrupting speech to the end of the last non-silent
    /// sample the speaker played before a silence of at least 300 ms.
    pub to_silence: Duration,
}

impl Session {
    /// The speaker's frame that played when microphone frame `frame` was heard.
    fn speaker_frame(&self, frame: usize) -> usize {
        let mic = self.mic.started().expect("the microphone started");
        let spk = self.speaker.started().expect("the speaker started");
        let device = self.mic.device_frame(frame);
        let at: Instant = mic + Duration::from_secs_f64(device as f64 / f64::from(RATE));
        let since = at.saturating_duration_since(spk).as_secs_f64();
        (since * f64::from(RATE)).round() as usize
    }

    /// What happened on the speaker when speech began at microphone frame `onset`.
    pub fn cut_at(&self, onset: usize, played: &[f32]) -> Cut {
        let k0 = self.speaker_frame(onset).min(played.len());
        let before = k0.saturating_sub(RATE as usize / 20);
        let was_playing = played[before..k0].iter().any(|&s| s != 0.0);
        let quiet = RATE as usize * 3 / 10;
        let mut end = k0;
        let mut i = k0;
        while i < played.len() {
            if played[i] != 0.0 {
                end = i + 1;
            } else if i >= end + quiet {
                break;
            }
            i += 1;
        }
        Cut {
            was_playing,
            to_silence: Duration::from_secs_f64((end - k0) as f64 / f64::from(RATE)),
        }
    }

    /// Speaker frames played with sound from microphone frame `from` on.
    pub fn sound_after(&self, from: usize, played: &[f32]) -> usize {
        let k = self.speaker_frame(from).min(played.len());
        played[k..].iter().filter(|&&s| s != 0.0).count()
    }
}
