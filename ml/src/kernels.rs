//! Matrix-product paths Weir adds to tract's kernel selection.
//!
//! tract keeps a 4-bit (`Q4_0`, from ONNX `MatMulNBits`) weight packed in 32-row panels and
//! multiplies it with `fma_mmm_f32_32x1`, a matrix-vector kernel that reads and dequantizes
//! the whole weight once per activation row. For several rows (a prompt of `S` tokens) it
//! can instead unpack each 32-row panel to f32 once (a *panel extractor*) and run a
//! matrix-matrix kernel over all rows. tract 0.23 ships that extractor (AVX2 + F16C) but
//! declares its output as an f32 panel aligned to 32 bytes, while its x86-64 f32 kernels take
//! panels aligned to 256 (FMA) or 512 (AVX-512) bytes. The formats never compare equal, so
//! the extractor is never chosen and a prompt costs one full weight pass per token.
//!
//! This module registers (through tract's own `inventory` registry, read when tract first
//! resolves its kernel set) the same extraction routine declared with the alignments those
//! kernels use. tract's selection then keeps its matrix-vector kernel for one row (decode)
//! and picks a matrix-matrix kernel with the extractor for several rows (prefill). The bytes
//! the routine writes are the same whatever the declared alignment; only the scratch buffer
//! it writes into is aligned more.

/// Environment variable that, set to `off` before the first model is loaded, leaves tract's
/// kernel selection as tract ships it (for A/B measurements).
pub const DISABLE_ENV: &str = "WEIR_Q4_PANEL_EXTRACT";

#[cfg(target_arch = "x86_64")]
mod x86_64 {
    use tract_linalg::isa::Arch;
    use tract_linalg::mmm::PanelExtractor;
    use tract_linalg::mmm_routines::MmmExtractor;
    use tract_linalg::x86_64::panel_extract::packed_32_q40_to_f32;

    /// tract's Q4_0 -> f32 panel extractor, declared with `alignment` bytes. Marked as not
    /// built (so tract leaves it out) when [`super::DISABLE_ENV`] is `off`.
    fn q40_to_f32_aligned(name: &str, alignment: usize) -> PanelExtractor {
        let base: PanelExtractor = packed_32_q40_to_f32.clone();
        let enabled = std::env::var(super::DISABLE_ENV).map_or(true, |v| v != "off");
        PanelExtractor {
            name: name.to_string(),
            to: base.to.clone().align(alignment),
            built: base.built && enabled,
            ..base
        }
    }

    /// For the FMA f32 kernels (`fma_mmm_f32_32x3`, panels aligned to 256 bytes).
    fn q40_to_f32_fma() -> PanelExtractor {
        q40_to_f32_aligned("weir_packed_32_q40_to_f32_a256", 256)
    }

    /// For the AVX-512 f32 kernels (`avx512_mmm_f32_32x6`, panels aligned to 512 bytes).
    fn q40_to_f32_avx512() -> PanelExtractor {
        q40_to_f32_aligned("weir_packed_32_q40_to_f32_a512", 512)
    }

    /// Something for the loader to call, so that the linker keeps this module's object file
    /// (and with it the registrations below) in every binary that loads a model.
    pub(super) fn anchor() -> usize {
        std::hint::black_box(q40_to_f32_fma as fn() -> PanelExtractor) as usize
    }

    inventory::submit! {
        MmmExtractor { target: Arch::X86_64, make: q40_to_f32_fma }
    }

    inventory::submit! {
        MmmExtractor { target: Arch::X86_64, make: q40_to_f32_avx512 }
    }
}

/// Keeps the registrations of this module linked in; called by the model loader before
/// tract resolves its kernels.
pub(crate) fn ensure_registered() {
    #[cfg(target_arch = "x86_64")]
    std::hint::black_box(x86_64::anchor());
}

/// Names of tract's panel extractors this process can run (tract's and the ones this module
/// adds): a diagnostic, e.g. to check that Weir's registration reached tract.
pub fn panel_extractors() -> Vec<String> {
    tract_linalg::mmm_routines::extractors_for(&tract_linalg::isa::native())
        .into_iter()
        .map(|e| e.name)
        .collect()
}
