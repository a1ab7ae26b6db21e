use thecal_protocol::frame::{decode_body, encode, Feed, FrameDecoder, Header};
use thecal_protocol::message::Request;

#[test]
fn request_round_trips_through_a_frame() {
    let mut out = [0u8; 64];
    let n = encode(Header::request(7), &Request::Ping { token: 42 }, &mut out).unwrap();
    println!("{:02x?}", &out[..n]);
    let mut dec: FrameDecoder = FrameDecoder::new();
    match dec.feed(&out[..n]) {
        Feed::Frame { frame, remaining } => {
            assert!(remaining.is_empty());
            assert_eq!(frame.header, Header::request(7));
            assert_eq!(
                decode_body::<Request>(frame.body).unwrap(),
                Request::Ping { token: 42 }
            );
        }
        other => panic!("{other:?}"),
    }
}
