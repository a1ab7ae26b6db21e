//! `request_decode`: arbitrary bytes as a request body. Whatever decodes re-encodes,
//! decodes to the same request and encodes to the same bytes again; its tag is its first
//! byte; it fits a frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thecal_protocol::frame::{decode_body, encode, Header, MAX_WIRE};
use thecal_protocol::Request;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = decode_body::<Request>(data) else {
        return;
    };
    let bytes = postcard::to_stdvec(&request).expect("a decoded request encodes");
    let again: Request = decode_body(&bytes).expect("an encoded request decodes");
    assert_eq!(again, request);
    assert_eq!(
        postcard::to_stdvec(&again).unwrap(),
        bytes,
        "encoding is not stable"
    );
    assert_eq!(bytes.first(), Some(&request.tag()));
    assert!(bytes.len() <= data.len());
    let _ = (request.name(), request.changes_therapy());
    let mut wire = vec![0u8; MAX_WIRE];
    encode(Header::request(1), &request, &mut wire).expect("every request fits a frame");
});
