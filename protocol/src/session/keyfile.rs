//! The text of a role key file: the one format the simulator writes and the programmer
//! reads and writes (SECURITY.md, "Key lifecycle").
//!
//! ```text
//! # thecal role key: keep it secret. Whoever holds it acts as this role on this pump.
//! pump = "SIM000001"
//! role = "clinician"
//! epoch = 1
//! key = "<64 hex digits>"
//! ```
//!
//! Four fields, each once, in any order; blank lines and `#` comments (whole lines, or
//! after a value) are ignored. Strings are quoted (`"…"` or `'…'`, no escapes), the
//! epoch is a decimal number of 1 or more, the role one of [`Role::KEYED`], the key
//! exactly 64 hex digits (either case). It is a subset of TOML, so older files (and a
//! TOML tool) read the same.
//!
//! [`render`] writes into any [`core::fmt::Write`]; [`parse`] borrows the serial number
//! from the text and decodes the key into a [`Secret`]. A [`ParseError`] says on which
//! line and why, never what the line held: the line may be the key. Reading and writing
//! the file (its mode 0600) is the caller's I/O.

use core::fmt;

use super::{Secret, KEY_LEN};
use crate::message::Role;

/// The first line of every key file.
pub const HEADER: &str =
    "# thecal role key: keep it secret. Whoever holds it acts as this role on this pump.";

/// What a key file holds.
#[derive(Debug)]
pub struct Fields<'a> {
    /// Serial number of the pump the key is for.
    pub pump: &'a str,
    /// The role (one of [`Role::KEYED`]).
    pub role: Role,
    /// The key's epoch (1 or more).
    pub epoch: u32,
    /// The key (`Debug` never shows it; wiped on drop).
    pub key: Secret,
}

/// Whether `serial` can be a key file's `pump` field and name its file
/// (`SERIAL.ROLE.key`): not empty, no leading dot, no path separator, no quote (strings
/// have no escapes) and no control character. The serial comes from the pump's plain
/// `Identify`; one that fails this must not name a file.
pub fn names_a_file(serial: &str) -> bool {
    !serial.is_empty()
        && !serial.starts_with('.')
        && !serial
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '"' | '\'') || c.is_control())
}

/// Writes the text of a key file: [`HEADER`], then the four fields, one a line.
pub fn render(
    out: &mut impl fmt::Write,
    pump: &str,
    role: Role,
    epoch: u32,
    key: &Secret,
) -> fmt::Result {
    writeln!(out, "{HEADER}")?;
    writeln!(out, "pump = \"{pump}\"")?;
    writeln!(out, "role = \"{}\"", role.name())?;
    writeln!(out, "epoch = {epoch}")?;
    out.write_str("key = \"")?;
    for b in key.as_bytes() {
        write!(out, "{b:02x}")?;
    }
    out.write_str("\"\n")
}

/// Why a text is not a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// A line that is neither blank, a comment nor `name = value`.
    NotAField,
    /// A field name other than `pump`, `role`, `epoch` and `key`.
    UnknownField,
    /// A field given twice.
    Duplicate,
    /// A string value without its quotes, or with text after the closing quote.
    NotAString,
    /// The epoch is not a decimal number (or is too large).
    NotANumber,
    /// A field is missing (the error has no line).
    Missing(&'static str),
    /// The role is not one of the keyed roles.
    Role,
    /// The pump's serial number is empty.
    EmptyPump,
    /// The epoch is 0.
    ZeroEpoch,
    /// The key is not exactly 64 hex digits.
    Key,
}

impl Reason {
    /// Whether the text is not laid out as a key file at all (as opposed to a key file
    /// with a wrong value).
    pub const fn is_layout(self) -> bool {
        matches!(
            self,
            Reason::NotAField
                | Reason::UnknownField
                | Reason::Duplicate
                | Reason::NotAString
                | Reason::NotANumber
                | Reason::Missing(_)
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotAField => f.write_str("not a `name = value` line"),
            Reason::UnknownField => f.write_str("unknown field"),
            Reason::Duplicate => f.write_str("field given twice"),
            Reason::NotAString => f.write_str("the value must be a quoted string"),
            Reason::NotANumber => f.write_str("the value must be a number"),
            Reason::Missing(name) => write!(f, "the field {name} is missing"),
            Reason::Role => f.write_str("role must be \"patient\", \"clinician\" or \"service\""),
            Reason::EmptyPump => f.write_str("pump (the serial number) is empty"),
            Reason::ZeroEpoch => f.write_str("epoch must be 1 or more"),
            Reason::Key => f.write_str("key must be exactly 64 hex digits"),
        }
    }
}

