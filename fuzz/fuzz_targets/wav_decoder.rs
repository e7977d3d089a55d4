//! Any bytes as a WAV file: decoding must give samples or a clear error, never panic, and
//! never allocate from a header's claims.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((spec, samples)) =
        weir_nodes::audio::wav_file::decode_wav(std::io::Cursor::new(data), Path::new("fuzz.wav"))
    {
        assert!(spec.channels >= 1);
        assert!(samples.len() <= data.len());
    }
});
