//! The preprocess pipeline's per-character work, for `services/preprocess`:
//!
//! * `quality_measures`: the raw counts behind the quality signals of
//!   `services/preprocess/quality.py` (words, character classes, repeated lines and
//!   paragraphs, word n-gram repetition);
//! * `shingle_hashes`: the word n-gram shingles of `services/preprocess/fingerprints.py`,
//!   hashed as `rensa` hashes a `str` token, so that rensa computes the MinHash from them.
//!
//! The Python module keeps the definitions (and a reference implementation the unit tests
//! compare with); this crate computes the same values without a Python object per word.
//! What a character *is* (a word character, a space, a symbol ...) is not decided here:
//! Python builds a table of flags for every code point from its own `re` and `unicodedata`
//! (`set_char_table`), so both sides agree on every character of the running Unicode version.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rustc_hash::{FxHashMap, FxHasher};
use std::hash::Hasher;
use std::sync::OnceLock;

/// Flags per code point (see `services/preprocess/textcore.py`, which builds the table).
const QUALITY_WORD: u8 = 1; // [\w + combining marks], not "_": quality.py's word characters
const SHINGLE_WORD: u8 = 2; // \w: fingerprints.py's word characters
const SPACELESS: u8 = 4; // a script written without spaces: every character is a word
const LAYOUT: u8 = 8; // [^\w\s]: may form a layout run ("-----")
const SPACE: u8 = 16; // str.isspace(): what str.strip() removes
const CLASS_SHIFT: u8 = 5; // bits 5..7: the character class of the ratio signals
const CLASSES: usize = 5; // ignored, letter, digit, punctuation, symbol
const CODE_POINTS: usize = 0x11_0000;

/// Multipliers of quality.py's rolling n-gram hash (wrapping 64-bit arithmetic).
const HASH_MULT: u64 = 0x9E37_79B9_7F4A_7C15;
const HASH_SEED: u64 = 0xC2B2_AE3D_27D4_EB4F;

static TABLE: OnceLock<Box<[u8]>> = OnceLock::new();

fn table() -> PyResult<&'static [u8]> {
    TABLE
        .get()
        .map(|t| &t[..])
        .ok_or_else(|| PyValueError::new_err("tt_textcore.set_char_table was not called"))
}

/// Install the per-code-point flags (0x110000 bytes). Setting the same table again is a
/// no-op; a different one is refused (a process keeps one Unicode version).
#[pyfunction]
fn set_char_table(flags: &[u8]) -> PyResult<()> {
    if flags.len() != CODE_POINTS {
        return Err(PyValueError::new_err(format!(
            "the character table has {} entries, not {CODE_POINTS}",
            flags.len()
        )));
    }
    let installed = TABLE.get_or_init(|| flags.into());
    if installed[..] != *flags {
        return Err(PyValueError::new_err("a different character table is already installed"));
    }
    Ok(())
}

#[inline(always)]
fn is_joiner(c: char) -> bool {
    matches!(c, '\'' | '-' | '\u{2019}')
}

/// The character at byte `pos` of `s` and its UTF-8 width.
#[inline(always)]
fn char_at(s: &str, pos: usize) -> (char, usize) {
    let b = s.as_bytes()[pos];
    if b < 0x80 {
        return (b as char, 1);
    }
    let c = s[pos..].chars().next().expect("pos is a char boundary");
    (c, c.len_utf8())
}

/// quality.py's words of the case-folded text (its pattern `WORD`): a spaceless-script
/// character alone; or, starting at a word character of another script, a run of word
/// characters (any script), continued across a joiner followed by a word character that is
/// not spaceless. Returns the words (as slices of `folded`), their lengths in characters,
/// and how many are single spaceless-script characters.
fn quality_words<'a>(folded: &'a str, t: &[u8]) -> (Vec<&'a str>, Vec<u64>, u64) {
    let n = folded.len();
    let mut words = Vec::with_capacity(n / 5 + 1);
    let mut lengths = Vec::with_capacity(n / 5 + 1);
    let mut spaceless = 0u64;
    let mut pos = 0;
    while pos < n {
        let (c, w) = char_at(folded, pos);
        let f = t[c as usize];
        if f & SPACELESS != 0 {
            words.push(&folded[pos..pos + w]);
            lengths.push(1);
            spaceless += 1;
            pos += w;
            continue;
        }
        if f & QUALITY_WORD == 0 {
            pos += w;
            continue;
        }
        let start = pos;
        let mut length = 0u64;
        loop {
            while pos < n {
                let (c, w) = char_at(folded, pos);
                if t[c as usize] & QUALITY_WORD == 0 {
                    break;
                }
                pos += w;
                length += 1;
            }
            if pos < n {
                let (c, w) = char_at(folded, pos);
                if is_joiner(c) && pos + w < n {
                    let (next, _) = char_at(folded, pos + w);
                    let f = t[next as usize];
                    if f & QUALITY_WORD != 0 && f & SPACELESS == 0 {
                        pos += w;
                        length += 1;
                        continue;
                    }
                }
            }
            break;
        }
        words.push(&folded[start..pos]);
        lengths.push(length);
    }
    (words, lengths, spaceless)
}

