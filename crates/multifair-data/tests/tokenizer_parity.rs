//! The WordPiece tokeniser against Hugging Face's fast BERT tokenizer (what the original's
//! `AutoTokenizer.from_pretrained('bert-base-uncased')` loads) on 10,000 varied sentences:
//! accents and combining marks, CJK, punctuation outside ASCII, control and zero-width
//! characters, emoji, words over 100 characters, notes past 512 tokens
//! (fixtures/make_tokenizer_parity.py). Every id must agree.

use std::io::Read;

use multifair_data::tokenizer::WordPiece;
use serde_json::Value;

/// 64-bit FNV-1a over the ids as 4-byte little-endian integers (as the fixture's script).
fn fnv1a(ids: &[u32]) -> String {
    let h = (ids.iter().flat_map(|v| v.to_le_bytes())).fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

#[test]
fn ids_equal_hugging_faces_on_ten_thousand_sentences() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tokenizer-parity.zip"
    );
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut read = |name: &str| {
        let mut text = String::new();
        zip.by_name(name)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let (vocab, cases) = (read("vocab.txt"), read("cases.json"));
    let dir = std::env::temp_dir().join(format!("multifair-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vocab.txt"), vocab).unwrap();
    let tokenizer = WordPiece::from_folder(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let cases: Value = serde_json::from_str(&cases).unwrap();
    let sentences = cases["sentences"].as_array().unwrap();
    assert!(sentences.len() >= 10_000);
    let mut wrong = Vec::new();
    for (i, sentence) in sentences.iter().enumerate() {
        let encoding = tokenizer.encode(sentence.as_str().unwrap(), 512);
        let ids: Vec<u32> = (encoding.ids.iter().zip(&encoding.mask))
            .filter(|(_, m)| **m == 1)
            .map(|(id, _)| *id)
            .collect();
        let same = match cases["ids"].get(i) {
            Some(want) => {
                let want: Vec<u32> = (want.as_array().unwrap().iter())
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect();
                want == ids
            }
            None => {
                ids.len() as u64 == cases["lengths"][i].as_u64().unwrap()
                    && fnv1a(&ids) == cases["hashes"][i].as_str().unwrap()
            }
        };
        if !same {
            wrong.push((i, sentence.clone()));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} sentences differ from Hugging Face's ids, e.g. {:?}",
        wrong.len(),
        sentences.len(),
        &wrong[..wrong.len().min(5)]
    );
}
