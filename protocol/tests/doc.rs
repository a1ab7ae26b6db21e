//! docs/PROTOCOL.md and protocol/src/schema.txt against the code.
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

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::annotate::{self, hex, render, render_line};
use common::shape::{shape, Fields, Shape};
use common::{feed_all, Msg, Vector};
use serde::Serialize;
use thecal_protocol::frame::{self, FrameDecoder, Header, CRC16};
use thecal_protocol::message::{self, Request, Response};
use thecal_protocol::prescription;
use thecal_protocol::{Drug, SCHEMA, SCHEMA_HASH};

const DOC: &str = include_str!("../../docs/PROTOCOL.md");

// ---------------------------------------------------------------------------------------
// Document parsing

/// The text after `<!-- KIND: NAME -->` up to the next marker, keyed by NAME.
fn sections(kind: &str) -> Vec<(String, &'static str)> {
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
fn fences(text: &str) -> Vec<(String, String)> {
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
fn table_rows(text: &str) -> Vec<Vec<String>> {
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
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn parse_hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|t| u8::from_str_radix(t, 16).unwrap_or_else(|_| panic!("bad hex byte {t:?}")))
        .collect()
}

/// A raw-frame block split into its `# header:`, `# body:` and `# crc:` sections.
#[derive(Default, Debug)]
struct RawBlock {
    header: Vec<u8>,
    body: Vec<u8>,
    crc: Vec<u8>,
}

fn parse_raw(block: &str) -> RawBlock {
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

// ---------------------------------------------------------------------------------------
// Rendering (what the document should say)

fn header_comment(h: &Header) -> String {
    let flags = if h.flags.has(frame::Flags::RETRY) {
        format!("{:#04x} RETRY", h.flags.0)
    } else {
        format!("{:#04x}", h.flags.0)
    };
    format!(
        "header: version {}, kind {:#04x} {:?}, id {:#06x}, flags {flags}",
        thecal_protocol::PROTOCOL_VERSION,
        h.kind.code(),
        h.kind,
        h.id
    )
}

fn render_raw(v: &Vector) -> String {
    let lines = match &v.msg {
        Msg::Request(r) => annotate::annotate(r),
        Msg::Response(r) => annotate::annotate(r),
    };
    let body = annotate::bytes(&lines);
    let head = v.header.to_bytes();
    let crc = CRC16.checksum(&[&head[..], &body].concat());
    let kind = match v.msg {
        Msg::Request(_) => "Request",
        Msg::Response(_) => "Response",
    };
    let mut s = String::new();
    s += &render_line(&head, 0, &header_comment(&v.header));
    s += "\n";
    let n = body.len();
    let unit = if n == 1 { "byte" } else { "bytes" };
    s += &render_line(&[], 0, &format!("body: {kind}, {n} {unit}"));
    s += "\n";
    s += &render(&lines, 1);
    s += &render_line(
        &crc.to_le_bytes(),
        0,
        &format!("crc: {crc:#06x}, little-endian"),
    );
    s += "\n";
    s
}

fn render_wire(wire: &[u8]) -> String {
    wire.chunks(16).map(|c| hex(c) + "\n").collect()
}

fn render_notation(v: &Vector) -> String {
    format!("// {:?}\n{}\n", v.header, v.msg.notation())
}

fn render_vector(v: &Vector) -> String {
    format!(
        "<!-- vector: {} -->\n```rust\n{}```\n\n```hex\n{}```\n\n```hex\n{}```\n",
        v.name,
        render_notation(v),
        render_raw(v),
        render_wire(&v.msg.encode(v.header))
    )
}

// ---------------------------------------------------------------------------------------
// Vectors

#[test]
fn every_vector_is_documented_once() {
    let documented: Vec<String> = sections("vector").into_iter().map(|(n, _)| n).collect();
    let known: Vec<&str> = common::vectors().iter().map(|v| v.name).collect();
    for v in common::vectors() {
        let count = documented.iter().filter(|d| *d == v.name).count();
        assert_eq!(
            count,
            1,
            "vector {} documented {count} times; add:\n\n{}",
            v.name,
            render_vector(&v)
        );
    }
    for d in &documented {
        assert!(
            known.contains(&d.as_str()),
            "PROTOCOL.md has vector {d:?} that no test knows"
        );
    }
    assert!(known.len() >= 8);
}

#[test]
fn documented_vectors_match_the_code() {
    let docs: BTreeMap<String, &str> = sections("vector").into_iter().collect();
    for v in common::vectors() {
        let Some(text) = docs.get(v.name) else {
            continue;
        };
        let blocks = fences(text);
        let want = render_vector(&v);
        let [(i0, rust), (i1, raw), (i2, wire)] = &blocks[..] else {
            panic!(
                "vector {}: expected rust, hex, hex blocks; should be:\n\n{want}",
                v.name
            )
        };
        assert_eq!(
            (i0.as_str(), i1.as_str(), i2.as_str()),
            ("rust", "hex", "hex"),
            "vector {}",
            v.name
        );

        // The bytes, checked against the code independently of the rendering.
        let parsed = parse_raw(raw);
        assert_eq!(
            parsed.header,
            v.header.to_bytes(),
            "vector {}: header",
            v.name
        );
        assert_eq!(
            parsed.body,
            v.msg.body(),
            "vector {}: body is not postcard's",
            v.name
        );
        let content = [&parsed.header[..], &parsed.body].concat();
        assert_eq!(
            parsed.crc,
            CRC16.checksum(&content).to_le_bytes(),
            "vector {}: crc",
            v.name
        );
        let wire = parse_hex(wire);
        assert_eq!(
            wire,
            v.msg.encode(v.header),
            "vector {}: wire bytes",
            v.name
        );
        let raw_frame = [&content[..], &parsed.crc].concat();
        assert_eq!(
            wire,
            [common::cobs_encode(&raw_frame), vec![0]].concat(),
            "vector {}: COBS",
            v.name
        );

        // Decoding the documented wire bytes gives the message back.
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let out = feed_all(&mut decoder, &wire);
        let [Ok((header, body))] = &out[..] else {
            panic!("vector {}: decoded {out:?}", v.name)
        };
        assert_eq!(*header, v.header, "vector {}", v.name);
        assert_eq!(v.msg.decode_like(body), v.msg, "vector {}", v.name);

        // And the text (notation and annotations) is exactly what the code renders.
        assert_eq!(
            *rust,
            render_notation(&v),
            "vector {}: notation; should be:\n\n{want}",
            v.name
        );
        assert_eq!(
            *raw,
            render_raw(&v),
            "vector {}: annotations; should be:\n\n{want}",
            v.name
        );
    }
}

/// The annotator (from which the documented bytes are rendered) agrees with postcard on
/// every sample, so the encoding rules the document states are postcard's.
#[test]
fn documented_encoding_rules_are_postcards() {
    fn check<T: Serialize + std::fmt::Debug>(samples: &[T]) {
        for s in samples {
            let ours = annotate::bytes(&annotate::annotate(s));
            assert_eq!(ours, postcard::to_stdvec(s).unwrap(), "{s:?}");
        }
    }
    check(&common::request_samples());
    check(&common::response_samples());
    check(&common::largest_requests());
    check(&common::largest_responses());
    check(&common::event_samples());
    assert_eq!(annotate::varint(0), [0x00]);
    assert_eq!(annotate::varint(127), [0x7F]);
    assert_eq!(annotate::varint(128), [0x80, 0x01]);
    assert_eq!(
        annotate::varint(u32::MAX.into()),
        [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]
    );
    assert_eq!(annotate::zigzag(-1), 1);
    assert_eq!(annotate::zigzag(60), 120);
    assert_eq!(postcard::to_stdvec(&-60i16).unwrap(), [119]);
}

// ---------------------------------------------------------------------------------------
// Enum and struct tables

/// One row of a tag table, as the code has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variant {
    tag: u32,
    name: String,
    /// Canonical form, see [`canonical`].
    fields: String,
    shape: Fields,
}

/// Encodes one sample per variant; checks the tags run 0, 1, 2, … in postcard's first
/// byte, and that no variant exists past the last one (a zero-filled body with the next
/// tag does not decode).
fn variants<T>(samples: &[T]) -> Vec<Variant>
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
fn code_enums() -> BTreeMap<&'static str, Vec<Variant>> {
    use thecal_protocol::time::Weekday;
    let mut m = BTreeMap::new();
    m.insert("Request", variants(&common::request_samples()));
    m.insert("Response", variants(&common::response_samples()));
    m.insert("Refusal", variants(&common::refusal_samples()));
    m.insert("ScheduleError", variants(&common::schedule_error_samples()));
    m.insert("At", variants(&common::at_samples()));
    m.insert("Event", variants(&common::event_samples()));
    m.insert("ResetCause", variants(&common::reset_cause_samples()));
    m.insert("Drug", variants(&Drug::ALL));
    m.insert("AlarmKind", variants(&message::AlarmKind::ALL));
    m.insert("TherapyMode", variants(&common::therapy_mode_samples()));
    m.insert("TherapyState", variants(&common::therapy_state_samples()));
    m.insert("BatteryState", variants(&common::battery_state_samples()));
    m.insert("BolusKind", variants(&common::bolus_kind_samples()));
    m.insert("BolusRequest", variants(&common::bolus_request_samples()));
    m.insert("Role", variants(&common::role_samples()));
    m.insert("SessionEnd", variants(&common::session_end_samples()));
    m.insert("Weekday", variants(&Weekday::ALL));
    m
}