/// Characters per class, leaving out layout runs (3+ copies of one [^\w\s] character),
/// and the number of characters.
fn class_counts(text: &str, t: &[u8]) -> ([u64; CLASSES], u64) {
    let mut counts = [0u64; CLASSES];
    let mut chars = 0u64;
    let mut run: Option<(char, u64)> = None;
    let flush = |c: char, k: u64, counts: &mut [u64; CLASSES]| {
        let f = t[c as usize];
        if !(k >= 3 && f & LAYOUT != 0) {
            counts[(f >> CLASS_SHIFT) as usize] += k;
        }
    };
    for c in text.chars() {
        chars += 1;
        run = match run {
            Some((r, k)) if r == c => Some((r, k + 1)),
            Some((r, k)) => {
                flush(r, k, &mut counts);
                Some((c, 1))
            }
            None => Some((c, 1)),
        };
    }
    if let Some((r, k)) = run {
        flush(r, k, &mut counts);
    }
    (counts, chars)
}

/// `s.strip()` with Python's notion of whitespace.
fn py_strip<'a>(s: &'a str, t: &[u8]) -> &'a str {
    s.trim_matches(|c: char| t[c as usize] & SPACE != 0)
}

/// Characters in second and later copies of blocks of >= `short` characters / `total`.
fn duplicate_block_fraction<'a>(
    blocks: impl Iterator<Item = &'a str>,
    total: u64,
    short: u64,
    t: &[u8],
) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let mut counts: FxHashMap<&str, u64> = FxHashMap::default();
    let mut n_blocks = 0usize;
    for block in blocks {
        n_blocks += 1;
        *counts.entry(py_strip(block, t)).or_insert(0) += 1;
    }
    if counts.len() == n_blocks {
        return 0.0;
    }
    let mut repeated = 0u64;
    for (block, k) in counts {
        if k > 1 {
            let length = block.chars().count() as u64;
            if length >= short {
                repeated += length * (k - 1);
            }
        }
    }
    (repeated as f64 / total as f64).min(1.0)
}

/// The n-gram hashes of quality.py, extended one word at a time.
struct NgramHashes<'a> {
    ids: &'a [u64],
    hashes: Vec<u64>,
    hashed: usize,
}

impl<'a> NgramHashes<'a> {
    fn new(ids: &'a [u64]) -> Self {
        NgramHashes { ids, hashes: vec![HASH_SEED; ids.len()], hashed: 0 }
    }

    fn of(&mut self, n: usize) -> &[u64] {
        if n < self.hashed {
            self.hashes = vec![HASH_SEED; self.ids.len()];
            self.hashed = 0;
        }
        while self.hashed < n {
            let m = self.ids.len() - self.hashed;
            let next = &self.ids[self.hashed..self.hashed + m];
            self.hashes.truncate(m);
            for (h, &id) in self.hashes.iter_mut().zip(next) {
                *h = h.wrapping_mul(HASH_MULT).wrapping_add(id);
            }
            self.hashed += 1;
        }
        &self.hashes
    }
}

/// (top n-gram fraction, whether any n-gram occurs twice): the most frequent n-gram is,
/// among those with the highest count, the one with the smallest hash, measured at its
/// first occurrence.
fn top_ngram_fraction(hashes: &[u64], n: usize, prefix: &[u64], total: u64) -> (f64, bool) {
    let mut ordered = hashes.to_vec();
    ordered.sort_unstable();
    let (mut best_hash, mut best_count) = (0u64, 0u64);
    let mut i = 0;
    while i < ordered.len() {
        let mut j = i + 1;
        while j < ordered.len() && ordered[j] == ordered[i] {
            j += 1;
        }
        let count = (j - i) as u64;
        if count > best_count {
            best_count = count;
            best_hash = ordered[i];
        }
        i = j;
    }
    if best_count < 2 {
        return (0.0, false);
    }
    let start = hashes.iter().position(|&h| h == best_hash).expect("the hash occurs");
    let chars = prefix[start + n] - prefix[start];
    (((chars * best_count) as f64 / total as f64).min(1.0), true)
}

/// Characters of the words inside an n-gram that occurs more than once / `total`, or None
/// when no n-gram repeats.
fn duplicate_ngram_fraction(hashes: &[u64], n: usize, lengths: &[u64], total: u64) -> Option<f64> {
    let mut order: Vec<(u64, u32)> = hashes.iter().enumerate().map(|(i, &h)| (h, i as u32)).collect();
    order.sort_unstable();
    let mut edges = vec![0i64; lengths.len() + 1];
    let mut any = false;
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && order[j].0 == order[i].0 {
            j += 1;
        }
        if j - i > 1 {
            any = true;
            for &(_, start) in &order[i..j] {
                edges[start as usize] += 1;
                edges[start as usize + n] -= 1;
            }
        }
        i = j;
    }
    if !any {
        return None;
    }
    let mut depth = 0i64;
    let mut covered = 0u64;
    for (edge, &length) in edges.iter().zip(lengths) {
        depth += edge;
        if depth > 0 {
            covered += length;
        }
    }
    Some((covered as f64 / total as f64).min(1.0))
}