/// Where and why a text is not a key file. Never holds any of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// The line (from 1), or `None` for the file as a whole (a missing field).
    pub line: Option<u32>,
    /// Why.
    pub reason: Reason,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

impl core::error::Error for ParseError {}

/// Parses the text of a key file.
pub fn parse(text: &str) -> Result<Fields<'_>, ParseError> {
    let mut pump = None;
    let mut role = None;
    let mut epoch = None;
    let mut key = None;
    for (n, raw) in (1u32..).zip(text.lines()) {
        let at = |reason| ParseError {
            line: Some(n),
            reason,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').ok_or(at(Reason::NotAField))?;
        let value = value.trim();
        let slot_taken = match name.trim() {
            "pump" => set(&mut pump, string(value).ok_or(at(Reason::NotAString))?, n),
            "role" => set(&mut role, string(value).ok_or(at(Reason::NotAString))?, n),
            "epoch" => set(&mut epoch, number(value).ok_or(at(Reason::NotANumber))?, n),
            "key" => set(&mut key, string(value).ok_or(at(Reason::NotAString))?, n),
            _ => return Err(at(Reason::UnknownField)),
        };
        if slot_taken {
            return Err(at(Reason::Duplicate));
        }
    }
    let missing = |name| ParseError {
        line: None,
        reason: Reason::Missing(name),
    };
    let (pump, pump_line) = pump.ok_or(missing("pump"))?;
    let (role, role_line) = role.ok_or(missing("role"))?;
    let (epoch, epoch_line) = epoch.ok_or(missing("epoch"))?;
    let (key, key_line) = key.ok_or(missing("key"))?;
    let at = |line, reason| ParseError {
        line: Some(line),
        reason,
    };
    let role = Role::from_name(role)
        .filter(|r| Role::KEYED.contains(r))
        .ok_or(at(role_line, Reason::Role))?;
    if pump.is_empty() {
        return Err(at(pump_line, Reason::EmptyPump));
    }
    if epoch == 0 {
        return Err(at(epoch_line, Reason::ZeroEpoch));
    }
    let key = hex_key(key).ok_or(at(key_line, Reason::Key))?;
    Ok(Fields {
        pump,
        role,
        epoch,
        key,
    })
}

/// Fills an empty `slot` with `value` and the line it is on; `true` if it was full.
fn set<T>(slot: &mut Option<(T, u32)>, value: T, line: u32) -> bool {
    if slot.is_some() {
        return true;
    }
    *slot = Some((value, line));
    false
}

/// A quoted string without escapes, then nothing but an optional comment.
fn string(value: &str) -> Option<&str> {
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = value.get(1..)?;
    let (inner, after) = rest.split_once(quote)?;
    if inner.contains('\\') || !is_end(after) {
        return None;
    }
    Some(inner)
}

/// A decimal `u32`, then nothing but an optional comment.
fn number(value: &str) -> Option<u32> {
    let end = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, after) = value.split_at_checked(end)?;
    if digits.is_empty() || !is_end(after) {
        return None;
    }
    digits.parse().ok()
}

fn is_end(after: &str) -> bool {
    let after = after.trim_start();
    after.is_empty() || after.starts_with('#')
}

fn hex_key(text: &str) -> Option<Secret> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * KEY_LEN {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    let mut ok = true;
    for (out, pair) in key.iter_mut().zip(bytes.chunks_exact(2)) {
        match (pair.first().and_then(hex), pair.get(1).and_then(hex)) {
            (Some(hi), Some(lo)) => *out = hi << 4 | lo,
            _ => ok = false,
        }
    }
    let secret = Secret::new(key);
    zeroize::Zeroize::zeroize(&mut key);
    ok.then_some(secret)
}

