//! The per-character look-ups of `services/preprocess/pii.py`'s `_Text`, in one pass.
//!
//! Most PII detectors need digits close together, and their patterns open with a digit,
//! so `pii.py` tries its regular expressions only where a run of digits starts (and skips
//! a detector when no `count` digits lie within `width` characters). This module finds
//! the decimal digits (which characters are digits comes from a table Python builds with
//! its own `re`, so `\d` means the same on both sides) and answers those questions, plus
//! which groups of two-character ASCII needles occur in the text. Positions are code
//! point indices, as in a Python `str`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

const CODE_POINTS: usize = 0x11_0000;
/// Pairs of ASCII characters, `first * 128 + second`.
const ASCII_PAIRS: usize = 128 * 128;

/// The digits of one text and what the detectors ask about them.
#[pyclass(frozen, module = "tt_textcore")]
pub struct DigitIndex {
    /// Code point positions of the decimal digits, ascending.
    digits: Vec<u32>,
    /// Per digit: whether it starts a run (the character before it is not a digit).
    run_start: Vec<bool>,
    /// Per digit: whether it is an ASCII "0".
    zero: Vec<bool>,
    /// Where two ASCII capitals stand right before two digits ("DE89"), ascending.
    iban: Vec<u32>,
    /// Positions of ASCII spaces, as a bit set.
    spaces: Vec<u64>,
    /// Bit g is set when a pair of group g of the caller's pair table occurs.
    groups: u64,
}

impl DigitIndex {
    fn is_space(&self, pos: u32) -> bool {
        let pos = pos as usize;
        self.spaces
            .get(pos / 64)
            .is_some_and(|word| word >> (pos % 64) & 1 == 1)
    }

    /// The narrowest span (last minus first position) of `count` consecutive digits.
    fn narrowest(&self, count: usize) -> Option<u32> {
        if count == 0 || self.digits.len() < count {
            return None;
        }
        self.digits
            .windows(count)
            .map(|w| w[count - 1] - w[0])
            .min()
    }
}

#[pymethods]
impl DigitIndex {
    /// The positions of the decimal digits, ascending.
    fn digits(&self) -> Vec<u32> {
        self.digits.clone()
    }

    /// The pair groups that occur, as a bit mask (see `digit_index`).
    #[getter]
    fn groups(&self) -> u64 {
        self.groups
    }

    /// Where runs of digits start that have `count` digits (counting on past the run)
    /// within their first `width` characters, ascending.
    #[pyo3(signature = (count = 1, width = 1))]
    fn run_starts(&self, count: usize, width: u32) -> Vec<u32> {
        if count == 0 || self.digits.len() < count {
            return Vec::new();
        }
        let n = self.digits.len() - count + 1;
        (0..n)
            .filter(|&i| {
                self.run_start[i]
                    && (count == 1 || self.digits[i + count - 1] - self.digits[i] < width)
            })
            .map(|i| self.digits[i])
            .collect()
    }

    /// Where runs of digits start with an ASCII "0", ascending.
    fn zero_run_starts(&self) -> Vec<u32> {
        (0..self.digits.len())
            .filter(|&i| self.run_start[i] && self.zero[i])
            .map(|i| self.digits[i])
            .collect()
    }

    /// Where two ASCII capitals stand right before two digits, ascending.
    fn iban_starts(&self) -> Vec<u32> {
        self.iban.clone()
    }

    /// Where a NINO can start: two characters before six digits in a row, or three before
    /// three pairs of digits separated by single spaces; ascending and distinct.
    fn nino_starts(&self) -> Vec<u32> {
        let d = &self.digits;
        let mut starts = Vec::new();
        if d.len() < 6 {
            return starts;
        }
        for i in 0..d.len() - 5 {
            let first = d[i];
            match d[i + 5] - first {
                5 if first >= 2 => starts.push(first - 2),
                7 if first >= 3 && self.is_space(first + 2) && self.is_space(first + 5) => {
                    starts.push(first - 3)
                }
                _ => {}
            }
        }
        starts.sort_unstable();
        starts.dedup();
        starts
    }

    /// Whether some `width` consecutive characters hold `count` or more digits.
    fn digits_within(&self, count: usize, width: u32) -> bool {
        self.narrowest(count).is_some_and(|span| span < width)
    }
}

/// Index `text`: `digit_table` has one byte per code point (non-zero for a decimal digit),
/// `pair_groups` one little-endian u64 per pair of ASCII characters (`first * 128 +
/// second`), the bit mask of the groups that pair belongs to.
#[pyfunction]
pub fn digit_index(text: &str, digit_table: &[u8], pair_groups: &[u8]) -> PyResult<DigitIndex> {
    if digit_table.len() != CODE_POINTS {
        return Err(PyValueError::new_err(format!(
            "the digit table has {} entries, not {CODE_POINTS}",
            digit_table.len()
        )));
    }
    if pair_groups.len() != ASCII_PAIRS * 8 {
        return Err(PyValueError::new_err(format!(
            "the pair table has {} bytes, not {}",
            pair_groups.len(),
            ASCII_PAIRS * 8
        )));
    }
    let group_of = |pair: usize| {
        u64::from_le_bytes(
            pair_groups[pair * 8..pair * 8 + 8]
                .try_into()
                .expect("8 bytes"),
        )
    };
    let mut index = DigitIndex {
        digits: Vec::new(),
        run_start: Vec::new(),
        zero: Vec::new(),
        iban: Vec::new(),
        spaces: vec![0; text.len() / 64 + 1], // a UTF-8 length bounds the code points
        groups: 0,
    };
    // The three characters before the current one (u32::MAX: none), nearest first.
    let (mut c1, mut c2, mut c3) = (u32::MAX, u32::MAX, u32::MAX);
    let capital = |c: u32| c.wrapping_sub(65) < 26;
    for (pos, ch) in text.chars().enumerate() {
        let pos = pos as u32;
        let c = ch as u32;
        let digit = if c < 128 {
            if c1 < 128 {
                index.groups |= group_of((c1 as usize) << 7 | c as usize);
            }
            if c == 32 {
                index.spaces[pos as usize / 64] |= 1 << (pos % 64);
            }
            c.wrapping_sub(48) < 10
        } else {
            digit_table[c as usize] != 0
        };
        if digit {
            let starts_run = index.digits.last().is_none_or(|&last| last + 1 != pos);
            if !starts_run && pos >= 3 && capital(c2) && capital(c3) {
                index.iban.push(pos - 3);
            }
            index.digits.push(pos);
            index.run_start.push(starts_run);
            index.zero.push(c == 48);
        }
        (c3, c2, c1) = (c2, c1, c);
    }
    Ok(index)
}
