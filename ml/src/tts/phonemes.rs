//! Text to phoneme ids: espeak-ng's IPA, run as a separate process, mapped onto a Piper
//! voice's phoneme table.
//!
//! espeak-ng is GPL-3.0, so Weir never links it: [`Espeak`] starts the `espeak-ng` program
//! (Debian package `espeak-ng`) once per phrase, writes the phrase on its standard input and
//! reads the IPA it prints. espeak-ng prints one line per clause and drops the punctuation;
//! Piper voices were trained with the clause's punctuation kept as a phoneme, so
//! [`Espeak::ipa`] puts it back when the clauses line up with the text's punctuation.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::TtsError;

/// Most characters of text handed to espeak-ng in one call.
pub const MAX_PHRASE_CHARS: usize = 4096;

/// The espeak-ng program and the voice it phonemizes with.
#[derive(Clone, Debug)]
pub struct Espeak {
    program: PathBuf,
    voice: String,
}

impl Espeak {
    /// `program` (a name looked up in `PATH`, or a path) with espeak voice `voice` (`en-us`).
    pub fn new(program: impl Into<PathBuf>, voice: impl Into<String>) -> Espeak {
        Espeak {
            program: program.into(),
            voice: voice.into(),
        }
    }

    /// The program.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Checks that the program runs (`--version`), with an error that names the fix.
    pub fn check(&self) -> Result<(), TtsError> {
        let out = Command::new(&self.program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.spawn_error(e))?;
        if !out.status.success() {
            return Err(TtsError::Espeak {
                program: self.program.clone(),
                message: format!("`--version` failed with {}", out.status),
            });
        }
        Ok(())
    }

    fn spawn_error(&self, e: std::io::Error) -> TtsError {
        if e.kind() == std::io::ErrorKind::NotFound {
            TtsError::EspeakMissing {
                program: self.program.clone(),
            }
        } else {
            TtsError::Espeak {
                program: self.program.clone(),
                message: format!("cannot start it: {e}"),
            }
        }
    }

