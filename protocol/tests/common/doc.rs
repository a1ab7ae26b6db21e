//! Reading docs/PROTOCOL.md for the document tests (`doc_vectors.rs`, `doc_tables.rs`,
//! `doc_schema.rs`), which check it and protocol/src/schema.txt against the code.
//!
//! The document marks what a test can check with HTML comments, invisible when rendered:
//!
//! * `<!-- vector: NAME -->` — a worked example: a ```` ```rust ```` block with the header
//!   and message, then two ```` ```hex ```` blocks: the raw frame (annotated; sections
//!   start with `# header:`, `# body:`, `# crc:`) and the wire bytes.
//! * `<!-- tags: TYPE -->` — the enum table that follows: tag, variant, fields.
//! * `<!-- fields: TYPE -->` — the struct table that follows: #, field, type, ….
//! * `<!-- limits -->` — the table of sizes.
//!
//! On a mismatch the failure message prints what the document should say.

use std::collections::BTreeMap;

use serde::Serialize;
use thecal_protocol::message;
use thecal_protocol::Drug;

use super::shape::{shape, Fields, Shape};

pub const DOC: &str = include_str!("../../../docs/PROTOCOL.md");

/// The text after `<!-- KIND: NAME -->` up to the next marker, keyed by NAME.
pub fn sections(kind: &str) -> Vec<(String, &'static str)> {
    let open = format!("<!-- {kind}:");
    let mut out = Vec::new();
    let mut rest = DOC;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let close = after.find("-->").expect("unterminated marker");
        let name = after[..close].trim().to_string();
        let body = &after[close + 3..];
        let end = body.find("<!-- ").unwrap_or(body.len());
        out.push((name, &body[..end]));
        rest = body;
    }
    out
}

/// Fenced code blocks in `text`: (info string, content).
pub fn fences(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(_)) => out.push(current.take().unwrap()),
            (Some((_, content)), None) => {
                content.push_str(line);
                content.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "unterminated code block");
    out
}

/// The rows of the first markdown table in `text`, header and separator skipped.
pub fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The `code spans` of a table cell, in order.
pub fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

pub fn parse_hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|t| u8::from_str_radix(t, 16).unwrap_or_else(|_| panic!("bad hex byte {t:?}")))
        .collect()
}

/// A raw-frame block split into its `# header:`, `# body:` and `# crc:` sections.
#[derive(Default, Debug)]
pub struct RawBlock {
    pub header: Vec<u8>,
    pub body: Vec<u8>,
    pub crc: Vec<u8>,
}

pub fn parse_raw(block: &str) -> RawBlock {
    let mut raw = RawBlock::default();
    let mut section: Option<&str> = None;
    for line in block.lines() {
        let (bytes, comment) = line.split_once('#').unwrap_or((line, ""));
        for name in ["header", "body", "crc"] {
            if comment.starts_with(&format!(" {name}:")) {
                section = Some(name);
            }
        }
        let bytes = parse_hex(bytes);
        let target = match section {
            Some("header") => &mut raw.header,
            Some("body") => &mut raw.body,
            Some("crc") => &mut raw.crc,
            _ => {
                assert!(bytes.is_empty(), "bytes before the # header: line: {line}");
                continue;
            }
        };
        target.extend(bytes);
    }
    raw
}

// ---- the code's enums, as the tag tables and schema.txt list them

/// One row of a tag table, as the code has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub tag: u32,
    pub name: String,
    /// Canonical form, see [`canonical`].
    pub fields: String,
    pub shape: Fields,
}

/// Encodes one sample per variant; checks the tags run 0, 1, 2, … in postcard's first
/// byte, and that no variant exists past the last one (a zero-filled body with the next
/// tag does not decode).
pub fn variants<T>(samples: &[T]) -> Vec<Variant>
where
    T: Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let Shape::Variant {
            index,
            name,
            fields,
        } = shape(s)
        else {
            panic!("{s:?} is not an enum")
        };
        assert_eq!(index as usize, i, "samples out of tag order at {s:?}");
        let bytes = postcard::to_stdvec(s).unwrap();
        assert_eq!(u32::from(bytes[0]), index, "{s:?}: postcard tag byte");
        out.push(Variant {
            tag: index,
            name: name.to_string(),
            fields: canonical(&fields),
            shape: fields,
        });
    }
    let mut probe = vec![0u8; 256];
    probe[0] = samples.len() as u8;
    assert!(
        postcard::take_from_bytes::<T>(&probe).is_err(),
        "{} has a variant with tag {} that the tests do not know",
        std::any::type_name::<T>(),
        samples.len()
    );
    out
}

/// Every enum that appears on the wire, with its variants per the code.
pub fn code_enums() -> BTreeMap<&'static str, Vec<Variant>> {
    use thecal_protocol::time::Weekday;
    let mut m = BTreeMap::new();
    m.insert("Request", variants(&super::request_samples()));
    m.insert("Response", variants(&super::response_samples()));
    m.insert("Refusal", variants(&super::refusal_samples()));
    m.insert("ScheduleError", variants(&super::schedule_error_samples()));
    m.insert("At", variants(&super::at_samples()));
    m.insert("Event", variants(&super::event_samples()));
    m.insert("ResetCause", variants(&super::reset_cause_samples()));
    m.insert("Drug", variants(&Drug::ALL));
    m.insert("AlarmKind", variants(&message::AlarmKind::ALL));
    m.insert("TherapyMode", variants(&super::therapy_mode_samples()));
    m.insert("TherapyState", variants(&super::therapy_state_samples()));
    m.insert("BatteryState", variants(&super::battery_state_samples()));
    m.insert("BolusKind", variants(&super::bolus_kind_samples()));
    m.insert("BolusRequest", variants(&super::bolus_request_samples()));
    m.insert("Role", variants(&super::role_samples()));
    m.insert("SessionEnd", variants(&super::session_end_samples()));
    m.insert("BolusEnd", variants(&super::bolus_end_samples()));
    m.insert("Weekday", variants(&Weekday::ALL));
    m.insert("SlotState", variants(&super::slot_state_samples()));
    m.insert("UpdateRefusal", variants(&super::update_refusal_samples()));
    m.insert("ImageError", variants(&super::image_error_samples()));
    m
}

/// A fields cell in canonical form: `—`, `(…)` or the field names, comma-separated.
pub fn canonical(fields: &Fields) -> String {
    match fields {
        Fields::Unit => "—".into(),
        Fields::Newtype => "(…)".into(),
        Fields::Named(names) => names.join(", "),
    }
}

pub fn doc_enums() -> BTreeMap<String, Vec<Vec<String>>> {
    sections("tags")
        .into_iter()
        .map(|(n, t)| (n, table_rows(t)))
        .collect()
}
