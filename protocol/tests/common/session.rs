//! The worked examples of docs/PROTOCOL.md section 2.9, computed with this crate's session
//! API from fixed inputs: a clinician handshake with its first sealed exchange, and a
//! provisioning. `tests/session_doc.rs` prints them into the document's blocks and checks
//! every number against an independent computation from the primitives; the handshake
//! and provisioning frames are vectors of their own (`tests/doc_vectors.rs`, sections 6.8–6.9).

use thecal_protocol::frame::{encode_raw, Flags, FrameKind, Header};
use thecal_protocol::message::{Command, Request, Response, Role};
use thecal_protocol::session::{
    device_nonce, emergency_key, nonce_key, role_key, Binding, Ephemeral, HandshakeKeys,
    ProvisionKeys, ProvisionTranscript, Sealer, Secret, Transcript, FIRST_EPOCH,
};

/// Serial number of the pump in both examples.
pub const SERIAL: &str = "SIM000001";
/// The device secret of the handshake example.
pub const DEVICE_SECRET: [u8; 32] = [0x11; 32];
/// Role and key epoch asked for.
pub const ROLE: Role = Role::Clinician;
pub const KEY_EPOCH: u32 = FIRST_EPOCH;
/// The programmer's nonce and ephemeral X25519 secret.
pub const HOST_NONCE: [u8; 16] = [0x22; 16];
pub const HOST_SECRET: [u8; 32] = [0x33; 32];
/// The pump's ephemeral X25519 secret (what its pool drew), boot epoch and challenge count.
pub const PUMP_SECRET: [u8; 32] = [0x44; 32];
pub const BOOT_EPOCH: u64 = 7;
pub const CHALLENGE: u64 = 1;
/// Request ids: the hello, the proof, the first sealed request.
pub const HELLO_ID: u16 = 0x0100;
pub const PROOF_ID: u16 = 0x0101;
pub const PING_ID: u16 = 0x0102;
/// The first sealed request is a Ping with this token.
pub const TOKEN: u32 = 0x00C0_FFEE;

/// The provisioning example: the pump's static X25519 secret, the factory's ephemeral one,
/// the request id.
pub const PUMP_STATIC: [u8; 32] = [0x55; 32];
pub const FACTORY_SECRET: [u8; 32] = [0x66; 32];
pub const PROVISION_ID: u16 = 0x0001;

/// What the pump announced in `Identify` (the capabilities of the examples' pump).
pub fn binding() -> Binding {
    Binding {
        version: thecal_protocol::PROTOCOL_VERSION,
        schema: thecal_protocol::SCHEMA_HASH,
        capabilities: super::identity().capabilities.0,
    }
}

/// Every value of the handshake example, as the code computes it.
pub struct HandshakeExample {
    pub role_key: [u8; 32],
    pub nonce_key: [u8; 32],
    pub device_nonce: [u8; 16],
    pub host_ephemeral: [u8; 32],
    pub device_ephemeral: [u8; 32],
    pub shared: [u8; 32],
    pub th: [u8; 32],
    pub device_proof: [u8; 32],
    pub host_proof: [u8; 32],
    pub to_device: [u8; 32],
    pub to_host: [u8; 32],
    /// The first sealed request (Ping) and its sealed answer (Pong).
    pub request: Sealed,
    pub response: Sealed,
    pub emergency_key: [u8; 32],
}

/// One sealed frame of the example.
pub struct Sealed {
    pub header: Header,
    pub plaintext: Vec<u8>,
    pub body: Vec<u8>,
    pub wire: Vec<u8>,
}

fn sealed<T: serde::Serialize>(key: &Secret, header: Header, message: &T) -> Sealed {
    let plaintext = postcard::to_stdvec(message).unwrap();
    let mut body = [0u8; 256];
    let n = Sealer::new(key)
        .seal(&header.to_bytes(), &plaintext, &mut body)
        .unwrap();
    let mut wire = [0u8; 512];
    let w = encode_raw(header, &body[..n], &mut wire).unwrap();
    Sealed {
        header,
        plaintext,
        body: body[..n].to_vec(),
        wire: wire[..w].to_vec(),
    }
}

