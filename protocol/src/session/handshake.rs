//! The forward-secret handshake: an ephemeral X25519 exchange authenticated by the role
//! key (the shape of Noise `NNpsk2`: `e`, `e, ee`, then both sides prove the PSK).
//!
//! 1. Programmer → `SessionHello { role, epoch, nonce_h, e_h }`: `e_h` is the public key
//!    of a fresh X25519 secret; `epoch` names the role key the programmer holds.
//! 2. Pump → `SessionChallenge { nonce_d, e_d, proof_d }`. The pump computes
//!    `dh = X25519(e_d secret, e_h)`, the transcript hash `th` ([`Transcript::hash`]) and
//!    `HKDF-SHA256(salt = th, ikm = dh ‖ K_r, info = "thecal/session/v3")` → 128 bytes:
//!    device proof key, host proof key, programmer→pump key, pump→programmer key
//!    ([`HandshakeKeys`]). `proof_d = HMAC-SHA256(device proof key, th)`. The pump then
//!    forgets its ephemeral secret.
//! 3. Programmer → `SessionProof { nonce_h, proof_h }`, `proof_h = HMAC-SHA256(host proof
//!    key, th)`, after checking `proof_d` (mutual authentication).
//!
//! A shared secret of all zeros (a low-order public key) is refused on both sides.
//! Whoever later learns `K_r` (or the device secret) still lacks `dh`, so a recorded
//! session stays secret: forward secrecy. The transcript binds the protocol version,
//! schema hash and capabilities the pump announced in `Identify`: an attacker who
//! rewrites them (a downgrade) makes the proofs fail.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x25519_dalek::{x25519, X25519_BASEPOINT_BYTES};
use zeroize::Zeroize;

use super::{take_key, Secret, SessionKeys, KEY_LEN, NONCE_LEN, PROOF_LEN, PUBLIC_LEN};
use crate::message::Role;

type HmacSha256 = Hmac<Sha256>;

/// What the pump announced in `Identify` and both sides bind into the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// Protocol version ([`crate::PROTOCOL_VERSION`]).
    pub version: u8,
    /// Schema hash ([`crate::SCHEMA_HASH`]).
    pub schema: u32,
    /// Capability bits.
    pub capabilities: u32,
}

/// Everything both proofs and the session keys cover.
#[derive(Debug, Clone, Copy)]
pub struct Transcript<'a> {
    /// Version, schema and capabilities.
    pub binding: Binding,
    /// Role asked for.
    pub role: Role,
    /// Epoch of the role key.
    pub epoch: u32,
    /// Pump serial number (at most 255 bytes are hashed).
    pub serial: &'a str,
    /// Programmer's nonce.
    pub host_nonce: &'a [u8; NONCE_LEN],
    /// Programmer's ephemeral public key.
    pub host_ephemeral: &'a [u8; PUBLIC_LEN],
    /// Pump's nonce.
    pub device_nonce: &'a [u8; NONCE_LEN],
    /// Pump's ephemeral public key.
    pub device_ephemeral: &'a [u8; PUBLIC_LEN],
}

impl Transcript<'_> {
    /// `SHA-256("thecal/handshake/v3" ‖ version (u8) ‖ schema (u32 LE) ‖ capabilities
    /// (u32 LE) ‖ role tag (u8) ‖ epoch (u32 LE) ‖ serial length (u8) ‖ serial ‖ nonce_h ‖
    /// e_h ‖ nonce_d ‖ e_d)`.
    pub fn hash(&self) -> [u8; 32] {
        let serial = self.serial.as_bytes();
        let serial = serial.get(..serial.len().min(255)).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(b"thecal/handshake/v3");
        h.update([self.binding.version]);
        h.update(self.binding.schema.to_le_bytes());
        h.update(self.binding.capabilities.to_le_bytes());
        h.update([self.role.index() as u8]);
        h.update(self.epoch.to_le_bytes());
        h.update([serial.len() as u8]);
        h.update(serial);
        h.update(self.host_nonce);
        h.update(self.host_ephemeral);
        h.update(self.device_nonce);
        h.update(self.device_ephemeral);
        h.finalize().into()
    }
}

