//! `key_file`: arbitrary text through the key-file parser
//! (`thecal_protocol::session::keyfile`), the one format the simulator writes and the
//! programmer reads.
//!
//! Never a panic. A refusal names a line inside the text (or none, for a missing field)
//! and its message never repeats key material (the line may be a key). Anything accepted
//! renders back to a text that parses to the same fields, and rendering is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thecal_protocol::session::keyfile::{parse, render};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Err(e) => {
            if let Some(line) = e.line {
                assert!(line >= 1 && line as usize <= text.lines().count().max(1));
            }
            let message = e.to_string();
            // A refusal must not echo what the file held: its wording has no run of 16
            // hex digits, so one in the message came from the input (a key, or half).
            let mut run = 0;
            for c in message.chars() {
                run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
                assert!(run < 16, "{message:?} echoes key material");
            }
        }
        Ok(fields) => {
            let mut out = String::new();
            render(&mut out, fields.pump, fields.role, fields.epoch, &fields.key).unwrap();
            let again = parse(&out).expect("a rendered key file parses");
            assert_eq!(again.pump, fields.pump);
            assert_eq!(again.role, fields.role);
            assert_eq!(again.epoch, fields.epoch);
            assert!(again.key.ct_eq(&fields.key));
            let mut twice = String::new();
            render(&mut twice, again.pump, again.role, again.epoch, &again.key).unwrap();
            assert_eq!(out, twice);
        }
    }
});
