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
/// Rows of the pair table: one per ASCII character, and a zero row for "not ASCII".
const PAIR_ROWS: usize = 129;
const NOT_ASCII: u32 = 128;

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
    /// Per digit: whether an ASCII space follows it.
    space_after: Vec<bool>,
    /// Bit g is set when a pair of group g of the caller's pair table occurs.
    groups: u32,
}

impl DigitIndex {
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
    fn groups(&self) -> u32 {
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
                // "12 34 56": with spaces at first + 2 and first + 5, the six digits
                // are the other six places.
                7 if first >= 3
                    && d[i + 1] == first + 1
                    && self.space_after[i + 1]
                    && d[i + 3] == first + 4
                    && self.space_after[i + 3] =>
                {
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
/// `pair_groups` one little-endian u32 per pair of characters (`first * 128 + second`, for
/// `first` an ASCII character or 128 for "not ASCII", whose row is zero), the bit mask of
/// the groups that pair belongs to.
#[pyfunction]
pub fn digit_index(text: &str, digit_table: &[u8], pair_groups: &[u8]) -> PyResult<DigitIndex> {
    if digit_table.len() != CODE_POINTS {
        return Err(PyValueError::new_err(format!(
            "the digit table has {} entries, not {CODE_POINTS}",
            digit_table.len()
        )));
    }
    if pair_groups.len() != PAIR_ROWS * 128 * 4 {
        return Err(PyValueError::new_err(format!(
            "the pair table has {} bytes, not {}",
            pair_groups.len(),
            PAIR_ROWS * 128 * 4
        )));
    }
    let group_of = |pair: usize| {
        u32::from_le_bytes(
            pair_groups[pair * 4..pair * 4 + 4]
                .try_into()
                .expect("4 bytes"),
        )
    };
    let mut index = DigitIndex {
        digits: Vec::new(),
        run_start: Vec::new(),
        zero: Vec::new(),
        space_after: Vec::new(),
        iban: Vec::new(),
        groups: 0,
    };
    let bytes = text.as_bytes();
    let mut groups = 0u32;
    let mut prev = NOT_ASCII; // the character before, if ASCII
    let mut prev_digit = false;
    let mut capitals = 0u32; // bit k: the character k + 1 back is an ASCII capital
    let (mut i, mut pos) = (0usize, 0u32);
    while i < bytes.len() {
        let b = bytes[i];
        let (c, digit) = if b < 0x80 {
            i += 1;
            groups |= group_of((prev << 7 | b as u32) as usize);
            (b as u32, b.wrapping_sub(b'0') < 10)
        } else {
            let ch = text[i..].chars().next().expect("a char boundary");
            i += ch.len_utf8();
            (NOT_ASCII, digit_table[ch as usize] != 0)
        };
        if digit {
            let starts_run = !prev_digit;
            if !starts_run && capitals & 0b110 == 0b110 {
                index.iban.push(pos - 3);
            }
            index.digits.push(pos);
            index.run_start.push(starts_run);
            index.zero.push(c == u32::from(b'0'));
            index.space_after.push(false);
        } else if prev_digit && c == u32::from(b' ') {
            *index.space_after.last_mut().expect("a digit before") = true;
        }
        prev_digit = digit;
        capitals = (capitals << 1 | u32::from(c.wrapping_sub(65) < 26)) & 0b111;
        prev = c;
        pos += 1;
    }
    index.groups = groups;
    Ok(index)
}
