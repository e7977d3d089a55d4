//! `audio.level`: RMS and peak level of each frame in dBFS, as events.
//!
//! ```yaml
//! level:
//!   node: audio.level
//!   in: { audio: mic.audio }
//! ```
//! Emits one `level` event per frame: `{"rms_db": -23.1, "peak_db": -6.0}` (all channels).

use std::sync::Arc;

use weir_engine::{Event, Node, NodeError, NodeKind, Outputs, Packet, Payload, PortSpec, PortType};

/// Level of silence: the floor of the dB scale.
pub const FLOOR_DB: f32 = -120.0;

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::new(
        "audio.level",
        "Measures RMS and peak level (dBFS) of each frame.",
        |_| Ok(Box::new(LevelNode)),
    )
    .input(PortSpec::new("audio", PortType::Audio, "audio to measure"))
    .output(PortSpec::new(
        "level",
        PortType::Event,
        "`level` events with rms_db and peak_db",
    ))
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

struct LevelNode;

impl Node for LevelNode {
    fn process(
        &mut self,
        _port: usize,
        packet: Packet,
        out: &mut Outputs,
    ) -> Result<(), NodeError> {
        let Payload::Audio(frame) = &packet.payload else {
            return Ok(());
        };
        let (rms, peak) = levels(&frame.samples);
        let fields = serde_json::json!({ "rms_db": rms, "peak_db": peak });
        let event = Event {
            name: Arc::from("level"),
            fields: Arc::new(fields),
        };
        out.send(0, Packet::new(packet.timestamp, Payload::Event(event)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scale_square_is_zero_db_and_silence_is_floor() {
        assert_eq!(levels(&[1.0, -1.0, 1.0, -1.0]), (0.0, 0.0));
        assert_eq!(levels(&[0.0; 8]), (FLOOR_DB, FLOOR_DB));
        let (rms, peak) = levels(&[0.5, -0.5]);
        assert!((rms + 6.02).abs() < 0.01 && (peak + 6.02).abs() < 0.01);
    }
}
