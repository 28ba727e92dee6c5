//! The preprocess pipeline's per-character work, for `services/preprocess`:
//!
//! * `quality_measures`: the raw counts behind the quality signals of
//!   `services/preprocess/quality.py` (words, character classes, repeated lines and
//!   paragraphs, word n-gram repetition);
//! * `shingle_hashes`: the word n-gram shingles of `services/preprocess/fingerprints.py`,
//!   hashed as `rensa` hashes a `str` token, so that rensa computes the MinHash from them;
//! * `normalize_characters`, `normalize_spaces` (normalize.rs): the per-character steps of
//!   `services/preprocess/normalize.py`;
//! * `digit_index` (pii.rs): the digits of a text and the two-character needles in it, for
//!   `services/preprocess/pii.py`.
//!
//! The Python module keeps the definitions (and a reference implementation the unit tests
//! compare with); this crate computes the same values without a Python object per word.
//! What a character *is* (a word character, a space, a symbol ...) is not decided here:
//! Python builds a table of flags for every code point from its own `re` and `unicodedata`
//! (`set_char_table`), so both sides agree on every character of the running Unicode version.

mod normalize;
mod pii;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
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

/// Per code point, its lower case as `str.lower()` gives it (`NEEDS_PYTHON`: a character
/// whose lower case is not one character, or depends on its neighbours: U+0130 and the
/// capital sigma), as Python builds the table (`services/preprocess/textcore.py`).
static LOWER: OnceLock<Box<[u32]>> = OnceLock::new();
const NEEDS_PYTHON: u32 = u32::MAX;

/// Install the lower-case table (0x110000 little-endian u32); as for `set_char_table`, a
/// different table is refused.
#[pyfunction]
fn set_lower_table(table: &[u8]) -> PyResult<()> {
    if table.len() != CODE_POINTS * 4 {
        return Err(PyValueError::new_err(format!(
            "the lower-case table has {} bytes, not {}",
            table.len(),
            CODE_POINTS * 4
        )));
    }
    let lower: Box<[u32]> = table
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    match LOWER.set(lower) {
        Err(lower) if LOWER.get() != Some(&lower) => Err(PyValueError::new_err(
            "a different lower-case table is already installed",
        )),
        _ => Ok(()),
    }
}

/// `text.lower()`, or None when a character needs Python's own rules (see `LOWER`).
fn fold_native(text: &str) -> PyResult<Option<String>> {
    if text.is_ascii() {
        return Ok(Some(text.to_ascii_lowercase()));
    }
    let lower = LOWER
        .get()
        .ok_or_else(|| PyValueError::new_err("tt_textcore.set_lower_table was not called"))?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        match lower[c as usize] {
            NEEDS_PYTHON => return Ok(None),
            l => out.push(char::from_u32(l).expect("the table holds code points")),
        }
    }
    Ok(Some(out))
}

/// `text.lower()` (`plain` is `text` as UTF-8), the case-folded text the word measures
/// read: computed here, or by Python for the few characters that need its rules.
fn folded_text(text: &Bound<'_, PyString>, plain: &str) -> PyResult<String> {
    match fold_native(plain)? {
        Some(folded) => Ok(folded),
        None => text.call_method0("lower")?.extract::<String>(),
    }
}

/// `text.lower()` as the native measures compute it (for the tests).
#[pyfunction]
fn fold(text: &Bound<'_, PyString>) -> PyResult<String> {
    folded_text(text, text.to_str()?)
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
    if text.is_ascii() {
        return class_counts_ascii(text.as_bytes(), t);
    }
    let mut counts = [0u64; CLASSES];
    let mut chars = 0u64;
    let (mut run, mut run_length) = ('\0', 0u64);
    let flush = |c: char, k: u64, counts: &mut [u64; CLASSES]| {
        let f = t[c as usize];
        if !(k >= 3 && f & LAYOUT != 0) {
            counts[(f >> CLASS_SHIFT) as usize] += k;
        }
    };
    let mut pos = 0;
    while pos < text.len() {
        let (c, w) = char_at(text, pos);
        pos += w;
        chars += 1;
        if c == run && run_length > 0 {
            run_length += 1;
        } else {
            if run_length > 0 {
                flush(run, run_length, &mut counts);
            }
            run = c;
            run_length = 1;
        }
    }
    if run_length > 0 {
        flush(run, run_length, &mut counts);
    }
    (counts, chars)
}

/// `class_counts` for ASCII text: byte runs, a 128-entry copy of the table.
fn class_counts_ascii(bytes: &[u8], t: &[u8]) -> ([u64; CLASSES], u64) {
    let mut counts = [0u64; CLASSES];
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let mut j = i + 1;
        while j < bytes.len() && bytes[j] == b {
            j += 1;
        }
        let k = (j - i) as u64;
        let f = t[b as usize];
        if !(k >= 3 && f & LAYOUT != 0) {
            counts[(f >> CLASS_SHIFT) as usize] += k;
        }
        i = j;
    }
    (counts, bytes.len() as u64)
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

