//! [`Room`]: the acoustic path from a virtual speaker back into a virtual microphone.
//!
//! What the speaker played reaches the microphone `delay` later, attenuated by `gain` and
//! coloured by a short fixed impulse response: a one-pole low-pass (the loudspeaker and the
//! distance take the highs) for the direct sound and two weaker, later copies of it (wall
//! reflections). Nothing is random: the same playback gives the same echo, sample for sample.
//! The speaker's frame `s` is heard at microphone frame `s + delay` on the shared wall clock
//! (both devices run at real time from their start instants).

use std::sync::Arc;
use std::time::Instant;

use super::VirtualSpeaker;

/// Taps of the low-pass part of each copy.
const LOWPASS_TAPS: usize = 48;

/// An echo path from a speaker to a microphone; clone it to share.
#[derive(Clone)]
pub struct Room(Arc<RoomState>);

struct RoomState {
    speaker: VirtualSpeaker,
    /// `(lag in frames, gain)`, sorted by lag; lags include the delay.
    taps: Vec<(usize, f32)>,
    delay: usize,
    gain: f32,
}

impl Room {
    /// A room where `speaker`'s sound comes back `delay_ms` later at `gain` (0 to 1, e.g.
    /// 0.3 for -10 dB). The speaker's rate is the room's.
    pub fn new(speaker: &VirtualSpeaker, delay_ms: f64, gain: f32) -> Self {
        let rate = f64::from(speaker.rate());
        let delay = (delay_ms.max(0.0) / 1000.0 * rate).round() as usize;
        let ms = |v: f64| (v / 1000.0 * rate).round() as usize;
        // One-pole low-pass, pole 0.6 (about 4 kHz at 48 kHz), unit gain at DC.
        let pole = 0.6f32;
        let lowpass: Vec<f32> = (0..LOWPASS_TAPS)
            .map(|j| (1.0 - pole) * pole.powi(j as i32))
            .collect();
        let mut taps = Vec::with_capacity(3 * LOWPASS_TAPS);
        for (at, weight) in [(0, 1.0f32), (ms(7.0), 0.45), (ms(17.0), 0.2)] {
            taps.extend(
                lowpass
                    .iter()
                    .enumerate()
                    .map(|(j, &h)| (delay + at + j, gain * weight * h)),
            );
        }
        taps.sort_by_key(|t| t.0);
        Room(Arc::new(RoomState {
            speaker: speaker.clone(),
            taps,
            delay,
            gain: gain.clamp(0.0, 1.0),
        }))
    }

    /// The echo's delay in frames.
    pub fn delay_frames(&self) -> usize {
        self.0.delay
    }

    /// The direct sound's gain.
    pub fn gain(&self) -> f32 {
        self.0.gain
    }

    /// The echo of `played` (mono, the speaker's frames from its start) over microphone
    /// frames `[from, from + out.len())`, where microphone frame 0 is speaker frame
    /// `offset` (negative if the microphone started first); added to `out`.
    pub fn echo_into(&self, played: &[f32], offset: i64, from: u64, out: &mut [f32]) {
        for (i, o) in out.iter_mut().enumerate() {
            let at = from as i64 + i as i64 + offset;
            let mut acc = 0.0f32;
            for &(lag, h) in &self.0.taps {
                let s = at - lag as i64;
                if s < 0 {
                    break;
                }
                if let Some(&x) = played.get(s as usize) {
                    acc += h * x;
                }
            }
            *o += acc;
        }
    }

    /// Adds the echo to one microphone callback's interleaved block starting at device frame
    /// `from` of a microphone that started at `mic_start` (every channel hears the same).
    pub(super) fn add_echo(
        &self,
        block: &mut [f32],
        channels: usize,
        from: u64,
        mic_start: Instant,
    ) {
        let Some(spk_start) = self.0.speaker.started() else {
            return;
        };
        let rate = f64::from(self.0.speaker.rate());
        let offset = if mic_start >= spk_start {
            ((mic_start - spk_start).as_secs_f64() * rate).round() as i64
        } else {
            -(((spk_start - mic_start).as_secs_f64() * rate).round() as i64)
        };
        let frames = block.len() / channels.max(1);
        let mut echo = vec![0.0f32; frames];
        self.0
            .speaker
            .with_recorded(|played| self.echo_into(played, offset, from, &mut echo));
        for (f, e) in block.chunks_exact_mut(channels.max(1)).zip(echo) {
            for s in f {
                *s += e;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_is_delayed_attenuated_and_deterministic() {
        let speaker = VirtualSpeaker::new(48_000, 1);
        let room = Room::new(&speaker, 40.0, 0.5);
        assert_eq!(room.delay_frames(), 1920);
        let mut played = vec![0.0f32; 4800];
        played[100] = 1.0;
        let mut out = vec![0.0f32; 4800];
        room.echo_into(&played, 0, 0, &mut out);
        assert!(
            out[..2020].iter().all(|&x| x == 0.0),
            "nothing before the delay"
        );
        let peak = out.iter().cloned().fold(0.0f32, f32::max);
        assert!(
            (peak - 0.5 * 0.4).abs() < 1e-6,
            "direct sound, low-passed: {peak}"
        );
        let total: f32 = out.iter().sum();
        assert!(
            (total - 0.5 * 1.65).abs() < 1e-3,
            "direct + reflections: {total}"
        );
        let mut again = vec![0.0f32; 4800];
        room.echo_into(&played, 0, 0, &mut again);
        assert_eq!(out, again);
        // Shifted clocks: microphone frame 0 is speaker frame 1000.
        let mut shifted = vec![0.0f32; 3800];
        room.echo_into(&played, 1000, 0, &mut shifted);
        assert_eq!(&shifted[..], &out[1000..]);
    }
}