/// An X25519 secret used for one handshake (or, for the pump's identity, its static key).
#[derive(Debug)]
pub struct Ephemeral(Secret);

impl Ephemeral {
    /// The secret of 32 random bytes (clamped by X25519 itself).
    pub fn from_bytes(random: [u8; KEY_LEN]) -> Self {
        Self(Secret::new(random))
    }

    /// The secret's bytes (to store a static key).
    pub fn as_secret(&self) -> &Secret {
        &self.0
    }

    /// Its public key.
    pub fn public(&self) -> [u8; PUBLIC_LEN] {
        x25519(*self.0.as_bytes(), X25519_BASEPOINT_BYTES)
    }

    /// The shared secret with `peer`; `None` when it is all zeros (a low-order point:
    /// the peer forced a known result).
    pub fn agree(&self, peer: &[u8; PUBLIC_LEN]) -> Option<Secret> {
        let mut shared = x25519(*self.0.as_bytes(), *peer);
        let zero: bool = shared.ct_eq(&[0u8; 32]).into();
        let out = (!zero).then(|| Secret::new(shared));
        shared.zeroize();
        out
    }
}

/// The keys of one handshake: both proof keys, then the session keys.
#[derive(Debug)]
pub struct HandshakeKeys {
    device_proof: Secret,
    host_proof: Secret,
    /// Programmer → pump.
    pub to_device: Secret,
    /// Pump → programmer.
    pub to_host: Secret,
}

fn mac(key: &Secret, data: &[u8]) -> HmacSha256 {
    let mut m = match HmacSha256::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        // HMAC accepts keys of any length.
        Err(_) => HmacSha256::new(&Default::default()),
    };
    m.update(data);
    m
}

impl HandshakeKeys {
    /// `HKDF-SHA256(salt = th, ikm = shared ‖ role_key, info = "thecal/session/v3")`.
    pub fn derive(shared: &Secret, role_key: &Secret, th: &[u8; 32]) -> Self {
        let mut ikm = [0u8; 2 * KEY_LEN];
        let (a, b) = ikm.split_at_mut(KEY_LEN);
        a.copy_from_slice(shared.as_bytes());
        b.copy_from_slice(role_key.as_bytes());
        let hk = hkdf::Hkdf::<Sha256>::new(Some(th), &ikm);
        ikm.zeroize();
        let mut okm = [0u8; 4 * KEY_LEN];
        // 128 bytes is a valid HKDF-SHA256 output length.
        let _ = hk.expand(b"thecal/session/v3", &mut okm);
        let keys = Self {
            device_proof: take_key(&okm, 0),
            host_proof: take_key(&okm, 1),
            to_device: take_key(&okm, 2),
            to_host: take_key(&okm, 3),
        };
        okm.zeroize();
        keys
    }

    /// The pump's proof.
    pub fn device_proof(&self, th: &[u8; 32]) -> [u8; PROOF_LEN] {
        mac(&self.device_proof, th).finalize().into_bytes().into()
    }

    /// The programmer's proof.
    pub fn host_proof(&self, th: &[u8; 32]) -> [u8; PROOF_LEN] {
        mac(&self.host_proof, th).finalize().into_bytes().into()
    }

    /// Checks the pump's proof in constant time.
    pub fn verify_device_proof(&self, th: &[u8; 32], got: &[u8; PROOF_LEN]) -> bool {
        mac(&self.device_proof, th).verify_slice(got).is_ok()
    }

    /// Checks the programmer's proof in constant time.
    pub fn verify_host_proof(&self, th: &[u8; 32], got: &[u8; PROOF_LEN]) -> bool {
        mac(&self.host_proof, th).verify_slice(got).is_ok()
    }

    /// The session keys (the proof keys are wiped).
    pub fn into_session(self) -> SessionKeys {
        SessionKeys {
            to_device: self.to_device,
            to_host: self.to_host,
        }
    }
}

/// Whether two proofs are equal, in constant time (a pump that stored the proof it
/// expects compares with this).
pub fn proofs_match(expected: &[u8; PROOF_LEN], got: &[u8; PROOF_LEN]) -> bool {
    expected.ct_eq(got).into()
}