/// One n-gram length's repetition: (top n-gram fraction, duplicate n-gram fraction), both 0
/// when no n-gram of that length occurs twice.
#[derive(Clone, Copy, Default)]
struct Repetition {
    top: f64,
    duplicate: f64,
}

/// quality.py's n-gram signals for every length 1..=`max_n`, level by level.
///
/// An n-gram that occurs twice starts where an (n-1)-gram occurs twice, so level n splits
/// the starts of each repeated (n-1)-gram by the word that follows them; the parts with two
/// or more starts are the repeated n-grams, and every occurrence of one is among them. Level
/// 1 counts word ids (dense, numbered by first appearance) in an array. N-grams are grouped
/// by their words; quality.py's definition groups them by their 64-bit hash, which is the
/// same unless two different n-grams of one document collide in 64 bits. The hash of an n-gram is quality.py's
/// ((SEED * M + id1) * M + id2) ... wrapping, and the top n-gram is, among those with the
/// highest count, the one with the smallest hash, measured at its first occurrence.
fn repetition(
    ids: &[u64],
    vocabulary: usize,
    lengths: &[u64],
    max_n: usize,
    wanted: impl Fn(usize) -> (bool, bool),
) -> Vec<Repetition> {
    let total: u64 = lengths.iter().sum();
    let mut out = vec![Repetition::default(); max_n + 1];
    if total == 0 || ids.is_empty() || max_n == 0 {
        return out;
    }
    let mut prefix = Vec::with_capacity(lengths.len() + 1);
    prefix.push(0u64);
    for &length in lengths {
        prefix.push(prefix.last().unwrap() + length);
    }
    // A level's repeated n-grams: their starts (ascending within a group) in one array, and
    // per group (hash, from, to) into it.
    let mut starts: Vec<u32> = Vec::with_capacity(ids.len());
    let mut groups: Vec<(u64, usize, usize)> = Vec::new();
    let mut sorted: Vec<u32> = Vec::with_capacity(ids.len());
    // The most frequent repeated n-gram (ties: the smallest hash), at its first occurrence.
    let top_fraction = |n: usize, starts: &[u32], groups: &[(u64, usize, usize)]| -> f64 {
        let (mut best_hash, mut best_count, mut best_start) = (u64::MAX, 0usize, 0u32);
        for &(hash, from, to) in groups {
            let count = to - from;
            if count > best_count || (count == best_count && hash < best_hash) {
                best_count = count;
                best_hash = hash;
                best_start = starts[from];
            }
        }
        let first = best_start as usize;
        let chars = prefix[first + n] - prefix[first];
        ((chars * best_count as u64) as f64 / total as f64).min(1.0)
    };
    let mut measure = |n: usize, starts: &[u32], groups: &[(u64, usize, usize)]| -> Repetition {
        let (want_top, want_duplicate) = wanted(n);
        if groups.is_empty() {
            return Repetition::default();
        }
        let mut result = Repetition::default();
        if want_top {
            result.top = top_fraction(n, starts, groups);
        }
        if !want_duplicate {
            return result;
        }
        // Words covered by some repeated n-gram: the union of [start, start + n).
        sorted.clear();
        sorted.extend_from_slice(starts);
        sorted.sort_unstable();
        let mut covered = 0u64;
        let (mut open, mut close) = (sorted[0] as usize, sorted[0] as usize + n);
        for &start in &sorted[1..] {
            let start = start as usize;
            if start > close {
                covered += prefix[close] - prefix[open];
                open = start;
            }
            close = start + n;
        }
        covered += prefix[close] - prefix[open];
        result.duplicate = (covered as f64 / total as f64).min(1.0);
        result
    };

    // Level 1: count the ids; the starts of each repeated id by a counting sort.
    let mut counts = vec![0u32; vocabulary];
    for &id in ids {
        counts[id as usize] += 1;
    }
    let mut fill = vec![0usize; vocabulary];
    for (id, &count) in counts.iter().enumerate() {
        if count > 1 {
            fill[id] = starts.len();
            let hash = HASH_SEED.wrapping_mul(HASH_MULT).wrapping_add(id as u64);
            groups.push((hash, starts.len(), starts.len() + count as usize));
            starts.resize(starts.len() + count as usize, 0);
        }
    }
    for (i, &id) in ids.iter().enumerate() {
        if counts[id as usize] > 1 {
            starts[fill[id as usize]] = i as u32;
            fill[id as usize] += 1;
        }
    }
    out[1] = measure(1, &starts, &groups);

    // Levels 2..: split each repeated (n-1)-gram's starts by the word that follows; the
    // parts with 2+ starts are the repeated n-grams.
    // Per following word: how often it follows this group's starts, and where its part goes
    // (vocabulary-sized, reset after each group through `touched`).
    let mut follow = vec![0u32; vocabulary];
    let mut place = vec![0usize; vocabulary];
    let mut touched: Vec<usize> = Vec::new();
    let mut next_starts: Vec<u32> = Vec::with_capacity(starts.len());
    let mut next_groups: Vec<(u64, usize, usize)> = Vec::new();
    for n in 2..=max_n {
        next_starts.clear();
        next_groups.clear();
        for &(hash, from, to) in &groups {
            let group = &starts[from..to];
            touched.clear();
            for &start in group {
                if let Some(&id) = ids.get(start as usize + n - 1) {
                    let id = id as usize;
                    if follow[id] == 0 {
                        touched.push(id);
                    }
                    follow[id] += 1;
                }
            }
            for &id in &touched {
                let count = follow[id] as usize;
                if count > 1 {
                    place[id] = next_starts.len();
                    let extended = hash.wrapping_mul(HASH_MULT).wrapping_add(id as u64);
                    next_groups.push((extended, next_starts.len(), next_starts.len() + count));
                    next_starts.resize(next_starts.len() + count, 0);
                }
            }
            for &start in group {
                if let Some(&id) = ids.get(start as usize + n - 1) {
                    let id = id as usize;
                    if follow[id] > 1 {
                        next_starts[place[id]] = start; // ascending: the group is
                        place[id] += 1;
                    }
                }
            }
            for &id in &touched {
                follow[id] = 0;
            }
        }
        out[n] = measure(n, &next_starts, &next_groups);
        if next_groups.is_empty() {
            break; // no longer n-gram repeats either
        }
        std::mem::swap(&mut starts, &mut next_starts);
        std::mem::swap(&mut groups, &mut next_groups);
    }
    out
}