fn struct_fields<T: Serialize>(value: &T) -> (&'static str, Vec<&'static str>) {
    match shape(value) {
        Shape::Struct { name, fields } => (name, fields),
        other => panic!("not a struct: {other:?}"),
    }
}

/// Every struct that appears on the wire, with its fields per the code.
fn code_structs() -> BTreeMap<&'static str, Vec<&'static str>> {
    let draft = common::morphine_draft();
    let status = common::status_report();
    let page = common::log_page();
    let records: Vec<(&'static str, Vec<&'static str>)> = vec![
        struct_fields(&draft),
        struct_fields(&prescription::Step {
            start: thecal_protocol::time::MinuteOfDay(0),
            dose: thecal_protocol::units::NanogramsPerDay(1),
        }),
        struct_fields(&draft.patient_bolus.unwrap()),
        struct_fields(&common::identity()),
        struct_fields(&common::identity().firmware),
        struct_fields(&common::identity().key_epochs),
        struct_fields(&status),
        struct_fields(&status.bolus.unwrap()),
        struct_fields(&common::battery_report()),
        struct_fields(&common::reservoir_report()),
        struct_fields(&message::PrescriptionRecord {
            revision: message::Revision(1),
            written_at: common::NOW,
            prescription: common::morphine(),
        }),
        struct_fields(&message::AlarmEntry {
            kind: message::AlarmKind::LowBattery,
            raised_at: common::NOW,
            acknowledged: false,
        }),
        struct_fields(&message::LinkStats::default()),
        struct_fields(&message::LinkAbuse::default()),
        struct_fields(&message::Command {
            key: None,
            request: message::Request::Status,
        }),
        struct_fields(&common::bolus_report()),
        struct_fields(&page.entries[0]),
        struct_fields(&page),
    ];
    records.into_iter().collect()
}

