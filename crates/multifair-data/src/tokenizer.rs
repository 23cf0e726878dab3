//! BERT WordPiece tokenisation of clinical notes, from a local `vocab.txt` or `tokenizer.json`.
//!
//! Written here instead of depending on `tokenizers`: BERT needs only its basic tokenizer
//! (clean, lower-case, strip accents, split punctuation and CJK) and greedy longest-match
//! WordPiece, which is what this file is; it avoids a large native-regex dependency.

use std::collections::HashMap;
use std::path::Path;

use unicode_categories::UnicodeCategories;
use unicode_normalization::UnicodeNormalization;

/// The reference's note for an empty one.
pub const EMPTY_NOTE: &str = "no clinical notes available";

/// The reference's maximum sequence length.
pub const MAX_TOKENS: usize = 512;

/// Token ids and attention mask, padded to a fixed length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    pub ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<u32>,
}

/// A vocabulary file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct TokenizerError {
    pub file: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    lowercase: bool,
    unk: u32,
    cls: u32,
    sep: u32,
    pad: u32,
}

const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

impl WordPiece {
    /// From tokens in id order (a `vocab.txt`'s lines).
    pub fn from_tokens<S: AsRef<str>>(tokens: &[S], lowercase: bool) -> Result<Self, String> {
        let vocab: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_ref().to_owned(), i as u32))
            .collect();
        Self::from_map(vocab, lowercase)
    }

    fn from_map(vocab: HashMap<String, u32>, lowercase: bool) -> Result<Self, String> {
        let id = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| format!("the vocabulary has no {t} token"))
        };
        Ok(WordPiece {
            unk: id("[UNK]")?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            pad: id("[PAD]")?,
            lowercase,
            vocab,
        })
    }

    /// Loads `tokenizer.json` (HF tokenizers format) or `vocab.txt` from `folder`, preferring the
    /// former. `vocab.txt` alone is lower-cased, as bert-base-uncased is.
    pub fn from_folder(folder: &Path) -> Result<Self, TokenizerError> {
        let json = folder.join("tokenizer.json");
        let txt = folder.join("vocab.txt");
        let error = |file: &Path, message: String| TokenizerError {
            file: file.display().to_string(),
            message,
        };
        if json.is_file() {
            let text = std::fs::read_to_string(&json).map_err(|e| error(&json, e.to_string()))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| error(&json, format!("not JSON: {e}")))?;
            let model = &value["model"];
            if model["type"] != "WordPiece" {
                return Err(error(
                    &json,
                    format!("model type {} is not WordPiece", model["type"]),
                ));
            }
            let vocab = model["vocab"]
                .as_object()
                .ok_or_else(|| error(&json, "no model.vocab object".into()))?
                .iter()
                .map(|(k, v)| v.as_u64().map(|id| (k.clone(), id as u32)))
                .collect::<Option<HashMap<_, _>>>()
                .ok_or_else(|| error(&json, "model.vocab has a non-integer id".into()))?;
            let lowercase = value["normalizer"]["lowercase"].as_bool().unwrap_or(true);
            Self::from_map(vocab, lowercase).map_err(|m| error(&json, m))
        } else if txt.is_file() {
            let text = std::fs::read_to_string(&txt).map_err(|e| error(&txt, e.to_string()))?;
            let tokens: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
            Self::from_tokens(&tokens, true).map_err(|m| error(&txt, m))
        } else {
            Err(error(
                folder,
                "no tokenizer.json or vocab.txt in this folder".into(),
            ))
        }
    }

    /// A small vocabulary covering the synthetic benchmark's notes ([`crate::synthetic`]).
    pub fn builtin(words: &[&str]) -> Self {
        let mut tokens: Vec<&str> = SPECIALS.to_vec();
        tokens.extend(".,;:-()/".split("").filter(|s| !s.is_empty()));
        tokens.extend("0123456789".split("").filter(|s| !s.is_empty()));
        tokens.extend(words.iter().copied());
        tokens.sort_by_key(|t| {
            SPECIALS
                .iter()
                .position(|s| s == t)
                .unwrap_or(SPECIALS.len())
        });
        tokens.dedup();
        Self::from_tokens(&tokens, true).expect("built-in vocabulary has the special tokens")
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.values().max().map_or(0, |&m| m as usize + 1)
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// WordPiece ids of `text` without special tokens.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for word in self.basic_split(text) {
            self.wordpiece(&word, &mut ids);
        }
        ids
    }

    /// `[CLS] tokens [SEP]`, truncated to `max_len`, padded with `[PAD]`. An empty note becomes
    /// [`EMPTY_NOTE`].
    pub fn encode(&self, text: &str, max_len: usize) -> Encoding {
        let text = if text.trim().is_empty() {
            EMPTY_NOTE
        } else {
            text
        };
        let mut ids = vec![self.cls];
        let mut body = self.tokenize(text);
        body.truncate(max_len.saturating_sub(2));
        ids.extend(body);
        ids.push(self.sep);
        ids.truncate(max_len);
        let mut mask = vec![1; ids.len()];
        ids.resize(max_len, self.pad);
        mask.resize(max_len, 0);
        Encoding { ids, mask }
    }

    /// BERT's normaliser and pre-tokenizer, as Hugging Face's `BertNormalizer` and
    /// `BertPreTokenizer` run them: control and format characters dropped, whitespace to
    /// spaces, CJK characters set apart, then (lower-cased models) accents stripped (NFD, then
    /// non-spacing marks removed) and lower case; words split at whitespace and each
    /// punctuation character kept as its own word.
    fn basic_split(&self, text: &str) -> Vec<String> {
        let mut cleaned = String::with_capacity(text.len());
        for c in text.chars() {
            if c == '\0' || c == '\u{fffd}' || is_control(c) {
                continue;
            }
            if is_cjk(c) {
                cleaned.extend([' ', c, ' ']);
            } else {
                cleaned.push(if c.is_whitespace() { ' ' } else { c });
            }
        }
        let mut words = Vec::new();
        for token in cleaned.split_whitespace() {
            let token: String = if self.lowercase {
                let stripped: String = token.nfd().filter(|c| !c.is_mark_nonspacing()).collect();
                stripped.to_lowercase()
            } else {
                token.to_owned()
            };
            let mut current = String::new();
            for c in token.chars() {
                if is_punctuation(c) {
                    if !current.is_empty() {
                        words.push(std::mem::take(&mut current));
                    }
                    words.push(c.to_string());
                } else {
                    current.push(c);
                }
            }
            if !current.is_empty() {
                words.push(current);
            }
        }
        words
    }

    /// Greedy longest-match-first; a word that cannot be split becomes `[UNK]`.
    fn wordpiece(&self, word: &str, out: &mut Vec<u32>) {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > 100 {
            out.push(self.unk);
            return;
        }
        let start_len = out.len();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                let piece: String = chars[start..end].iter().collect();
                let piece = if start > 0 {
                    format!("##{piece}")
                } else {
                    piece
                };
                if let Some(&id) = self.vocab.get(&piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => out.push(id),
                None => {
                    out.truncate(start_len);
                    out.push(self.unk);
                    return;
                }
            }
            start = end;
        }
    }
}

