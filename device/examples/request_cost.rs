//! Device cost per request type, for `valgrind --tool=callgrind` (docs/BENCHMARKS.md,
//! "Device cost").
//!
//! ```text
//! cargo build --release -p thecal-device --example request_cost
//! valgrind --tool=callgrind --toggle-collect='request_cost::device*' \
//!     target/release/examples/request_cost status 100
//! ```
//!
//! Boots the simulator's pump (demo device and prescription) on a [`RamFlash`], provisions
//! it, opens a clinician session over frames, then serves `N` requests of one kind, each
//! a sealed frame handed to [`Server::receive`] — exactly what the firmware does with
//! the bytes of its UART. Only [`device`] is meant to be counted (`--toggle-collect`):
//! the programmer's side (sealing requests, opening answers) stays outside. A run with
//! `N = 0` counts the one handshake every run makes; subtract it.
//!
//! Kinds: `status`, `read-prescription`, `write-prescription` (the prescription in force
//! written back, so each one is a real write), `read-log` (a page of 8), `read-log-full`
//! (a full page, `MAX_LOG_PAGE` entries), `bolus` (a 1 µg clinician bolus over a minute,
//! two minutes apart, the dosing of those two minutes included), `handshake` (`N` more
//! sessions: `SessionHello` + `SessionProof`).
//! Requests other than boluses are 10 ms apart.

use std::process::ExitCode;

use thecal_device::link::server::Server;
use thecal_device::pump::demo;
use thecal_device::pump::Pump;
use thecal_device::store::flash::RamFlash;
use thecal_device::store::{FlashStore, FLASH_SIZE};
use thecal_device::therapy::motor::CountingMotor;
use thecal_protocol::frame::{
    decode_body, encode, encode_raw, Feed, Flags, FrameDecoder, Header, MAX_WIRE,
};
use thecal_protocol::message::{BolusRequest, Command, ResetCause, Revision, Role};
use thecal_protocol::session::{
    role_key, Binding, Ephemeral, HandshakeKeys, Opener, ProvisionKeys, ProvisionTranscript,
    Sealer, Secret, Transcript, FIRST_EPOCH,
};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Minutes, Nanograms};
use thecal_protocol::{Request, Response};

type Dev = Server<FlashStore<RamFlash<FLASH_SIZE>>, CountingMotor>;

/// What the platform stirs into the pump's ephemeral pool at boot (its RNG's bytes).
const ENTROPY: [u8; 32] = [0xE7; 32];
/// The factory station's ephemeral secret.
const FACTORY: [u8; 32] = [0xFA; 32];
/// Device time at boot: 2026-01-01 (a valid wall clock; the factory wall is 0).
const T0: u64 = 1_767_225_600_000;

/// The device's work on one frame's bytes: what callgrind counts.
#[inline(never)]
fn device(server: &mut Dev, now: Timestamp, bytes: &[u8], out: &mut Vec<u8>) {
    server.receive(now, bytes, &mut |b| out.extend_from_slice(b));
}

/// The programmer's side of the session.
struct Programmer {
    id: u16,
    decoder: Box<FrameDecoder>,
    session: Option<(Sealer, Opener)>,
    key: Secret,
    epoch: u32,
    serial: String,
    binding: Binding,
}

impl Programmer {
    /// Sends `request` (sealed inside a session) and returns the answer.
    fn call(&mut self, server: &mut Dev, now: Timestamp, request: &Request) -> Option<Response> {
        self.id = self.id.wrapping_add(1);
        let mut header = Header::request(self.id);
        let mut wire = vec![0u8; MAX_WIRE];
        let n = match self.session.as_mut() {
            Some((sealer, _)) if !matches!(request, Request::SessionHello { .. }) => {
                header.flags = Flags(Flags::SEALED);
                let mut buf = vec![0u8; MAX_WIRE];
                let [a, b] = self.id.to_le_bytes();
                let command = Command {
                    key: request.changes_state().then_some([a, b, 0, 0, 0, 0, 0, 1]),
                    request: request.clone(),
                };
                let plain = postcard::to_slice(&command, &mut buf).ok()?;
                let mut body = vec![0u8; plain.len() + 64];
                let len = sealer.seal(&header.to_bytes(), plain, &mut body).ok()?;
                encode_raw(header, body.get(..len)?, &mut wire).ok()?
            }
            _ => encode(header, request, &mut wire).ok()?,
        };
        let mut out = Vec::new();
        device(server, now, wire.get(..n)?, &mut out);
        let Feed::Frame { frame, .. } = self.decoder.feed(&out) else {
            return None;
        };
        let mut body = frame.body.to_vec();
        if frame.header.flags.has(Flags::SEALED) {
            let (_, opener) = self.session.as_mut()?;
            let plain = opener.open(&frame.header.to_bytes(), &mut body).ok()?;
            decode_body(plain).ok()
        } else {
            decode_body(&body).ok()
        }
    }