/// The pump's source of ephemeral secrets: a 32-byte pool that the platform stirs with
/// entropy (the nRF52840 RNG, the OS on the simulator) and that ratchets forward at every
/// draw, so the secret of a past handshake cannot be recomputed from a later RAM dump.
/// Seeded at boot from the nonce key and the boot epoch: without a hardware RNG (QEMU) the
/// draws are still unique, but predictable to whoever holds the device secret.
pub struct Pool(Secret);

impl Pool {
    /// A pool seeded from `seed` (the nonce key) and the boot `epoch`.
    pub fn new(seed: &Secret, epoch: u64) -> Self {
        let mut h = Sha256::new();
        h.update(b"thecal/pool-seed/v3");
        h.update(seed.as_bytes());
        h.update(epoch.to_le_bytes());
        Self(Secret::new(h.finalize().into()))
    }

    /// Mixes `entropy` in.
    pub fn stir(&mut self, entropy: &[u8]) {
        let mut h = Sha256::new();
        h.update(b"thecal/pool-stir/v3");
        h.update(self.0.as_bytes());
        h.update(entropy);
        self.0 = Secret::new(h.finalize().into());
    }

    /// A fresh X25519 secret; the pool moves on.
    pub fn draw(&mut self) -> Ephemeral {
        let out = mac(&self.0, b"thecal/pool-draw/v3");
        let secret: [u8; 32] = out.finalize().into_bytes().into();
        self.stir(b"ratchet");
        Ephemeral::from_bytes(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BINDING: Binding = Binding {
        version: 3,
        schema: 0x1234_5678,
        capabilities: 0x3f,
    };

    #[test]
    fn both_sides_agree_and_proofs_are_not_interchangeable() {
        let k = Secret::new([7; 32]);
        let (eh, ed) = (
            Ephemeral::from_bytes([1; 32]),
            Ephemeral::from_bytes([2; 32]),
        );
        let (ph, pd) = (eh.public(), ed.public());
        let t = Transcript {
            binding: BINDING,
            role: Role::Clinician,
            epoch: 1,
            serial: "SIM000001",
            host_nonce: &[3; 16],
            host_ephemeral: &ph,
            device_nonce: &[4; 16],
            device_ephemeral: &pd,
        };
        let th = t.hash();
        let host = HandshakeKeys::derive(&eh.agree(&pd).unwrap(), &k, &th);
        let pump = HandshakeKeys::derive(&ed.agree(&ph).unwrap(), &k, &th);
        let proof = pump.device_proof(&th);
        assert!(host.verify_device_proof(&th, &proof));
        assert!(
            !pump.verify_host_proof(&th, &proof),
            "a device proof is no host proof"
        );
        assert!(pump.verify_host_proof(&th, &host.host_proof(&th)));
        assert!(host.to_device.ct_eq(&pump.to_device) && host.to_host.ct_eq(&pump.to_host));
        assert!(!host.to_device.ct_eq(&host.to_host));
        // Another role key, or any other transcript (a downgraded capability), disagrees.
        let wrong = HandshakeKeys::derive(&eh.agree(&pd).unwrap(), &Secret::new([8; 32]), &th);
        assert!(!wrong.verify_device_proof(&th, &proof));
        let downgraded = Transcript {
            binding: Binding {
                capabilities: 0x1f,
                ..BINDING
            },
            ..t
        };
        assert!(!host.verify_device_proof(&downgraded.hash(), &proof));
    }

    #[test]
    fn a_low_order_public_key_is_refused() {
        let e = Ephemeral::from_bytes([9; 32]);
        assert!(e.agree(&[0; 32]).is_none());
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(e.agree(&one).is_none());
    }

    #[test]
    fn the_pool_never_repeats_and_moves_on() {
        let mut a = Pool::new(&Secret::new([1; 32]), 7);
        let first = a.draw().public();
        let second = a.draw().public();
        assert_ne!(first, second);
        let mut b = Pool::new(&Secret::new([1; 32]), 8);
        assert_ne!(b.draw().public(), first);
        let mut c = Pool::new(&Secret::new([1; 32]), 7);
        c.stir(b"rng bytes");
        assert_ne!(c.draw().public(), first);
    }
}
