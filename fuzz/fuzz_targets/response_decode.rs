//! `response_decode`: arbitrary bytes as a response body. Whatever decodes re-encodes,
//! decodes to the same response and encodes to the same bytes again; it fits a frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thecal_protocol::frame::{decode_body, encode, Header, MAX_WIRE};
use thecal_protocol::Response;

fuzz_target!(|data: &[u8]| {
    let Ok(response) = decode_body::<Response>(data) else {
        return;
    };
    let bytes = postcard::to_stdvec(&response).expect("a decoded response encodes");
    let again: Response = decode_body(&bytes).expect("an encoded response decodes");
    assert_eq!(again, response);
    assert_eq!(
        postcard::to_stdvec(&again).unwrap(),
        bytes,
        "encoding is not stable"
    );
    assert!(bytes.len() <= data.len());
    let _ = response.name();
    if let Response::Refused(r) = &response {
        let _ = r.to_string();
    }
    let mut wire = vec![0u8; MAX_WIRE];
    encode(Header::response(1), &response, &mut wire).expect("every response fits a frame");
});