/// The transcript of the example (borrows the public values).
pub fn transcript<'a>(
    device_nonce: &'a [u8; 16],
    host_ephemeral: &'a [u8; 32],
    device_ephemeral: &'a [u8; 32],
) -> Transcript<'a> {
    Transcript {
        binding: binding(),
        role: ROLE,
        epoch: KEY_EPOCH,
        serial: SERIAL,
        host_nonce: &HOST_NONCE,
        host_ephemeral,
        device_nonce,
        device_ephemeral,
    }
}

pub fn handshake_example() -> HandshakeExample {
    let secret = Secret::new(DEVICE_SECRET);
    let key = role_key(&secret, ROLE, KEY_EPOCH, SERIAL);
    let nonces = nonce_key(&secret, SERIAL);
    let device_nonce = device_nonce(&nonces, BOOT_EPOCH, CHALLENGE);
    let (host, pump) = (
        Ephemeral::from_bytes(HOST_SECRET),
        Ephemeral::from_bytes(PUMP_SECRET),
    );
    let (host_ephemeral, device_ephemeral) = (host.public(), pump.public());
    let th = transcript(&device_nonce, &host_ephemeral, &device_ephemeral).hash();
    // Both sides: the same shared secret, the same keys.
    let shared = pump.agree(&host_ephemeral).unwrap();
    assert!(shared.ct_eq(&host.agree(&device_ephemeral).unwrap()));
    let at_pump = HandshakeKeys::derive(&shared, &key, &th);
    let at_host = HandshakeKeys::derive(&host.agree(&device_ephemeral).unwrap(), &key, &th);
    let device_proof = at_pump.device_proof(&th);
    let host_proof = at_host.host_proof(&th);
    assert!(at_host.verify_device_proof(&th, &device_proof));
    assert!(at_pump.verify_host_proof(&th, &host_proof));
    let keys = at_host.into_session();
    let request = sealed(
        &keys.to_device,
        Header {
            kind: FrameKind::Request,
            id: PING_ID,
            flags: Flags(Flags::SEALED),
        },
        &Command {
            key: None,
            request: Request::Ping { token: TOKEN },
        },
    );
    let response = sealed(
        &keys.to_host,
        Header {
            kind: FrameKind::Response,
            id: PING_ID,
            flags: Flags(Flags::SEALED),
        },
        &Response::Pong { token: TOKEN },
    );
    HandshakeExample {
        role_key: *key.as_bytes(),
        nonce_key: *nonces.as_bytes(),
        device_nonce,
        host_ephemeral,
        device_ephemeral,
        shared: *shared.as_bytes(),
        th,
        device_proof,
        host_proof,
        to_device: *keys.to_device.as_bytes(),
        to_host: *keys.to_host.as_bytes(),
        request,
        response,
        emergency_key: *emergency_key(SERIAL).as_bytes(),
    }
}

/// Every value of the provisioning example, as the code computes it.
pub struct ProvisionExample {
    pub pump_public: [u8; 32],
    pub ephemeral: [u8; 32],
    pub shared: [u8; 32],
    pub th: [u8; 32],
    pub device_secret: [u8; 32],
    pub confirm: [u8; 32],
    /// The service key of epoch 1 the new secret gives (what the factory keeps).
    pub service_key: [u8; 32],
}

pub fn provision_example() -> ProvisionExample {
    let (pump, factory) = (
        Ephemeral::from_bytes(PUMP_STATIC),
        Ephemeral::from_bytes(FACTORY_SECRET),
    );
    let (pump_public, ephemeral) = (pump.public(), factory.public());
    let t = ProvisionTranscript {
        serial: SERIAL,
        pump_public: &pump_public,
        ephemeral: &ephemeral,
    };
    let shared = pump.agree(&ephemeral).unwrap();
    let at_pump = ProvisionKeys::derive(&shared, &t);
    let at_factory = ProvisionKeys::derive(&factory.agree(&pump_public).unwrap(), &t);
    assert!(at_factory.device_secret.ct_eq(&at_pump.device_secret));
    let confirm = at_pump.confirm();
    assert!(at_factory.verify(&confirm));
    ProvisionExample {
        pump_public,
        ephemeral,
        shared: *shared.as_bytes(),
        th: t.hash(),
        device_secret: *at_pump.device_secret.as_bytes(),
        confirm,
        service_key: *role_key(&at_pump.device_secret, Role::Service, FIRST_EPOCH, SERIAL)
            .as_bytes(),
    }
}
