//! Choosing the next token from logits: greedy, or temperature + nucleus (top-p) sampling with
//! a small seeded generator, so a seed always gives the same answer.

/// A PCG-XSH-RR 32-bit generator (O'Neill, 2014): 64-bit state, good statistics, tiny.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    inc: u64,
}

impl Rng {
    const MUL: u64 = 6364136223846793005;

    /// A generator seeded with `seed`; equal seeds give equal sequences.
    pub fn new(seed: u64) -> Rng {
        let mut rng = Rng {
            state: 0,
            inc: (0xda3e_39cb_94b9_5bdb << 1) | 1,
        };
        rng.next_u32();
        rng.state = rng.state.wrapping_add(seed);
        rng.next_u32();
        rng
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(Self::MUL).wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        // 24 bits: every value is exactly representable, and 1.0 is never reached.
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }
}

/// How to pick the next token.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `0` (or less) means greedy (argmax).
    pub temperature: f32,
    /// Nucleus size: sample among the most likely tokens whose probabilities add up to
    /// `top_p`; `1` keeps them all.
    pub top_p: f32,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_p: 0.9,
            seed: 42,
        }
    }
}

/// Picks tokens from logits according to a [`SamplerConfig`].
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
    /// Scratch: (probability, token) of the candidates, reused between calls.
    candidates: Vec<(f32, u32)>,
}

impl Sampler {
    /// A sampler whose generator starts from `config.seed`.
    pub fn new(config: SamplerConfig) -> Sampler {
        Sampler {
            rng: Rng::new(config.seed),
            config,
            candidates: Vec::new(),
        }
    }

    /// Restarts the generator from the seed (each answer is then reproducible on its own).
    pub fn reset(&mut self) {
        self.rng = Rng::new(self.config.seed);
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The next token for `logits` (one score per vocabulary entry).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let t = self.config.temperature;
        if t.is_nan() || t <= 0.0 || t.is_infinite() {
            return argmax(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return argmax(logits);
        }
        self.candidates.clear();
        let mut sum = 0.0f32;
        for (i, &l) in logits.iter().enumerate() {
            let p = ((l - max) / t).exp();
            if p > 0.0 {
                sum += p;
                self.candidates.push((p, i as u32));
            }
        }
        self.candidates
            .sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let top_p = self.config.top_p.clamp(0.0, 1.0);
        let mut keep = 0;
        let mut kept_mass = 0.0f32;
        for &(p, _) in &self.candidates {
            keep += 1;
            kept_mass += p;
            if kept_mass >= top_p * sum {
                break;
            }
        }
        let target = self.rng.next_f32() * kept_mass;
        let mut acc = 0.0f32;
        for &(p, id) in &self.candidates[..keep] {
            acc += p;
            if target < acc {
                return id;
            }
        }
        self.candidates[keep - 1].1
    }
}

/// The index of the largest value (the first one on ties; NaN never wins).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in values.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_uniform_enough() {
        let a: Vec<u32> = (0..5)
            .scan(Rng::new(7), |r, _| Some(r.next_u32()))
            .collect();
        let b: Vec<u32> = (0..5)
            .scan(Rng::new(7), |r, _| Some(r.next_u32()))
            .collect();
        let c: Vec<u32> = (0..5)
            .scan(Rng::new(8), |r, _| Some(r.next_u32()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut rng = Rng::new(1);
        let mean = (0..10_000).map(|_| rng.next_f32()).sum::<f32>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(SamplerConfig {
            temperature: 0.0,
            ..SamplerConfig::default()
        });
        assert_eq!(s.sample(&[0.1, 3.0, f32::NAN, 2.9]), 1);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Token 0 holds ~88% of the mass: with top_p 0.5 only it can be drawn.
        let logits = [4.0, 2.0, 0.0, -1.0];
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_p: 0.5,
            seed: 3,
        });
        assert!((0..200).all(|_| s.sample(&logits) == 0));
        // With the whole distribution, other tokens show up.
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_p: 1.0,
            seed: 3,
        });
        assert!((0..500).any(|_| s.sample(&logits) != 0));
    }

    #[test]
    fn same_seed_same_draws() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let cfg = SamplerConfig {
            temperature: 0.8,
            top_p: 0.95,
            seed: 11,
        };
        let mut a = Sampler::new(cfg.clone());
        let mut b = Sampler::new(cfg);
        let da: Vec<u32> = (0..20).map(|_| a.sample(&logits)).collect();
        let db: Vec<u32> = (0..20).map(|_| b.sample(&logits)).collect();
        assert_eq!(da, db);
        a.reset();
        let again: Vec<u32> = (0..20).map(|_| a.sample(&logits)).collect();
        assert_eq!(da, again);
    }
}