fn hex(digit: &u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use core::fmt::Write as _;

    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn rendered(pump: &str, role: Role, epoch: u32, key: &Secret) -> heapless::String<256> {
        let mut out = heapless::String::new();
        render(&mut out, pump, role, epoch, key).unwrap();
        out
    }

    #[test]
    fn the_rendered_text_is_byte_exact_and_parses_back() {
        let key = Secret::new(core::array::from_fn(|i| i as u8));
        let text = rendered("SIM000001", Role::Clinician, 1, &key);
        let mut expected = heapless::String::<256>::new();
        write!(
            expected,
            "{HEADER}\npump = \"SIM000001\"\nrole = \"clinician\"\nepoch = 1\nkey = \"{KEY}\"\n"
        )
        .unwrap();
        assert_eq!(text, expected);
        let f = parse(&text).unwrap();
        assert_eq!((f.pump, f.role, f.epoch), ("SIM000001", Role::Clinician, 1));
        assert!(f.key.ct_eq(&key));
    }

    #[test]
    fn order_comments_quotes_and_case_are_free() {
        let text = "\n  key = '000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F'\n\
                    # a note\nepoch=7 # rotated\nrole = \"service\"   \npump = \"P\" # x\n";
        let f = parse(text).unwrap();
        assert_eq!((f.pump, f.role, f.epoch), ("P", Role::Service, 7));
        assert_eq!(f.key.as_bytes(), &core::array::from_fn(|i| i as u8));
    }

    #[test]
    fn errors_name_the_line_and_the_reason() {
        let ok = |line: &str| {
            let mut t = heapless::String::<512>::new();
            write!(t, "pump = \"S\"\nrole = \"patient\"\nepoch = 2\n{line}\n").unwrap();
            t
        };
        let err = |text: &str| parse(text).unwrap_err();
        let key_line = |k: &str| {
            let mut l = heapless::String::<128>::new();
            write!(l, "key = \"{k}\"").unwrap();
            l
        };
        assert!(parse(&ok(&key_line(KEY))).is_ok());
        let cases: [(&str, Option<u32>, Reason); 9] = [
            ("key = abab", Some(4), Reason::NotAString),
            ("key = \"ab\" tail", Some(4), Reason::NotAString),
            ("just words", Some(4), Reason::NotAField),
            ("extra = 1", Some(4), Reason::UnknownField),
            ("epoch = 3", Some(4), Reason::Duplicate),
            ("key = \"abcd\"", Some(4), Reason::Key),
            ("key = \"a\\b\"", Some(4), Reason::NotAString),
            ("", None, Reason::Missing("key")),
            ("# only a comment", None, Reason::Missing("key")),
        ];
        for (line, at, reason) in cases {
            assert_eq!(err(&ok(line)), ParseError { line: at, reason }, "{line}");
        }
        let bad_hex = ok(&key_line(&KEY.replace("1f", "zz")));
        assert_eq!(err(&bad_hex).reason, Reason::Key);
        let doctor = ok(&key_line(KEY)).replace("patient", "doctor");
        assert_eq!(
            err(&doctor),
            ParseError {
                line: Some(2),
                reason: Reason::Role
            }
        );
        let emergency = ok(&key_line(KEY)).replace("patient", "emergency");
        assert_eq!(err(&emergency).reason, Reason::Role);
        let empty = ok(&key_line(KEY)).replace("\"S\"", "\"\"");
        assert_eq!(
            err(&empty),
            ParseError {
                line: Some(1),
                reason: Reason::EmptyPump
            }
        );
        let zero = ok(&key_line(KEY)).replace("epoch = 2", "epoch = 0");
        assert_eq!(
            err(&zero),
            ParseError {
                line: Some(3),
                reason: Reason::ZeroEpoch
            }
        );
        let big = ok(&key_line(KEY)).replace("epoch = 2", "epoch = 99999999999");
        assert_eq!(err(&big).reason, Reason::NotANumber);
        assert_eq!(err("").reason, Reason::Missing("pump"));
        assert!(Reason::Missing("key").is_layout() && !Reason::Key.is_layout());
    }
}
