//! protocol/src/schema.txt and the limits against the code: schema.txt lists the code's
//! tags, docs/PROTOCOL.md states the current schema hash and protocol version, and its
//! table of sizes (`<!-- limits -->`) is the code's.

mod common;

use std::collections::BTreeMap;

use common::doc::{code_enums, table_rows, DOC};
use serde::Serialize;
use thecal_protocol::frame;
use thecal_protocol::message;
use thecal_protocol::prescription;
use thecal_protocol::{SCHEMA, SCHEMA_HASH};

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