/// A fields cell in canonical form: `—`, `(…)` or the field names, comma-separated.
fn canonical(fields: &Fields) -> String {
    match fields {
        Fields::Unit => "—".into(),
        Fields::Newtype => "(…)".into(),
        Fields::Named(names) => names.join(", "),
    }
}

/// The same canonical form from a document cell: `—`, `(Type)`, or `` `name` type, … ``
/// (field names are the snake_case code spans; a type in a code span, such as
/// `` `Option<Weekday>` ``, is not a name).
fn parse_fields_cell(cell: &str) -> String {
    let is_name = |s: &String| {
        s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if cell.starts_with('—') {
        "—".into()
    } else if cell.starts_with('(') {
        "(…)".into()
    } else {
        code_spans(cell)
            .into_iter()
            .filter(is_name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn render_tag_table(name: &str, vs: &[Variant]) -> String {
    let mut s = format!(
        "<!-- tags: {name} -->\n| tag | variant | fields, in wire order |\n|---:|---|---|\n"
    );
    for v in vs {
        s += &format!("| {} | `{}` | {} |\n", v.tag, v.name, v.shape);
    }
    s
}

fn doc_enums() -> BTreeMap<String, Vec<Vec<String>>> {
    sections("tags")
        .into_iter()
        .map(|(n, t)| (n, table_rows(t)))
        .collect()
}

#[test]
fn enum_tables_match_the_code() {
    let code = code_enums();
    let doc = doc_enums();
    for (name, vs) in &code {
        let want = render_tag_table(name, vs);
        let rows = doc
            .get(*name)
            .unwrap_or_else(|| panic!("PROTOCOL.md lacks the {name} table:\n\n{want}"));
        let documented: Vec<(u32, String, String)> = rows
            .iter()
            .map(|r| {
                let tag = r[0]
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: bad tag {:?}", r[0]));
                (
                    tag,
                    r[1].trim_matches('`').to_string(),
                    parse_fields_cell(&r[2]),
                )
            })
            .collect();
        let code_rows: Vec<(u32, String, String)> = vs
            .iter()
            .map(|v| (v.tag, v.name.clone(), v.fields.clone()))
            .collect();
        assert_eq!(
            documented, code_rows,
            "{name} table differs from the code; should be:\n\n{want}"
        );
    }
    for name in doc.keys() {
        assert!(
            code.contains_key(name.as_str()),
            "PROTOCOL.md has a {name} table no test knows"
        );
    }
}

/// A tag table's rows keyed by variant name.
fn rows_by_name(table: &str) -> BTreeMap<String, Vec<String>> {
    doc_enums()[table]
        .iter()
        .map(|r| (r[1].trim_matches('`').to_string(), r.clone()))
        .collect()
}

/// The "changes state" column: `therapy` for a therapy change, `keys` for the other
/// changes (rotation, re-provisioning), `—` for the rest. Both kinds carry an idempotency
/// key when sealed and are answered from the reply cache.
#[test]
fn request_table_marks_exactly_the_state_changing_requests() {
    let rows = rows_by_name("Request");
    for r in common::request_samples() {
        let cell = &rows[r.name()][4];
        let want = match (r.changes_therapy(), r.changes_state()) {
            (true, _) => "therapy",
            (false, true) => "keys",
            (false, false) => "—",
        };
        assert_eq!(cell, want, "Request {} 'changes state'", r.name());
    }
}

#[test]
fn drug_table_states_the_firmware_ceilings() {
    let rows = rows_by_name("Drug");
    for d in Drug::ALL {
        let c = d.ceiling();
        let row = &rows[&format!("{d:?}")];
        assert_eq!(row[3], c.max_per_day.to_string(), "{d} daily ceiling");
        assert_eq!(
            row[4],
            c.max_concentration.to_string(),
            "{d} concentration ceiling"
        );
    }
}

#[test]
fn alarm_table_states_criticality() {
    let rows = rows_by_name("AlarmKind");
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    for a in message::AlarmKind::ALL {
        let row = &rows[&format!("{a:?}")];
        assert_eq!(row[3], yes_no(a.is_critical()), "{a} critical");
        assert_eq!(row[4], yes_no(a.halts_delivery()), "{a} halts delivery");
    }
}

/// The Request table's "answer" column names the Response whose tag is the request's
/// plus one, and every non-Refused response answers exactly one request.
#[test]
fn every_answer_tag_is_the_request_tag_plus_one() {
    let doc = doc_enums();
    let responses: BTreeMap<String, u32> = doc["Response"]
        .iter()
        .map(|r| (r[1].trim_matches('`').to_string(), r[0].parse().unwrap()))
        .collect();
    assert_eq!(responses["Refused"], 0);
    let mut answered = BTreeSet::new();
    for row in &doc["Request"] {
        let tag: u32 = row[0].parse().unwrap();
        let answer = code_spans(&row[3]);
        let [answer] = &answer[..] else {
            panic!("Request {}: answer cell {:?}", row[1], row[3])
        };
        assert_eq!(
            responses.get(answer),
            Some(&(tag + 1)),
            "Request {} answered by {answer}",
            row[1]
        );
        answered.insert(answer.clone());
    }
    assert_eq!(
        answered.len() + 1,
        responses.len(),
        "responses that answer no request"
    );
}

#[test]
fn struct_tables_match_the_code() {
    let code = code_structs();
    let doc: BTreeMap<String, Vec<Vec<String>>> = sections("fields")
        .into_iter()
        .map(|(n, t)| (n, table_rows(t)))
        .collect();
    for (name, fields) in &code {
        let want: String = fields
            .iter()
            .enumerate()
            .map(|(i, f)| format!("| {} | `{f}` | … |\n", i + 1))
            .collect();
        let rows = doc
            .get(*name)
            .unwrap_or_else(|| panic!("PROTOCOL.md lacks <!-- fields: {name} -->:\n\n{want}"));
        let documented: Vec<String> = rows
            .iter()
            .map(|r| r[1].trim_matches('`').to_string())
            .collect();
        let numbers: Vec<String> = rows.iter().map(|r| r[0].clone()).collect();
        let expected_numbers: Vec<String> = (1..=rows.len()).map(|i| i.to_string()).collect();
        assert_eq!(
            numbers, expected_numbers,
            "{name}: rows must be numbered 1, 2, …"
        );
        assert_eq!(
            &documented, fields,
            "{name} fields differ from the code; should be:\n\n{want}"
        );
    }
    for name in doc.keys() {
        assert!(
            code.contains_key(name.as_str()),
            "PROTOCOL.md has a {name} table no test knows"
        );
    }
}

// ---------------------------------------------------------------------------------------
// schema.txt, hash and limits

#[test]
fn schema_txt_matches_the_code() {
    let code = code_enums();
    let mut schema: BTreeMap<&str, Vec<(u32, &str)>> = BTreeMap::new();
    for line in SCHEMA
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let [ty, tag, name] = line.split_whitespace().collect::<Vec<_>>()[..] else {
            panic!("schema.txt: bad line {line:?}")
        };
        schema
            .entry(ty)
            .or_default()
            .push((tag.parse().unwrap(), name));
    }
    let expected = [
        "AlarmKind",
        "Drug",
        "Event",
        "Refusal",
        "Request",
        "Response",
    ];
    assert_eq!(schema.keys().copied().collect::<Vec<_>>(), expected);
    for (ty, lines) in &schema {
        let want: Vec<(u32, &str)> = code[ty].iter().map(|v| (v.tag, v.name.as_str())).collect();
        assert_eq!(lines, &want, "schema.txt {ty} differs from the code");
    }
}

#[test]
fn document_states_the_current_schema_hash() {
    let want = format!("`SCHEMA_HASH` = `{SCHEMA_HASH:#010x}`");
    assert!(DOC.contains(&want), "PROTOCOL.md should state {want}");
    assert!(
        DOC.contains(&format!(
            "protocol version {}",
            thecal_protocol::PROTOCOL_VERSION
        )),
        "PROTOCOL.md should name the protocol version"
    );
}

fn largest_body<T: Serialize>(values: &[T]) -> usize {
    values
        .iter()
        .map(|v| postcard::to_stdvec(v).unwrap().len())
        .max()
        .unwrap()
}

#[test]
fn limits_table_matches_the_code() {
    let (_, text) = DOC
        .split_once("<!-- limits -->")
        .expect("PROTOCOL.md lacks <!-- limits -->");
    let rows: BTreeMap<String, String> = table_rows(text)
        .into_iter()
        .map(|r| (r[0].trim_matches('`').to_string(), r[1].clone()))
        .collect();
    let expect = [
        ("HEADER_LEN", frame::HEADER_LEN),
        ("CRC_LEN", frame::CRC_LEN),
        ("MAX_BODY", frame::MAX_BODY),
        ("MAX_RAW", frame::MAX_RAW),
        ("MAX_WIRE", frame::MAX_WIRE),
        ("MAX_STEPS_PER_DAY", prescription::MAX_STEPS_PER_DAY),
        ("MAX_PROFILE_DAYS", prescription::MAX_PROFILE_DAYS),
        ("MAX_LOG_PAGE", message::MAX_LOG_PAGE),
        ("MAX_ALARMS", message::MAX_ALARMS),
        ("MAX_ID_LEN", message::MAX_ID_LEN),
        (
            "HORIZON_DAYS",
            thecal_protocol::projection::HORIZON_DAYS as usize,
        ),
        (
            "largest Request body",
            largest_body(&common::largest_requests()),
        ),
        (
            "largest Response body",
            largest_body(&common::largest_responses()),
        ),
    ];
    for (name, value) in expect {
        let cell = rows
            .get(name)
            .unwrap_or_else(|| panic!("limits table lacks {name} ({value})"));
        assert_eq!(
            cell.split_whitespace().next(),
            Some(value.to_string().as_str()),
            "limits: {name}"
        );
    }
    assert_eq!(
        rows.len(),
        expect.len(),
        "limits table has rows no test checks"
    );
}

/// The samples the tables are built from cover the vectors' message types too.
#[test]
fn vectors_cover_both_directions_and_the_retry_flag() {
    let vs = common::vectors();
    assert!(
        vs.iter()
            .filter(|v| matches!(v.msg, Msg::Request(_)))
            .count()
            >= 4
    );
    assert!(
        vs.iter()
            .filter(|v| matches!(v.msg, Msg::Response(_)))
            .count()
            >= 4
    );
    assert!(vs.iter().any(|v| v.header.flags.has(frame::Flags::RETRY)));
    assert!(vs
        .iter()
        .any(|v| matches!(v.msg, Msg::Response(Response::Refused(_)))));
    assert!(vs
        .iter()
        .any(|v| matches!(v.msg, Msg::Request(Request::WritePrescription { .. }))));
}