/// Dropped by BERT's text cleaning: Unicode "other" characters (control, format, unassigned,
/// private use, surrogate) but tab, newline and carriage return, which count as whitespace.
fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

/// BERT's punctuation: ASCII punctuation and Unicode category P.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// Words kept in a manifest's own vocabulary (when its text has no tokenizer folder).
const MANIFEST_WORDS: usize = 5000;

/// The tokenizer of a dataset's notes: the pretrained text encoder's (`folder`), else for a
/// manifest a word vocabulary of its training texts, else the synthetic benchmark's words;
/// `None` when the dataset has no text.
pub fn for_dataset(
    schema: &crate::Schema,
    train: &crate::SplitIndex,
    folder: Option<&Path>,
    manifest: bool,
) -> Result<Option<WordPiece>, String> {
    if !schema.has_text() {
        return Ok(None);
    }
    if let Some(folder) = folder {
        let t = WordPiece::from_folder(folder);
        return t
            .map(Some)
            .map_err(|e| format!("--set text_weights={}: {e}", folder.display()));
    }
    if !manifest {
        return Ok(Some(WordPiece::builtin(&crate::synthetic::NOTE_WORDS)));
    }
    let (mut words, mut seen) = (Vec::new(), std::collections::HashSet::new());
    for (j, m) in schema.modalities.iter().enumerate() {
        if m.kind == crate::ModalityKind::Text {
            let found = crate::manifest::training_words(&train.samples, j, MANIFEST_WORDS);
            for word in found.map_err(|e| e.to_string())? {
                if seen.insert(word.clone()) {
                    words.push(word);
                }
            }
        }
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    Ok(Some(WordPiece::builtin(&words)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> WordPiece {
        let tokens = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "optic", "disc", "cup", "##ping",
            "glaucoma", "suspect", ",", ".", "-", "to", "ratio", "0", "7", "eye",
        ];
        WordPiece::from_tokens(&tokens, true).unwrap()
    }

    #[test]
    fn lowercases_strips_accents_and_splits_punctuation() {
        let v = vocab();
        // "Éye" -> "eye"; "cupping" -> cup ##ping; "cup-to-disc" splits on '-'.
        assert_eq!(
            v.tokenize("Optic disc CUPPING, Éye"),
            vec![6, 7, 8, 9, 12, 19]
        );
        assert_eq!(
            v.tokenize("cup-to-disc ratio 0.7"),
            vec![8, 14, 15, 14, 7, 16, 17, 13, 18]
        );
        assert_eq!(v.tokenize("retina"), vec![1]);
    }

    #[test]
    fn vocab_txt_and_tokenizer_json_give_the_same_ids() {
        let dir = std::env::temp_dir().join(format!("multifair-tok-{}", std::process::id()));
        let (txt, json) = (dir.join("txt"), dir.join("json"));
        std::fs::create_dir_all(&txt).unwrap();
        std::fs::create_dir_all(&json).unwrap();
        let tokens = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "optic", "disc", "cup", "##ping",
        ];
        std::fs::write(txt.join("vocab.txt"), tokens.join("\n")).unwrap();
        let vocab: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i.into()))
            .collect();
        let tokenizer = serde_json::json!({
            "normalizer": {"type": "BertNormalizer", "lowercase": true},
            "model": {"type": "WordPiece", "vocab": vocab},
        });
        std::fs::write(json.join("tokenizer.json"), tokenizer.to_string()).unwrap();
        let a = WordPiece::from_folder(&txt).unwrap();
        let b = WordPiece::from_folder(&json).unwrap();
        assert_eq!(
            a.encode("Optic disc cupping", 8),
            b.encode("Optic disc cupping", 8)
        );
        assert_eq!(a.tokenize("Optic disc cupping"), vec![4, 5, 6, 7]);
        let err = WordPiece::from_folder(&dir).unwrap_err().to_string();
        assert!(
            err.ends_with("no tokenizer.json or vocab.txt in this folder"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn encode_adds_specials_truncates_and_pads() {
        let v = vocab();
        let e = v.encode("glaucoma suspect", 6);
        assert_eq!(e.ids, vec![2, 10, 11, 3, 0, 0]);
        assert_eq!(e.mask, vec![1, 1, 1, 1, 0, 0]);
        let short = v.encode("the optic disc the optic disc", 4);
        assert_eq!(short.ids, vec![2, 5, 6, 3]);
        // Empty notes become the reference's placeholder (unknown words here).
        assert_eq!(v.encode("  ", 8).mask.iter().sum::<u32>(), 2 + 4);
    }
}