/// The raw measures behind quality.py's signals:
/// (n_words, total word characters, spaceless words, class counts [ignored, letter, digit,
/// punctuation, symbol], characters, duplicate line fraction, duplicate paragraph fraction,
/// top n-gram fractions for `top_ns`, duplicate n-gram fractions for `dup_ns`).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn quality_measures(
    text: &str,
    folded: &str,
    top_ns: Vec<usize>,
    dup_ns: Vec<usize>,
    short_block_chars: u64,
) -> PyResult<(u64, u64, u64, [u64; CLASSES], u64, f64, f64, Vec<f64>, Vec<f64>)> {
    let t = table()?;
    if top_ns.iter().chain(&dup_ns).any(|&n| n == 0) {
        return Err(PyValueError::new_err("n-gram sizes must be positive"));
    }
    let (words, lengths, spaceless) = quality_words(folded, t);
    let total: u64 = lengths.iter().sum();
    let (counts, n_chars) = class_counts(text, t);
    let lines = duplicate_block_fraction(text.split('\n'), n_chars, short_block_chars, t);
    let paragraphs = duplicate_block_fraction(text.split("\n\n"), n_chars, short_block_chars, t);

    let mut vocabulary: FxHashMap<&str, u64> = FxHashMap::default();
    let ids: Vec<u64> = words
        .iter()
        .map(|w| {
            let next = vocabulary.len() as u64;
            *vocabulary.entry(w).or_insert(next)
        })
        .collect();
    let mut prefix = Vec::with_capacity(lengths.len() + 1);
    prefix.push(0u64);
    let mut running = 0u64;
    for &length in &lengths {
        running += length;
        prefix.push(running);
    }
    let n_ids = ids.len();
    // Shortest n-gram length known to have no repeat: longer ones cannot repeat either.
    let mut no_repeat_from = if total > 0 { n_ids + 1 } else { 0 };
    let mut hashes = NgramHashes::new(&ids);
    let mut top = Vec::with_capacity(top_ns.len());
    for &n in &top_ns {
        let mut value = 0.0;
        if n < no_repeat_from {
            let (v, repeats) = top_ngram_fraction(hashes.of(n), n, &prefix, total);
            value = v;
            if !repeats {
                no_repeat_from = n;
            }
        }
        top.push(value);
    }
    let mut dup = Vec::with_capacity(dup_ns.len());
    for &n in &dup_ns {
        let mut value = 0.0;
        if n < no_repeat_from {
            match duplicate_ngram_fraction(hashes.of(n), n, &lengths, total) {
                Some(v) => value = v,
                None => no_repeat_from = n,
            }
        }
        dup.push(value);
    }
    Ok((n_ids as u64, total, spaceless, counts, n_chars, lines, paragraphs, top, dup))
}

/// fingerprints.py's shingles of the case-folded text (word n-grams joined by one space;
/// a text of at most n words is one shingle, "" when it has none), each hashed as rensa
/// hashes a str token: FxHasher over its UTF-8 bytes. Returned as little-endian u64s.
#[pyfunction]
fn shingle_hashes<'py>(py: Python<'py>, folded: &str, n: usize) -> PyResult<Bound<'py, PyBytes>> {
    let t = table()?;
    if n == 0 {
        return Err(PyValueError::new_err("a shingle needs at least one word"));
    }
    let mut words: Vec<&str> = Vec::with_capacity(folded.len() / 5 + 1);
    let bytes = folded.as_bytes();
    let mut pos = 0;
    while pos < bytes.len() {
        let (c, w) = char_at(folded, pos);
        if t[c as usize] & SHINGLE_WORD == 0 {
            pos += w;
            continue;
        }
        let start = pos;
        pos += w;
        while pos < bytes.len() {
            let (c, w) = char_at(folded, pos);
            if t[c as usize] & SHINGLE_WORD == 0 {
                break;
            }
            pos += w;
        }
        words.push(&folded[start..pos]);
    }
    let mut buffer: Vec<u8> = Vec::with_capacity(256);
    let mut hash = |parts: &[&str]| {
        buffer.clear();
        for (k, part) in parts.iter().enumerate() {
            if k > 0 {
                buffer.push(b' ');
            }
            buffer.extend_from_slice(part.as_bytes());
        }
        let mut hasher = FxHasher::default();
        hasher.write(&buffer);
        hasher.finish()
    };
    let mut out: Vec<u8>;
    if words.len() <= n {
        out = hash(&words).to_le_bytes().to_vec();
    } else {
        out = Vec::with_capacity((words.len() - n + 1) * 8);
        for window in words.windows(n) {
            out.extend_from_slice(&hash(window).to_le_bytes());
        }
    }
    Ok(PyBytes::new(py, &out))
}

#[pymodule]
fn tt_textcore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_char_table, m)?)?;
    m.add_function(wrap_pyfunction!(quality_measures, m)?)?;
    m.add_function(wrap_pyfunction!(shingle_hashes, m)?)?;
    Ok(())
}
