//! Streaming text to phrases: pieces of text (tokens as a language model decodes them) go in,
//! whole phrases come out as soon as they are known to be complete.
//!
//! A phrase ends at a sentence mark (`.`, `!`, `?`, `;`, `:`) followed by white space, at a
//! line break, at a comma once the phrase has [`PhraseConfig::comma_chars`] characters, or at
//! the last space before [`PhraseConfig::max_chars`] (the length cap). A mark is only taken
//! as an end once the next character is seen, so `3.5` and `e.g.` mid-sentence stay whole;
//! [`Phrases::finish`] returns what is left at the end of the answer.

/// Where phrases are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhraseConfig {
    /// A comma ends a phrase once the phrase has at least this many characters.
    pub comma_chars: usize,
    /// A phrase never exceeds this many characters: it is cut at its last space (or, with no
    /// space, right there).
    pub max_chars: usize,
}

impl Default for PhraseConfig {
    fn default() -> Self {
        PhraseConfig {
            comma_chars: 40,
            max_chars: 160,
        }
    }
}

/// The phrase splitter's state: the text of the phrase being built.
#[derive(Clone, Debug, Default)]
pub struct Phrases {
    config: PhraseConfig,
    buf: String,
}

impl Phrases {
    /// An empty splitter. `max_chars` is at least 8, `comma_chars` at most `max_chars`.
    pub fn new(config: PhraseConfig) -> Phrases {
        let max_chars = config.max_chars.max(8);
        Phrases {
            config: PhraseConfig {
                max_chars,
                comma_chars: config.comma_chars.min(max_chars),
            },
            buf: String::new(),
        }
    }

    /// Adds `text`; returns the phrases it completed (trimmed, never empty).
    pub fn push(&mut self, text: &str) -> Vec<String> {
        let mut done = Vec::new();
        for c in text.chars() {
            self.push_char(c, &mut done);
        }
        done
    }

    fn push_char(&mut self, c: char, done: &mut Vec<String>) {
        if let Some(last) = self.buf.chars().last() {
            let chars = self.buf.chars().count();
            let ends = match last {
                '.' | '!' | '?' | ';' | ':' => c.is_whitespace(),
                ',' => c.is_whitespace() && chars >= self.config.comma_chars,
                _ => false,
            };
            if ends || c == '\n' {
                self.take(done);
            }
        }
        if self.buf.is_empty() && c.is_whitespace() {
            return;
        }
        self.buf.push(c);
        if self.buf.chars().count() > self.config.max_chars {
            self.cut_at_space(done);
        }
    }

    /// The buffer is over the cap: emit it up to its last space (or whole, without one).
    fn cut_at_space(&mut self, done: &mut Vec<String>) {
        match self.buf.trim_end().rfind(char::is_whitespace) {
            Some(i) if i > 0 => {
                let rest = self.buf.split_off(i);
                self.take(done);
                self.buf = rest.trim_start().to_string();
            }
            _ => {
                let last = self.buf.pop();
                self.take(done);
                self.buf.extend(last);
            }
        }
    }

    fn take(&mut self, done: &mut Vec<String>) {
        let phrase = self.buf.trim();
        if phrase.chars().any(char::is_alphanumeric) {
            done.push(phrase.to_string());
        }
        self.buf.clear();
    }

    /// The rest of the text as a last phrase (if it holds any letter or digit); the splitter
    /// is empty afterwards.
    pub fn finish(&mut self) -> Option<String> {
        let mut done = Vec::new();
        self.take(&mut done);
        done.pop()
    }

    /// Drops the phrase being built (an interrupt).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// True if no text is waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.trim().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pieces: &[&str], config: PhraseConfig) -> Vec<String> {
        let mut p = Phrases::new(config);
        let mut out: Vec<String> = pieces.iter().flat_map(|t| p.push(t)).collect();
        out.extend(p.finish());
        out
    }

    #[test]
    fn sentences_end_phrases_once_the_next_character_is_seen() {
        let mut p = Phrases::new(PhraseConfig::default());
        assert!(p.push("The capital is Paris.").is_empty());
        assert_eq!(p.push(" It"), ["The capital is Paris."]);
        assert_eq!(p.finish().as_deref(), Some("It"));
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn tokens_numbers_and_abbreviations() {
        let tokens = [
            "It", " is", " 3", ".", "5", " km", " away", "!", " Yes", "?", "\n", "Ok",
        ];
        assert_eq!(
            split(&tokens, PhraseConfig::default()),
            ["It is 3.5 km away!", "Yes?", "Ok"]
        );
    }

    #[test]
    fn commas_cut_only_long_phrases() {
        let config = PhraseConfig {
            comma_chars: 10,
            max_chars: 100,
        };
        assert_eq!(
            split(&["Hi, there you are, my friend, ok"], config),
            ["Hi, there you are,", "my friend,", "ok"]
        );
    }

    #[test]
    fn the_length_cap_cuts_at_a_space() {
        let config = PhraseConfig {
            comma_chars: 100,
            max_chars: 12,
        };
        let out = split(&["one two three four five six seven"], config);
        assert!(out.iter().all(|p| p.chars().count() <= 12), "{out:?}");
        assert_eq!(out.join(" "), "one two three four five six seven");
        let long = split(&["abcdefghijklmnopqrstuvwxyz"], config);
        assert!(long.iter().all(|p| p.chars().count() <= 12), "{long:?}");
        assert_eq!(long.concat(), "abcdefghijklmnopqrstuvwxyz");
    }

    #[test]
    fn punctuation_only_is_not_a_phrase() {
        assert!(split(&["...", " ", "!"], PhraseConfig::default()).is_empty());
    }
}