/// The raw measures behind quality.py's signals:
/// (n_words, total word characters, spaceless words, class counts [ignored, letter, digit,
/// punctuation, symbol], characters, duplicate line fraction, duplicate paragraph fraction,
/// top n-gram fractions for `top_ns`, duplicate n-gram fractions for `dup_ns`).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn quality_measures(
    text: &Bound<'_, PyString>,
    top_ns: Vec<usize>,
    dup_ns: Vec<usize>,
    short_block_chars: u64,
) -> PyResult<(u64, u64, u64, [u64; CLASSES], u64, f64, f64, Vec<f64>, Vec<f64>)> {
    let t = table()?;
    if top_ns.iter().chain(&dup_ns).any(|&n| n == 0) {
        return Err(PyValueError::new_err("n-gram sizes must be positive"));
    }
    let plain = text.to_str()?;
    let folded = folded_text(text, plain)?;
    let text = plain;
    let (words, lengths, spaceless) = quality_words(&folded, t);
    let total: u64 = lengths.iter().sum();
    let (counts, n_chars) = class_counts(text, t);
    let lines = duplicate_block_fraction(text.split('\n'), n_chars, short_block_chars, t);
    let paragraphs = duplicate_block_fraction(text.split("\n\n"), n_chars, short_block_chars, t);

    let mut vocabulary: FxHashMap<&str, u64> =
        FxHashMap::with_capacity_and_hasher(words.len() / 2 + 8, Default::default());
    let ids: Vec<u64> = words
        .iter()
        .map(|w| {
            let next = vocabulary.len() as u64;
            *vocabulary.entry(w).or_insert(next)
        })
        .collect();
    let n_ids = ids.len();
    let max_n = top_ns.iter().chain(&dup_ns).copied().max().unwrap_or(0);
    let levels = repetition(&ids, vocabulary.len(), &lengths, max_n, |n| {
        (top_ns.contains(&n), dup_ns.contains(&n))
    });
    let top: Vec<f64> = top_ns.iter().map(|&n| levels[n].top).collect();
    let dup: Vec<f64> = dup_ns.iter().map(|&n| levels[n].duplicate).collect();
    Ok((n_ids as u64, total, spaceless, counts, n_chars, lines, paragraphs, top, dup))
}

