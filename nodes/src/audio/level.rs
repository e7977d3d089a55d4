//! `audio.level`: RMS and peak level of each frame in dBFS, as events.
//!
//! ```yaml
//! level:
//!   node: audio.level
//!   in: { audio: mic.audio }
//! ```
//! Emits one `level` event per frame: `{"rms_db": -23.1, "peak_db": -6.0}` (all channels).

use weir_engine::{
    Context, Incoming, Input, NoConfig, NodeError, NodeKind, Output, Ports, Processor,
};
use weir_media::{AudioFrame, Event};

/// Level of silence: the floor of the dB scale.
pub const FLOOR_DB: f32 = -120.0;

/// The ports of `audio.level`.
pub struct LevelPorts {
    audio: Input<AudioFrame>,
    level: Output<Event>,
}

fn ports(p: &mut Ports) -> LevelPorts {
    LevelPorts {
        audio: p.input("audio", "audio to measure"),
        level: p.output("level", "`level` events with rms_db and peak_db"),
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "audio.level",
        "Measures RMS and peak level (dBFS) of each frame.",
        ports,
        |_: NoConfig, ports| Ok(LevelNode { ports }),
    )
}

/// RMS and peak of `samples` in dBFS (floored at [`FLOOR_DB`]).
pub fn levels(samples: &[f32]) -> (f32, f32) {
    if samples.is_empty() {
        return (FLOOR_DB, FLOOR_DB);
    }
    let mut sum = 0.0f64;
    let mut peak = 0.0f32;
    for &s in samples {
        sum += f64::from(s) * f64::from(s);
        peak = peak.max(s.abs());
    }
    let rms = (sum / samples.len() as f64).sqrt() as f32;
    (to_db(rms), to_db(peak))
}

/// Amplitude to dBFS, floored at [`FLOOR_DB`].
pub fn to_db(amplitude: f32) -> f32 {
    if amplitude <= 0.0 {
        FLOOR_DB
    } else {
        (20.0 * amplitude.log10()).max(FLOOR_DB)
    }
}

struct LevelNode {
    ports: LevelPorts,
}

impl Processor for LevelNode {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let frame = self.ports.audio.expect(&input)?;
        let (rms, peak) = levels(&frame.samples);
        let fields = serde_json::json!({ "rms_db": rms, "peak_db": peak });
        ctx.send(
            self.ports.level,
            input.timestamp(),
            Event::new("level", fields),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use weir_engine::testing::NodeRunner;
    use weir_engine::{Packet, Timestamp};

    #[test]
    fn full_scale_square_is_zero_db_and_silence_is_floor() {
        assert_eq!(levels(&[1.0, -1.0, 1.0, -1.0]), (0.0, 0.0));
        assert_eq!(levels(&[0.0; 8]), (FLOOR_DB, FLOOR_DB));
        let (rms, peak) = levels(&[0.5, -0.5]);
        assert!((rms + 6.02).abs() < 0.01 && (peak + 6.02).abs() < 0.01);
    }

    #[test]
    fn node_sends_one_level_event_per_frame() {
        let frame = |start: u64, v: f32| AudioFrame {
            rate: 100,
            channels: 1,
            start_sample: start,
            samples: Arc::from(vec![v; 10]),
        };
        let frames = [frame(0, 1.0), frame(10, 0.0)];
        let out = NodeRunner::new(kind())
            .unpaced()
            .feed("audio", frames.map(|f| Packet::new(f.timestamp(), f)))
            .run()
            .unwrap();
        let events = out.values::<Event>("level");
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| &*e.name == "level"));
        assert_eq!(events[0].fields["rms_db"], 0.0);
        assert_eq!(events[1].fields["peak_db"], f64::from(FLOOR_DB));
        let times: Vec<Timestamp> = out.packets("level").iter().map(|p| p.timestamp).collect();
        assert_eq!(times, [Timestamp::ZERO, Timestamp::from_nanos(100_000_000)]);
    }
}
