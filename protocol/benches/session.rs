//! Secure-session cost on the host CPU: a whole forward-secret handshake (both sides'
//! work: role key, both ephemeral key pairs, both X25519 agreements, the transcript hash,
//! proof and session keys, both proofs and their checks) and sealing + opening a
//! Status-sized and a prescription-sized body.
//!
//! `cargo bench -p thecal-protocol --bench session`; `-- --test` runs each case once (CI).
//! The figures are in docs/BENCHMARKS.md; the on-device cost is the firmware's.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use thecal_protocol::message::Role;
use thecal_protocol::session::{
    device_nonce, nonce_key, role_key, Binding, Ephemeral, HandshakeKeys, Opener, Sealer, Secret,
    Transcript, SEAL_OVERHEAD,
};

const BINDING: Binding = Binding {
    version: thecal_protocol::PROTOCOL_VERSION,
    schema: thecal_protocol::SCHEMA_HASH,
    capabilities: 0x7f,
};

fn handshake(secret: &Secret, n: u64) -> bool {
    let serial = "SIM000001";
    let key = role_key(secret, Role::Clinician, 1, serial);
    let host_nonce = [0x22; 16];
    let dev_nonce = device_nonce(&nonce_key(secret, serial), 1, n);
    // Fresh ephemeral secrets every round (the counter makes them differ).
    let mut h = [0x33; 32];
    let mut d = [0x44; 32];
    h[..8].copy_from_slice(&n.to_le_bytes());
    d[..8].copy_from_slice(&n.to_le_bytes());
    let (host, pump) = (Ephemeral::from_bytes(h), Ephemeral::from_bytes(d));
    let (e_h, e_d) = (host.public(), pump.public());
    let th = Transcript {
        binding: BINDING,
        role: Role::Clinician,
        epoch: 1,
        serial,
        host_nonce: &host_nonce,
        host_ephemeral: &e_h,
        device_nonce: &dev_nonce,
        device_ephemeral: &e_d,
    }
    .hash();
    // The pump: agreement, keys, its proof.
    let Some(shared) = pump.agree(&e_h) else {
        return false;
    };
    let at_pump = HandshakeKeys::derive(&shared, &key, &th);
    let proof_d = at_pump.device_proof(&th);
    // The programmer: agreement, keys, checks the pump's proof, its own proof.
    let Some(shared) = host.agree(&e_d) else {
        return false;
    };
    let at_host = HandshakeKeys::derive(&shared, &key, &th);
    let ok = at_host.verify_device_proof(&th, &proof_d);
    let proof_h = at_host.host_proof(&th);
    let ok = ok && at_pump.verify_host_proof(&th, &proof_h);
    let (a, b) = (at_host.into_session(), at_pump.into_session());
    ok && a.to_device.ct_eq(&b.to_device) && !a.to_device.ct_eq(&a.to_host)
}

fn bench(c: &mut Criterion) {
    let secret = Secret::new([0x11; 32]);
    assert!(handshake(&secret, 0), "both sides must agree");
    c.bench_function("handshake (both sides)", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            black_box(handshake(&secret, n))
        })
    });
    let key = Secret::new([0x33; 32]);
    let mut g = c.benchmark_group("seal + open");
    for len in [16usize, 640] {
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("{len} B body"), |b| {
            let plain = vec![0xA5u8; len];
            let mut sealed = vec![0u8; len + SEAL_OVERHEAD];
            let mut sealer = Sealer::new(&key);
            let mut opener = Opener::new(&key);
            b.iter(|| {
                let n = sealer.seal(&[1, 1, 0, 0, 2], &plain, &mut sealed).unwrap();
                let out = opener.open(&[1, 1, 0, 0, 2], &mut sealed[..n]).unwrap();
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