    /// Runs the program with `args` and `text` on standard input; returns standard output.
    fn run(&self, args: &[&str], text: &str) -> Result<Vec<u8>, TtsError> {
        if text.chars().count() > MAX_PHRASE_CHARS {
            return Err(TtsError::PhraseTooLong {
                chars: text.chars().count(),
                max: MAX_PHRASE_CHARS,
            });
        }
        let mut child = Command::new(&self.program)
            .args(["-v", &self.voice])
            .args(args)
            .arg("--stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        // A phrase is small: written whole before the output is read, it cannot deadlock.
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .and_then(|_| stdin.write_all(b"\n"))
                .map_err(|e| TtsError::Espeak {
                    program: self.program.clone(),
                    message: format!("cannot write the text: {e}"),
                })?;
        }
        let out = child.wait_with_output().map_err(|e| TtsError::Espeak {
            program: self.program.clone(),
            message: format!("cannot read its output: {e}"),
        })?;
        if !out.status.success() {
            return Err(TtsError::Espeak {
                program: self.program.clone(),
                message: format!(
                    "exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(out.stdout)
    }

    /// The IPA of `text`, clauses separated by spaces, each clause followed by its
    /// punctuation mark when the text's clauses and espeak-ng's line up.
    pub fn ipa(&self, text: &str) -> Result<String, TtsError> {
        let out = self.run(&["-q", "--ipa"], text)?;
        let out = String::from_utf8_lossy(&out);
        let lines: Vec<String> = out
            .lines()
            .map(strip_language_marks)
            .filter(|l| !l.is_empty())
            .collect();
        Ok(punctuate(&lines, &clause_marks(text)))
    }
}

impl Espeak {
    /// espeak-ng speaking `text` itself (its own formant synthesizer): the sample rate and
    /// the mono samples of the WAV it writes on standard output.
    pub fn speak(&self, text: &str) -> Result<(u32, Vec<f32>), TtsError> {
        let wav = self.run(&["--stdout"], text)?;
        parse_wav(&wav).ok_or_else(|| TtsError::Espeak {
            program: self.program.clone(),
            message: format!(
                "its --stdout output ({} bytes) is not 16-bit mono PCM WAV",
                wav.len()
            ),
        })
    }
}

/// Rate and samples of a 16-bit mono PCM WAV. espeak-ng streams its WAV, so the data chunk's
/// size field is a placeholder: the data runs to the end of the bytes.
fn parse_wav(wav: &[u8]) -> Option<(u32, Vec<f32>)> {
    let u16_at = |i: usize| Some(u16::from_le_bytes(wav.get(i..i + 2)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_le_bytes(wav.get(i..i + 4)?.try_into().ok()?));
    if wav.get(0..4)? != b"RIFF" || wav.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut pos = 12;
    let mut rate = None;
    while pos + 8 <= wav.len() {
        let id = &wav[pos..pos + 4];
        let size = u32_at(pos + 4)? as usize;
        let body = pos + 8;
        if id == b"fmt " {
            let (format, channels, bits) = (u16_at(body)?, u16_at(body + 2)?, u16_at(body + 14)?);
            if format != 1 || channels != 1 || bits != 16 {
                return None;
            }
            rate = Some(u32_at(body + 4)?).filter(|r| (8_000..=96_000).contains(r));
        } else if id == b"data" {
            let end = body.saturating_add(size).min(wav.len());
            let samples = wav[body..end]
                .chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                .collect();
            return Some((rate?, samples));
        }
        pos = body.checked_add(size)?.checked_add(size & 1)?;
    }
    None
}

/// Removes espeak-ng's language switch marks such as `(fr)` and `(en-us)`.
fn strip_language_marks(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut depth = 0usize;
    for c in line.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// The punctuation marks that end clauses in `text`, in order: a mark in `.,;:!?` followed by
/// white space or the end. A run of marks (`...`, `?!`) counts once, by its last mark.
pub(crate) fn clause_marks(text: &str) -> Vec<char> {
    let chars: Vec<char> = text.trim_end().chars().collect();
    let mut marks = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        if !is_clause_mark(c) {
            continue;
        }
        match chars.get(i + 1) {
            None => marks.push(c),
            Some(n) if n.is_whitespace() => marks.push(c),
            _ => {}
        }
    }
    marks
}

/// True for the marks that end a clause.
pub(crate) fn is_clause_mark(c: char) -> bool {
    matches!(c, '.' | ',' | ';' | ':' | '!' | '?')
}

/// Joins espeak-ng's clause lines, each followed by its mark when the counts agree (the text
/// may have one clause more than marks: its end without a mark).
fn punctuate(lines: &[String], marks: &[char]) -> String {
    let aligned = lines.len() == marks.len() || lines.len() == marks.len() + 1;
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(line);
        if aligned {
            if let Some(m) = marks.get(i) {
                out.push(*m);
            }
        }
    }
    if !aligned {
        if let Some(m) = marks.last() {
            out.push(*m);
        }
    }
    out
}

/// A Piper voice's phoneme table: one id per phoneme character, with Piper's convention of a
/// start id (`^`), an end id (`$`) and a pad id (`_`) after every phoneme.
#[derive(Clone, Debug)]
pub struct PhonemeTable {
    ids: HashMap<char, i64>,
    bos: i64,
    eos: i64,
    pad: i64,
}

impl PhonemeTable {
    /// The table from the voice's `phoneme_id_map` (`{"a": [14], ...}`).
    pub fn from_map(map: &HashMap<String, Vec<i64>>, path: &Path) -> Result<Self, TtsError> {
        let bad = |message: String| TtsError::Voice {
            path: path.to_path_buf(),
            message,
        };
        let mut ids = HashMap::new();
        for (k, v) in map {
            let mut chars = k.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(bad(format!("phoneme `{k}` is not one character")));
            };
            let Some(&id) = v.first() else {
                return Err(bad(format!("phoneme `{k}` has no id")));
            };
            ids.insert(c, id);
        }
        let get = |c: char| {
            ids.get(&c)
                .copied()
                .ok_or_else(|| bad(format!("the phoneme table has no `{c}`")))
        };
        Ok(PhonemeTable {
            bos: get('^')?,
            eos: get('$')?,
            pad: get('_')?,
            ids,
        })
    }

    /// The ids of a phoneme string without the start and end ids: each known phoneme
    /// followed by the pad id. Unknown characters are skipped and counted in the second value.
    pub fn body(&self, phonemes: &str) -> (Vec<i64>, usize) {
        let mut ids = Vec::with_capacity(2 * phonemes.len());
        let mut unknown = 0;
        for c in phonemes.chars() {
            match self.ids.get(&c) {
                Some(&id) => ids.extend([id, self.pad]),
                None => unknown += 1,
            }
        }
        (ids, unknown)
    }

    /// `body` framed by the start id (and a pad) and the end id: what the voice reads.
    pub fn frame(&self, body: &[i64]) -> Vec<i64> {
        let mut ids = Vec::with_capacity(body.len() + 3);
        ids.extend([self.bos, self.pad]);
        ids.extend_from_slice(body);
        ids.push(self.eos);
        ids
    }

    /// The id of the space, where the voice has one (word boundaries).
    pub fn space(&self) -> Option<i64> {
        self.ids.get(&' ').copied()
    }
}

/// Cuts a phoneme id body (pairs of phoneme, pad) into pieces of at most `max` ids, at word
/// boundaries (after a space) where possible.
pub fn split_body(body: &[i64], max: usize, space: Option<i64>) -> Vec<&[i64]> {
    let max = max.max(2) & !1;
    let mut pieces = Vec::new();
    let mut rest = body;
    while rest.len() > max {
        let cut = space
            .and_then(|s| {
                (2..=max)
                    .rev()
                    .step_by(2)
                    .find(|&i| rest[i - 2] == s && i >= max / 2)
            })
            .unwrap_or(max);
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clause_marks_ignore_marks_inside_words_and_numbers() {
        assert_eq!(clause_marks("It was 3.5 km, e.g. far!"), [',', '.', '!']);
        assert_eq!(clause_marks("Hello... world?! "), ['.', '!']);
        assert_eq!(clause_marks("no mark"), Vec::<char>::new());
    }

    #[test]
    fn parse_wav_reads_a_streamed_header() {
        let mut wav = b"RIFF\xff\xff\xff\x7fWAVEfmt ".to_vec();
        wav.extend(16u32.to_le_bytes());
        wav.extend([1, 0, 1, 0]);
        wav.extend(22050u32.to_le_bytes());
        wav.extend(44100u32.to_le_bytes());
        wav.extend([2, 0, 16, 0]);
        wav.extend(b"data\x00\xf0\xff\x7f");
        wav.extend([0, 0x40, 0, 0xc0]);
        assert_eq!(parse_wav(&wav), Some((22050, vec![0.5, -0.5])));
        assert_eq!(parse_wav(b"RIFF"), None);
    }

    #[test]
    fn punctuate_restores_marks_when_aligned() {
        let lines = vec!["həlˈoʊ".to_string(), "wˈɜːld".to_string()];
        assert_eq!(punctuate(&lines, &[',', '!']), "həlˈoʊ, wˈɜːld!");
        assert_eq!(punctuate(&lines, &[',']), "həlˈoʊ, wˈɜːld");
        assert_eq!(punctuate(&lines, &['.', '.', '.']), "həlˈoʊ wˈɜːld.");
        assert_eq!(strip_language_marks("(fr)kafe(en-us) ok"), "kafe ok");
    }

    fn table() -> PhonemeTable {
        let map: HashMap<String, Vec<i64>> = [("_", 0), ("^", 1), ("$", 2), (" ", 3), ("a", 14)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), vec![v]))
            .collect();
        PhonemeTable::from_map(&map, Path::new("voice.json")).unwrap()
    }

    #[test]
    fn ids_follow_pipers_convention() {
        let t = table();
        let (body, unknown) = t.body("a a?");
        assert_eq!(unknown, 1);
        assert_eq!(body, [14, 0, 3, 0, 14, 0]);
        assert_eq!(t.frame(&body), [1, 0, 14, 0, 3, 0, 14, 0, 2]);
    }

    #[test]
    fn split_body_cuts_after_spaces_and_keeps_everything() {
        let t = table();
        let (body, _) = t.body("aaa aaa aaa aaa");
        let pieces = split_body(&body, 10, t.space());
        assert!(pieces.iter().all(|p| p.len() <= 10 && p.len() % 2 == 0));
        assert_eq!(pieces.concat(), body);
        assert_eq!(pieces[0], &body[..8], "cut after the first space");
        let no_space = split_body(&body, 10, None);
        assert_eq!(no_space[0].len(), 10);
    }
}
