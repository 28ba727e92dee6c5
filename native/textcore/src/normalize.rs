//! The character and whitespace steps of `services/preprocess/normalize.py`'s `normalize`,
//! each one pass over the text. Python keeps the definition (and runs Unicode NFC between
//! the two steps); the unit tests compare these with it.
//!
//! Both functions return the very `str` they were given when it needs no change, so the
//! common case costs one read of the text and no new object.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// What `normalize.py`'s translate table does with a code point of the BMP (no character
/// above it is in the table; a unit test checks that every space separator is in the BMP).
const KEEP: u8 = 0;
const DELETE: u8 = 1;
const NEWLINE: u8 = 2;
const SPACE: u8 = 3;
const BMP: usize = 0x1_0000;

#[inline(always)]
fn action(table: &[u8], c: char) -> u8 {
    table.get(c as usize).copied().unwrap_or(KEEP)
}

/// Step 1 and 2 of `normalize`: "\r\n" and a lone "\r" become "\n", then every character
/// goes through the translate table (`table`: one action byte per BMP code point).
#[pyfunction]
pub fn normalize_characters<'py>(
    text: &Bound<'py, PyString>,
    table: &[u8],
) -> PyResult<Bound<'py, PyString>> {
    if table.len() != BMP {
        return Err(PyValueError::new_err(format!(
            "the translate table has {} entries, not {BMP}",
            table.len()
        )));
    }
    let s = text.to_str()?;
    let clean = |c: char| c != '\r' && action(table, c) == KEEP;
    if s.chars().all(clean) {
        return Ok(text.clone());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let c = if c == '\r' {
            if chars.peek() == Some(&'\n') {
                chars.next();
            }
            '\n'
        } else {
            c
        };
        match action(table, c) {
            DELETE => {}
            NEWLINE => out.push('\n'),
            SPACE => out.push(' '),
            _ => out.push(c),
        }
    }
    Ok(PyString::new(text.py(), &out))
}

/// Steps 4 to 6 of `normalize`: a run of spaces before a line break or the end goes; a run
/// of two or more inside a line (after a character other than a line break) becomes one
/// space, while indentation stays; three or more line breaks (counting lines that held
/// only spaces, which are empty by then) become two; leading line breaks and trailing
/// spaces and line breaks go.
#[pyfunction]
pub fn normalize_spaces<'py>(text: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyString>> {
    let s = text.to_str()?;
    let b = s.as_bytes();
    // A run of two spaces changes only after a character other than a space or line break.
    let changes = b.first() == Some(&b'\n')
        || matches!(b.last(), Some(b' ' | b'\n'))
        || b.windows(2).any(|w| w == b" \n")
        || b.windows(3)
            .any(|w| w == b"\n\n\n" || (w[1..] == *b"  " && !matches!(w[0], b' ' | b'\n')));
    if !changes {
        return Ok(text.clone());
    }
    // Spaces and line breaks wait until the next other character decides their fate; a
    // pending run is always line breaks then spaces (a line break drops the spaces before it).
    let mut out = String::with_capacity(s.len());
    let mut spaces = 0usize;
    let mut newlines = 0usize;
    let mut after_newline = true; // the run of spaces opens a line (or the text): indentation
    let mut started = false; // something other than a line break was written
    for c in s.chars() {
        match c {
            ' ' => spaces += 1,
            '\n' => {
                spaces = 0;
                newlines += 1;
                after_newline = true;
            }
            _ => {
                if started {
                    out.extend(std::iter::repeat_n('\n', newlines.min(2)));
                }
                newlines = 0;
                if spaces >= 2 && !after_newline {
                    out.push(' ');
                } else {
                    out.extend(std::iter::repeat_n(' ', spaces));
                }
                spaces = 0;
                after_newline = false;
                started = true;
                out.push(c);
            }
        }
    }
    Ok(PyString::new(text.py(), &out))
}
