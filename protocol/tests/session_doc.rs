//! The secure-session worked example in docs/PROTOCOL.md (section 2.9) is recomputed here
//! from its inputs: role key, nonces, proofs, session keys and a sealed frame, byte for byte.

use thecal_protocol::frame::{Feed, Flags, FrameDecoder, FrameKind, Header};
use thecal_protocol::message::{Command, Request, Role};
use thecal_protocol::session::{
    device_nonce, device_proof, emergency_key, host_proof, role_key, session_keys, Opener, Sealer,
    Secret, Transcript,
};

const DOC: &str = include_str!("../../docs/PROTOCOL.md");

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The block as the code computes it.
fn computed() -> (String, Vec<u8>) {
    let secret = Secret([0x11; 32]);
    let serial = "SIM000001";
    let role = Role::Clinician;
    let key = role_key(&secret, role, serial);
    let host_nonce = [0x22u8; 16];
    let dev_nonce = device_nonce(&secret, 7, 1);
    let t = Transcript {
        role,
        host_nonce: &host_nonce,
        device_nonce: &dev_nonce,
        serial,
    };
    let keys = session_keys(&key, &t);
    // The first sealed request of the session: Status, id 0x0102, counter 1.
    let header = Header {
        kind: FrameKind::Request,
        id: 0x0102,
        flags: Flags(Flags::SEALED),
    };
    let mut plain = [0u8; 16];
    let command = Command {
        key: None,
        request: Request::Status,
    };
    let plain = postcard::to_slice(&command, &mut plain).unwrap().to_vec();
    let mut body = [0u8; 64];
    let n = Sealer::new(&keys.to_device)
        .seal(&header.to_bytes(), &plain, &mut body)
        .unwrap();
    let mut wire = [0u8; 128];
    let w = thecal_protocol::frame::encode_raw(header, &body[..n], &mut wire).unwrap();
    let lines = [
        ("device secret", secret.0.to_vec()),
        ("role key (clinician, SIM000001)", key.0.to_vec()),
        ("host nonce", host_nonce.to_vec()),
        ("device nonce (epoch = 7, n = 1)", dev_nonce.to_vec()),
        ("device proof", device_proof(&key, &t).to_vec()),
        ("host proof", host_proof(&key, &t).to_vec()),
        ("key programmer→pump", keys.to_device.0.to_vec()),
        ("key pump→programmer", keys.to_host.0.to_vec()),
        ("header", header.to_bytes().to_vec()),
        ("plaintext body (Command, Status)", plain.clone()),
        ("sealed body", body[..n].to_vec()),
        ("wire frame", wire[..w].to_vec()),
        (
            "emergency key (SIM000001)",
            emergency_key(serial).0.to_vec(),
        ),
    ];
    let block = lines
        .iter()
        .map(|(k, v)| format!("{k}: {}", hex(v)))
        .collect::<Vec<_>>()
        .join("\n");
    (block, wire[..w].to_vec())
}

fn documented() -> String {
    let start = DOC
        .find("<!-- session-vector -->")
        .expect("section 2.9 vector marker");
    let rest = &DOC[start..];
    let open = rest.find("```text\n").expect("fenced block") + "```text\n".len();
    let close = rest[open..].find("```").expect("closing fence") + open;
    rest[open..close].trim_end().to_string()
}

#[test]
fn the_documented_session_example_is_what_the_code_computes() {
    let (block, _) = computed();
    assert!(
        documented() == block,
        "section 2.9 should read:\n```text\n{block}\n```"
    );
}

#[test]
fn the_documented_sealed_frame_opens_to_the_request() {
    let (_, wire) = computed();
    let key = role_key(&Secret([0x11; 32]), Role::Clinician, "SIM000001");
    let (h, d) = ([0x22u8; 16], device_nonce(&Secret([0x11; 32]), 7, 1));
    let t = Transcript {
        role: Role::Clinician,
        host_nonce: &h,
        device_nonce: &d,
        serial: "SIM000001",
    };
    let mut opener = Opener::new(&session_keys(&key, &t).to_device);
    let mut decoder: FrameDecoder = FrameDecoder::new();
    let Feed::Frame { frame, .. } = decoder.feed(&wire) else {
        panic!("frame")
    };
    assert!(frame.header.flags.has(Flags::SEALED));
    let mut body = frame.body.to_vec();
    let plain = opener.open(&frame.header.to_bytes(), &mut body).unwrap();
    assert_eq!(
        thecal_protocol::frame::decode_body::<Command>(plain).unwrap(),
        Command {
            key: None,
            request: Request::Status
        }
    );
}