    /// A new clinician session.
    fn handshake(&mut self, server: &mut Dev, now: Timestamp) -> Option<()> {
        self.session = None;
        let host_nonce = [self.id as u8; 16];
        let mut random = [0x5c; 32];
        random[..2].copy_from_slice(&self.id.to_le_bytes());
        let secret = Ephemeral::from_bytes(random);
        let host_ephemeral = secret.public();
        let hello = Request::SessionHello {
            role: Role::Clinician,
            epoch: self.epoch,
            nonce: host_nonce,
            ephemeral: host_ephemeral,
        };
        let Some(Response::SessionChallenge {
            nonce,
            ephemeral,
            proof,
        }) = self.call(server, now, &hello)
        else {
            return None;
        };
        let th = Transcript {
            binding: self.binding,
            role: Role::Clinician,
            epoch: self.epoch,
            serial: &self.serial,
            host_nonce: &host_nonce,
            host_ephemeral: &host_ephemeral,
            device_nonce: &nonce,
            device_ephemeral: &ephemeral,
        }
        .hash();
        let keys = HandshakeKeys::derive(&secret.agree(&ephemeral)?, &self.key, &th);
        if !keys.verify_device_proof(&th, &proof) {
            return None;
        }
        let proof = Request::SessionProof {
            nonce: host_nonce,
            proof: keys.host_proof(&th),
        };
        let Some(Response::SessionEstablished) = self.call(server, now, &proof) else {
            return None;
        };
        let keys = keys.into_session();
        self.session = Some((Sealer::new(&keys.to_device), Opener::new(&keys.to_host)));
        Some(())
    }
}

/// Provisions the pump as a factory station does (not counted: straight into the core);
/// the device secret, once the pump's confirmation verifies.
fn provision(server: &mut Dev, now: Timestamp, serial: &str) -> Option<Secret> {
    let pump_public = server.pump().public_key()?;
    let factory = Ephemeral::from_bytes(FACTORY);
    let ephemeral = factory.public();
    let Response::Provisioned { confirm, .. } = server.pump_mut().provision(now, &ephemeral, false)
    else {
        return None;
    };
    let keys = ProvisionKeys::derive(
        &factory.agree(&pump_public)?,
        &ProvisionTranscript {
            serial,
            pump_public: &pump_public,
            ephemeral: &ephemeral,
        },
    );
    keys.verify(&confirm).then_some(keys.device_secret)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(kind), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u32>().ok()),
    ) else {
        eprintln!(
            "usage: request_cost <status|read-prescription|write-prescription|read-log|\
             read-log-full|bolus|handshake> <N>"
        );
        return ExitCode::from(2);
    };
    let Some(prescription) = demo::demo_prescription() else {
        return ExitCode::FAILURE;
    };
    let Ok(store) = FlashStore::new(RamFlash::<FLASH_SIZE>::new()) else {
        return ExitCode::FAILURE;
    };
    let mut now = Timestamp(T0);
    let pump = Pump::boot(
        demo::demo_info(7),
        demo::demo_factory(Timestamp(0), prescription),
        store,
        CountingMotor::default(),
        now,
        ResetCause::PowerOn,
    );
    let serial = pump.serial().to_string();
    let mut server = Server::new(pump);
    // The first stir makes the pump's static key pair.
    server.stir(&ENTROPY);
    let Some(secret) = provision(&mut server, now, &serial) else {
        eprintln!("provisioning failed");
        return ExitCode::FAILURE;
    };
    // A log with more than a full page in it (not counted: straight into the core):
    // therapy stopped and resumed in turn, each an entry of its own (a refusal repeated
    // would be one aggregated entry), a few seconds apart.
    for n in 0..40u64 {
        let request = if n % 2 == 0 {
            Request::StopTherapy
        } else {
            Request::ResumeTherapy
        };
        let _ = server
            .pump_mut()
            .handle(Timestamp(now.0 + n * 3_000), &request);
    }
    now = Timestamp(now.0 + 40 * 3_000);
    let mut p = Programmer {
        id: 0,
        decoder: Box::default(),
        session: None,
        key: role_key(&secret, Role::Clinician, FIRST_EPOCH, &serial),
        epoch: FIRST_EPOCH,
        serial,
        binding: server.pump().binding(),
    };
    if p.handshake(&mut server, now).is_none() {
        eprintln!("no session");
        return ExitCode::FAILURE;
    }
    let mut revision = server.pump().record().revision;
    let draft = server.pump().record().prescription.draft().clone();
    let mut answers: std::collections::BTreeMap<&'static str, u32> = Default::default();
    for _ in 0..n {
        // 10 ms apart (about one exchange at 115 200 baud); boluses two minutes apart,
        // so each one has finished before the next (the pump's dosing over those two
        // minutes is counted with it).
        now = Timestamp(now.0 + if kind == "bolus" { 120_000 } else { 10 });
        let request = match kind.as_str() {
            "status" => Request::Status,
            "read-prescription" => Request::ReadPrescription,
            "write-prescription" => Request::WritePrescription {
                expected: revision,
                prescription: draft.clone(),
            },
            "read-log" => Request::ReadLog { first: 4, max: 8 },
            "read-log-full" => Request::ReadLog {
                first: 4,
                max: thecal_protocol::message::MAX_LOG_PAGE as u8,
            },
            "bolus" => Request::ClinicianBolus(BolusRequest::Single {
                dose: Nanograms(1_000),
                duration: Minutes(1),
            }),
            "handshake" => {
                let ok = p.handshake(&mut server, now).is_some();
                *answers
                    .entry(if ok { "SessionEstablished" } else { "failed" })
                    .or_default() += 1;
                continue;
            }
            other => {
                eprintln!("unknown request kind {other}");
                return ExitCode::from(2);
            }
        };
        let answer = p.call(&mut server, now, &request);
        if let Some(Response::PrescriptionWritten { revision: r }) = &answer {
            revision = Revision(r.0);
        }
        *answers
            .entry(answer.as_ref().map_or("no answer", Response::name))
            .or_default() += 1;
    }
    // Every request must have been served as intended: print what came back.
    eprintln!("{kind} x{n}: {answers:?}");
    ExitCode::SUCCESS
}