/// fingerprints.py's shingles of the case-folded text (word n-grams joined by one space;
/// a text of at most n words is one shingle, "" when it has none), each hashed as rensa
/// hashes a str token: FxHasher over its UTF-8 bytes. Returned as little-endian u64s.
#[pyfunction]
fn shingle_hashes<'py>(
    py: Python<'py>,
    text: &Bound<'py, PyString>,
    n: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let t = table()?;
    let folded = folded_text(text, text.to_str()?)?;
    let folded: &str = &folded;
    if n == 0 {
        return Err(PyValueError::new_err("a shingle needs at least one word"));
    }
    let mut words: Vec<&str> = Vec::with_capacity(folded.len() / 5 + 1);
    let bytes = folded.as_bytes();
    let base = bytes.as_ptr() as usize;
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
    // A shingle whose words are separated by exactly one space in the text is a slice of
    // it; others are joined in a buffer.
    let single_gap: Vec<bool> = words
        .windows(2)
        .map(|pair| {
            let gap_start = pair[0].as_ptr() as usize + pair[0].len();
            pair[1].as_ptr() as usize == gap_start + 1 && bytes[gap_start - base] == b' '
        })
        .collect();
    let mut buffer: Vec<u8> = Vec::with_capacity(256);
    let mut hash = |parts: &[&str], joined: bool| {
        let mut hasher = FxHasher::default();
        if joined && parts.len() > 1 {
            let first = parts[0].as_ptr() as usize - base;
            let last = parts[parts.len() - 1];
            let end = last.as_ptr() as usize - base + last.len();
            hasher.write(&bytes[first..end]);
        } else {
            buffer.clear();
            for (k, part) in parts.iter().enumerate() {
                if k > 0 {
                    buffer.push(b' ');
                }
                buffer.extend_from_slice(part.as_bytes());
            }
            hasher.write(&buffer);
        }
        hasher.finish()
    };
    let out: Vec<u8> = if words.len() <= n {
        let joined = single_gap.iter().all(|&g| g);
        hash(&words, joined).to_le_bytes().to_vec()
    } else {
        // Shingle i is one slice when the n - 1 gaps after word i are single spaces.
        let mut broken = single_gap[..n - 1].iter().filter(|&&g| !g).count();
        let mut out = Vec::with_capacity((words.len() - n + 1) * 8);
        for i in 0..=words.len() - n {
            if i > 0 {
                broken -= usize::from(!single_gap[i - 1]);
                broken += usize::from(!single_gap[i + n - 2]);
            }
            out.extend_from_slice(&hash(&words[i..i + n], broken == 0).to_le_bytes());
        }
        out
    };
    Ok(PyBytes::new(py, &out))
}

/// LSH band keys of MinHash signatures: for each band, "b<index>:<hex>" of BLAKE2b-64
/// (hashlib.blake2b(digest_size=8)) over the band's values as 8-byte little-endian
/// integers. `signatures` holds the rows of a (documents x num_perm) u64 matrix.
/// `n` in decimal, written into `buffer`.
fn itoa(mut n: usize, buffer: &mut [u8; 20]) -> &str {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buffer[at..]).expect("ASCII digits")
}

#[pyfunction]
fn band_keys(signatures: Vec<Vec<u64>>, bands: usize) -> PyResult<Vec<Vec<String>>> {
    use blake2::digest::{Update, VariableOutput};
    let mut out = Vec::with_capacity(signatures.len());
    for signature in &signatures {
        if bands == 0 || signature.len() % bands != 0 {
            return Err(PyValueError::new_err(format!(
                "a signature of {} values does not split into {bands} bands",
                signature.len()
            )));
        }
        let rows = signature.len() / bands;
        let mut keys = Vec::with_capacity(bands);
        for (band, values) in signature.chunks(rows).enumerate() {
            let mut hasher = blake2::Blake2bVar::new(8).expect("8 is a valid BLAKE2b size");
            for value in values {
                hasher.update(&value.to_le_bytes());
            }
            let mut digest = [0u8; 8];
            hasher.finalize_variable(&mut digest).expect("the digest is 8 bytes");
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let mut key = String::with_capacity(24);
            key.push('b');
            key.push_str(itoa(band, &mut [0u8; 20]));
            key.push(':');
            for byte in digest {
                key.push(HEX[(byte >> 4) as usize] as char);
                key.push(HEX[(byte & 15) as usize] as char);
            }
            keys.push(key);
        }
        out.push(keys);
    }
    Ok(out)
}

#[pymodule]
fn tt_textcore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_char_table, m)?)?;
    m.add_function(wrap_pyfunction!(set_lower_table, m)?)?;
    m.add_function(wrap_pyfunction!(fold, m)?)?;
    m.add_function(wrap_pyfunction!(quality_measures, m)?)?;
    m.add_function(wrap_pyfunction!(shingle_hashes, m)?)?;
    m.add_function(wrap_pyfunction!(band_keys, m)?)?;
    m.add_function(wrap_pyfunction!(pii::digit_index, m)?)?;
    m.add_function(wrap_pyfunction!(normalize::normalize_characters, m)?)?;
    m.add_function(wrap_pyfunction!(normalize::normalize_spaces, m)?)?;
    m.add_class::<pii::DigitIndex>()?;
    Ok(())
}
