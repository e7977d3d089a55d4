//! Echo cancellation (`audio.aec`'s [`Canceller`], WebRTC AEC3 via the `aec3` crate): echo
//! return loss enhancement (ERLE) and CPU on a real recording of the assistant's voice sent
//! through the virtual room ([`Room`]: 40 ms, -6 dB, low-passed, two reflections).
//!
//! Two runs per rate: echo only, and echo plus a user's question (double talk) starting at
//! 2 s. ERLE = 10 log10(echo energy / output energy) over the echo-only samples after the
//! first second (AEC3 converging), so in the double-talk run the question's samples are left
//! out. "near kept" is the output's energy over the mic's where the user speaks (0 dB: the
//! question passes untouched). CPU: wall time of one 10 ms block (render + process),
//! median over every block, and the real-time factor (time / 10 ms).
//!
//! ```sh
//! WEIR_OUT=out cargo run -p weir --bin weir -- run graphs/voice_assistant.yaml \
//!     --input data/synth/two_turns_16k.wav       # the assistant's voice: out/answer.wav
//! cargo run -p weir-live --example bench_aec -- --far out/answer.wav
//! ```

use std::path::PathBuf;
use std::time::Instant;

use weir_live::aec::canceller::Canceller;
use weir_live::virtual_device::{Room, VirtualSpeaker};
use weir_nodes::audio::resample::{Method, StreamResampler};

fn read(path: &PathBuf, rate: u32) -> Vec<f32> {
    let mut reader = hound::WavReader::open(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (see the command in this file's docs)",
            path.display()
        )
    });
    let spec = reader.spec();
    let raw: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .map(|s| s.expect("sample"))
            .collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / f32::from(1u16 << (spec.bits_per_sample.min(16) - 1));
            reader
                .samples::<i32>()
                .map(|s| s.expect("sample") as f32 * scale)
                .collect()
        }
    };
    let ch = usize::from(spec.channels);
    let mono: Vec<f32> = raw
        .chunks_exact(ch)
        .map(|f| f.iter().sum::<f32>() / ch as f32)
        .collect();
    if spec.sample_rate == rate {
        return mono;
    }
    let mut r = StreamResampler::new(spec.sample_rate, rate, 1, Method::Fft).expect("resampler");
    let mut out = Vec::new();
    r.push(&mono, &mut out).expect("resample");
    r.finish(&mut out).expect("resample");
    out
}

fn energy(x: impl Iterator<Item = f32>) -> f64 {
    x.map(|s| f64::from(s) * f64::from(s)).sum()
}

fn db(num: f64, den: f64) -> f64 {
    10.0 * (num / den.max(1e-20)).log10()
}

struct Outcome {
    erle_db: f64,
    near_kept_db: Option<f64>,
    ns_per_block: Vec<u64>,
}

fn run(rate: u32, far: &[f32], near: Option<&[f32]>) -> Outcome {
    let speaker = VirtualSpeaker::new(rate, 1);
    let room = Room::new(&speaker, 40.0, 0.5);
    let mut echo = vec![0.0f32; far.len()];
    room.echo_into(far, 0, 0, &mut echo);
    let mut near_full = vec![0.0f32; far.len()];
    if let Some(near) = near {
        let at = 2 * rate as usize;
        for (d, &s) in near_full[at..].iter_mut().zip(near) {
            *d = s;
        }
    }
    let mic: Vec<f32> = echo.iter().zip(&near_full).map(|(e, n)| e + n).collect();
    let mut aec = Canceller::new(rate).expect("canceller");
    let n = aec.block_len();
    let mut out = vec![0.0f32; mic.len() / n * n];
    let mut ns_per_block = Vec::with_capacity(mic.len() / n);
    for (k, (r, m)) in far.chunks_exact(n).zip(mic.chunks_exact(n)).enumerate() {
        let t = Instant::now();
        aec.render(r).expect("render");
        aec.process(m, &mut out[k * n..(k + 1) * n])
            .expect("process");
        ns_per_block.push(t.elapsed().as_nanos() as u64);
    }
    let from = rate as usize;
    let quiet = |i: &usize| near_full[*i] == 0.0;
    let idx = || (from..out.len()).filter(quiet);
    let erle_db = db(
        energy(idx().map(|i| echo[i])),
        energy(idx().map(|i| out[i])),
    );
    let near_kept_db = near.map(|_| {
        let talk = || (from..out.len()).filter(|i| near_full[*i] != 0.0);
        db(
            energy(talk().map(|i| out[i])),
            energy(talk().map(|i| mic[i])),
        )
    });
    Outcome {
        erle_db,
        near_kept_db,
        ns_per_block,
    }
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let mut far_path = PathBuf::from("out/answer.wav");
    let mut near_path = PathBuf::from("data/synth/question_16k.wav");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--far" => far_path = value().into(),
            "--near" => near_path = value().into(),
            other => panic!("unknown argument {other}; use --far FILE.wav, --near FILE.wav"),
        }
    }
    println!(
        "far end (the assistant): {}; near end (the user): {}",
        far_path.display(),
        near_path.display()
    );
    for rate in [16_000u32, 48_000] {
        let far = read(&far_path, rate);
        let near = read(&near_path, rate);
        for (label, near) in [("echo only", None), ("echo + question", Some(&near[..]))] {
            let mut o = run(rate, &far, near);
            let blocks = o.ns_per_block.len();
            let med = median(&mut o.ns_per_block);
            println!(
                "{rate:>5} Hz {label:<16} {:.1} s: ERLE {:5.1} dB{}  CPU {:>7} ns per 10 ms \
                 block (median of {blocks}), real-time factor {:.4}",
                far.len() as f64 / f64::from(rate),
                o.erle_db,
                o.near_kept_db
                    .map(|d| format!(", near kept {d:+.1} dB"))
                    .unwrap_or_default(),
                med,
                med as f64 / 10e6,
            );
        }
    }
}
