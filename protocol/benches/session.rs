//! Secure-session cost on the host CPU: a whole handshake (both sides' work: role key,
//! both proofs and their checks, session keys) and sealing + opening a Status-sized and a
//! prescription-sized body.
//!
//! `cargo bench -p thecal-protocol --bench session`; `-- --test` runs each case once (CI).
//! The figures are in docs/BENCHMARKS.md; the on-device cost is the firmware's.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use thecal_protocol::message::Role;
use thecal_protocol::session::{
    device_nonce, device_proof, host_proof, role_key, session_keys, verify_device_proof,
    verify_host_proof, Opener, Sealer, Secret, Transcript, SEAL_OVERHEAD,
};

fn handshake(secret: &Secret, n: u64) -> bool {
    let serial = "SIM000001";
    let key = role_key(secret, Role::Clinician, serial);
    let host_nonce = [0x22; 16];
    let dev_nonce = device_nonce(secret, 1, n);
    let t = Transcript {
        role: Role::Clinician,
        host_nonce: &host_nonce,
        device_nonce: &dev_nonce,
        serial,
    };
    let pd = device_proof(&key, &t);
    let ok = verify_device_proof(&key, &t, &pd);
    let ph = host_proof(&key, &t);
    let ok = ok && verify_host_proof(&key, &t, &ph);
    let keys = session_keys(&key, &t);
    ok && keys.to_device != keys.to_host
}

fn bench(c: &mut Criterion) {
    let secret = Secret([0x11; 32]);
    c.bench_function("handshake (both sides)", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            black_box(handshake(&secret, n))
        })
    });
    let key = Secret([0x33; 32]);
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
