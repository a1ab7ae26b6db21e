//! docs/PROTOCOL.md against the code: the enum tables (`<!-- tags: TYPE -->`: tags,
//! variants, fields in wire order; which requests change state, drug ceilings, alarm
//! criticality, answer tags) and the struct tables (`<!-- fields: TYPE -->`).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::doc::{code_enums, code_spans, doc_enums, sections, table_rows, Variant};
use common::shape::{shape, Shape};
use serde::Serialize;
use thecal_protocol::message;
use thecal_protocol::prescription;
use thecal_protocol::Drug;

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
            standing: status.standing,
        }),
        struct_fields(&status.standing),
        struct_fields(&message::Withheld {
            since: common::NOW,
            volume: thecal_protocol::units::Nanolitres(1),
        }),
        struct_fields(&message::BolusOutcome {
            kind: message::BolusKind::Single,
            end: message::BolusEnd::Completed,
            delivered: thecal_protocol::units::Nanolitres(1),
            planned: thecal_protocol::units::Nanolitres(1),
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
        struct_fields(&message::PageEntry {
            skip: 0,
            delta: 0,
            event: message::Event::PresenceApplied,
        }),
        struct_fields(&common::update_progress()),
        struct_fields(&common::update_report()),
        struct_fields(&common::update_report().active),
    ];
    records.into_iter().collect()
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
