//! Secure sessions: role keys, the handshake proofs, session keys and sealed frames.
//!
//! * **Role keys.** Each pump holds a 32-byte device secret, provisioned once. The key of
//!   role `r` is `HKDF-SHA256(salt = "thecal/role-key/v1", ikm = secret, info = r ‖
//!   serial)`; a programmer holds the key of its role only, in a key file.
//! * **Handshake.** The programmer sends `SessionHello { role, nonce_h }` (16 fresh random
//!   bytes); the pump answers `SessionChallenge { nonce_d, proof_d }` with
//!   `proof_d = HMAC-SHA256(K_r, "thecal/device-proof/v1" ‖ r ‖ nonce_h ‖ nonce_d ‖ serial)`;
//!   the programmer checks it (the pump holds the key: mutual authentication) and sends
//!   `SessionProof { proof_h }`, `proof_h = HMAC-SHA256(K_r, "thecal/host-proof/v1" ‖ r ‖
//!   nonce_h ‖ nonce_d ‖ serial)`. The two proofs use different labels, so neither can be
//!   reflected as the other. Both sides then derive
//!   `HKDF-SHA256(salt = nonce_h ‖ nonce_d, ikm = K_r, info = "thecal/session/v1" ‖ r)`
//!   → 64 bytes: the programmer→pump key, then the pump→programmer key.
//! * **Sealed frames.** After the handshake every frame carries the `SEALED` flag and a
//!   body of `counter (u32 LE) ‖ ChaCha20-Poly1305 ciphertext ‖ tag (16)`, with the
//!   nonce `counter (4, LE) ‖ 0 (8)` under that direction's key and the 5 header bytes as
//!   associated data. A receiver accepts only counters above the last it accepted, so a
//!   replayed, reordered or reflected frame (other direction, other key) is rejected.
//!   Overhead: 20 bytes per frame. A sender stops at counter `u32::MAX`: the session must
//!   be renewed.
//!
//! Why ChaCha20-Poly1305: constant-time and fast in software on microcontrollers without
//! AES hardware (the Cortex-M3/M4 targets here), a 16-byte tag, and a well-kept no_std
//! RustCrypto implementation.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::frame::HEADER_LEN;
use crate::message::Role;

/// Key length.
pub const KEY_LEN: usize = 32;
/// Handshake nonce length.
pub const NONCE_LEN: usize = 16;
/// Handshake proof length.
pub const PROOF_LEN: usize = 32;
/// Sealed-frame counter length.
pub const COUNTER_LEN: usize = 4;
/// AEAD tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed body adds to the plaintext.
pub const SEAL_OVERHEAD: usize = COUNTER_LEN + TAG_LEN;

type HmacSha256 = Hmac<Sha256>;

/// A 32-byte secret (device secret, role key or session key).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub [u8; KEY_LEN]);

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Wire label of a role inside key derivations.
pub const fn role_label(role: Role) -> &'static [u8] {
    match role {
        Role::Patient => b"patient",
        Role::Clinician => b"clinician",
        Role::Service => b"service",
        Role::Emergency => b"emergency",
    }
}

/// The emergency role's key on the pump with `serial`:
/// `HKDF-SHA256(salt = "thecal/emergency-key/v2", ikm = serial, info = "emergency")`.
/// It is public on purpose (anyone who reads the serial with `Identify` can compute it):
/// the emergency role is authorised by physical presence, not by a key. The session it
/// opens is still sealed like any other, so its frames cannot be altered or replayed.
pub fn emergency_key(serial: &str) -> Secret {
    let hk = Hkdf::<Sha256>::new(Some(b"thecal/emergency-key/v2"), serial.as_bytes());
    let mut okm = [0u8; KEY_LEN];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(role_label(Role::Emergency), &mut okm);
    Secret(okm)
}

/// The key of `role` on the pump with `serial` (for [`Role::Emergency`], the public
/// [`emergency_key`], whatever the secret).
pub fn role_key(device_secret: &Secret, role: Role, serial: &str) -> Secret {
    if role == Role::Emergency {
        return emergency_key(serial);
    }
    let hk = Hkdf::<Sha256>::new(Some(b"thecal/role-key/v1"), &device_secret.0);
    let mut okm = [0u8; KEY_LEN];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand_multi_info(&[role_label(role), serial.as_bytes()], &mut okm);
    Secret(okm)
}

/// Everything both proofs cover.
#[derive(Debug, Clone, Copy)]
pub struct Transcript<'a> {
    /// Role asked for.
    pub role: Role,
    /// Programmer's nonce.
    pub host_nonce: &'a [u8; NONCE_LEN],
    /// Pump's nonce.
    pub device_nonce: &'a [u8; NONCE_LEN],
    /// Pump serial number.
    pub serial: &'a str,
}

fn proof(key: &Secret, label: &[u8], t: &Transcript<'_>) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(&key.0) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length.
        Err(_) => return HmacSha256::new(&Default::default()),
    };
    for part in [
        label,
        role_label(t.role),
        &t.host_nonce[..],
        &t.device_nonce[..],
        t.serial.as_bytes(),
    ] {
        mac.update(part);
    }
    mac
}

const DEVICE_LABEL: &[u8] = b"thecal/device-proof/v1";
const HOST_LABEL: &[u8] = b"thecal/host-proof/v1";

/// The pump's proof.
pub fn device_proof(key: &Secret, t: &Transcript<'_>) -> [u8; PROOF_LEN] {
    proof(key, DEVICE_LABEL, t).finalize().into_bytes().into()
}

/// The programmer's proof.
pub fn host_proof(key: &Secret, t: &Transcript<'_>) -> [u8; PROOF_LEN] {
    proof(key, HOST_LABEL, t).finalize().into_bytes().into()
}

/// Checks the pump's proof in constant time.
pub fn verify_device_proof(key: &Secret, t: &Transcript<'_>, got: &[u8; PROOF_LEN]) -> bool {
    proof(key, DEVICE_LABEL, t).verify_slice(got).is_ok()
}

/// Checks the programmer's proof in constant time.
pub fn verify_host_proof(key: &Secret, t: &Transcript<'_>, got: &[u8; PROOF_LEN]) -> bool {
    proof(key, HOST_LABEL, t).verify_slice(got).is_ok()
}

/// The pump's `n`-th handshake nonce of boot `epoch`: the first 16 bytes of
/// `HMAC-SHA256(key, "thecal/device-nonce/v2" ‖ epoch ‖ n)` (both u64 LE). `key` is the
/// device secret (the emergency key on an unprovisioned pump). `n` counts handshakes in
/// RAM; `epoch` is new at every boot and never repeats, even when the store falls back
/// to an older snapshot (see the pump's boot), so a nonce never repeats and no flash is
/// written for a handshake.
pub fn device_nonce(key: &Secret, epoch: u64, n: u64) -> [u8; NONCE_LEN] {
    let mut out = [0u8; NONCE_LEN];
    if let Ok(mut mac) = HmacSha256::new_from_slice(&key.0) {
        mac.update(b"thecal/device-nonce/v2");
        mac.update(&epoch.to_le_bytes());
        mac.update(&n.to_le_bytes());
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        out.copy_from_slice(full.get(..NONCE_LEN).unwrap_or(&[0; NONCE_LEN]));
    }
    out
}

/// The keys of one session.
#[derive(Debug, Clone)]
pub struct SessionKeys {
    /// Programmer → pump.
    pub to_device: Secret,
    /// Pump → programmer.
    pub to_host: Secret,
}

/// Derives the session keys from the role key and both nonces.
pub fn session_keys(key: &Secret, t: &Transcript<'_>) -> SessionKeys {
    let mut salt = [0u8; 2 * NONCE_LEN];
    let (a, b) = salt.split_at_mut(NONCE_LEN);
    a.copy_from_slice(t.host_nonce);
    b.copy_from_slice(t.device_nonce);
    let hk = Hkdf::<Sha256>::new(Some(&salt), &key.0);
    let mut okm = [0u8; 2 * KEY_LEN];
    let _ = hk.expand_multi_info(&[b"thecal/session/v1", role_label(t.role)], &mut okm);
    let (d, h) = okm.split_at(KEY_LEN);
    let mut to_device = [0u8; KEY_LEN];
    let mut to_host = [0u8; KEY_LEN];
    to_device.copy_from_slice(d);
    to_host.copy_from_slice(h);
    SessionKeys {
        to_device: Secret(to_device),
        to_host: Secret(to_host),
    }
}

/// Why a sealed body was not accepted, or could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SealError {
    /// Shorter than counter + tag.
    TooShort,
    /// The counter is not above the last one accepted: a replay or a reordering.
    Replayed {
        /// Counter carried.
        counter: u32,
        /// Last accepted.
        last: u32,
    },
    /// The tag did not verify: tampered, wrong key or wrong direction.
    Forged,
    /// The sending counter is exhausted: renew the session.
    Exhausted,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl core::fmt::Display for SealError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SealError::TooShort => f.write_str("sealed body shorter than counter and tag"),
            SealError::Replayed { counter, last } => write!(
                f,
                "counter {counter} is not above the last accepted ({last}): replayed or reordered"
            ),
            SealError::Forged => f.write_str("authentication tag does not verify"),
            SealError::Exhausted => f.write_str("session counter exhausted; renew the session"),
            SealError::BufferTooSmall => f.write_str("buffer too small for the sealed body"),
        }
    }
}

impl core::error::Error for SealError {}

fn nonce(counter: u32) -> Nonce {
    let [a, b, c, d] = counter.to_le_bytes();
    Nonce::from([a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 0])
}

/// The sending half of a session direction.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    next: u32,
}

impl Sealer {
    /// A sealer whose first counter is 1.
    pub fn new(key: &Secret) -> Self {
        Self::starting_at(key, 1)
    }

    /// A sealer whose next counter is `next` (tests of the counter limit).
    pub fn starting_at(key: &Secret, next: u32) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&Key::from(key.0)),
            next,
        }
    }

    /// Whether the counter is used up (the session must be renewed).
    pub fn exhausted(&self) -> bool {
        self.next == u32::MAX
    }

    /// Seals `plaintext` into `out` (`counter ‖ ciphertext ‖ tag`) under `header` (the
    /// five header bytes, `SEALED` flag set); returns the body length.
    pub fn seal(
        &mut self,
        header: &[u8; HEADER_LEN],
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        if self.next == u32::MAX {
            return Err(SealError::Exhausted);
        }
        let total = plaintext.len() + SEAL_OVERHEAD;
        let body = out.get_mut(..total).ok_or(SealError::BufferTooSmall)?;
        let (counter, rest) = body.split_at_mut(COUNTER_LEN);
        let (text, tag_out) = rest.split_at_mut(plaintext.len());
        counter.copy_from_slice(&self.next.to_le_bytes());
        text.copy_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce(self.next), header, text.into())
            .map_err(|_| SealError::BufferTooSmall)?;
        tag_out.copy_from_slice(&tag);
        self.next += 1;
        Ok(total)
    }
}

/// The receiving half of a session direction.
#[derive(Clone)]
pub struct Opener {
    cipher: ChaCha20Poly1305,
    last: u32,
}

impl Opener {
    /// An opener that accepts counters from 1.
    pub fn new(key: &Secret) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&Key::from(key.0)),
            last: 0,
        }
    }

    /// The last counter accepted.
    pub fn last(&self) -> u32 {
        self.last
    }

    /// Authenticates and decrypts `body` in place; returns the plaintext. Nothing
    /// changes unless it is authentic and fresh.
    pub fn open<'b>(
        &mut self,
        header: &[u8; HEADER_LEN],
        body: &'b mut [u8],
    ) -> Result<&'b [u8], SealError> {
        if body.len() < SEAL_OVERHEAD {
            return Err(SealError::TooShort);
        }
        let (counter, rest) = body.split_at_mut(COUNTER_LEN);
        let counter = match *counter {
            [a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
            _ => return Err(SealError::TooShort),
        };
        // u32::MAX is never sent (a sender stops before it): dropped like a replay.
        if counter <= self.last || counter == u32::MAX {
            return Err(SealError::Replayed {
                counter,
                last: self.last,
            });
        }
        let split = rest.len() - TAG_LEN;
        let (text, tag) = rest.split_at_mut(split);
        let tag = Tag::try_from(&tag[..]).map_err(|_| SealError::TooShort)?;
        self.cipher
            .decrypt_inout_detached(&nonce(counter), header, (&mut *text).into(), &tag)
            .map_err(|_| SealError::Forged)?;
        self.last = counter;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript<'a>(h: &'a [u8; 16], d: &'a [u8; 16]) -> Transcript<'a> {
        Transcript {
            role: Role::Clinician,
            host_nonce: h,
            device_nonce: d,
            serial: "SIM000001",
        }
    }

    #[test]
    fn both_sides_agree_and_proofs_are_not_interchangeable() {
        let secret = Secret([7; 32]);
        let k = role_key(&secret, Role::Clinician, "SIM000001");
        assert_ne!(k, role_key(&secret, Role::Patient, "SIM000001"));
        assert_ne!(k, role_key(&secret, Role::Clinician, "SIM000002"));
        let (h, d) = ([1; 16], device_nonce(&secret, 1, 1));
        let t = transcript(&h, &d);
        let pd = device_proof(&k, &t);
        assert!(verify_device_proof(&k, &t, &pd));
        assert!(
            !verify_host_proof(&k, &t, &pd),
            "a device proof is no host proof"
        );
        let wrong = role_key(&Secret([8; 32]), Role::Clinician, "SIM000001");
        assert!(!verify_host_proof(&k, &t, &host_proof(&wrong, &t)));
        assert_ne!(device_nonce(&secret, 1, 1), device_nonce(&secret, 1, 2));
        assert_ne!(device_nonce(&secret, 1, 1), device_nonce(&secret, 2, 1));
        // The emergency key needs no secret and is the same whatever the secret.
        assert_eq!(
            role_key(&secret, Role::Emergency, "SIM000001"),
            role_key(&Secret([8; 32]), Role::Emergency, "SIM000001")
        );
        assert_ne!(emergency_key("SIM000001"), emergency_key("SIM000002"));
    }

    #[test]
    fn sealed_frames_open_once_in_order_and_only_in_their_direction() {
        let k = role_key(&Secret([3; 32]), Role::Patient, "X");
        let (h, d) = ([9; 16], [4; 16]);
        let keys = session_keys(&k, &transcript(&h, &d));
        let mut tx = Sealer::new(&keys.to_device);
        let mut rx = Opener::new(&keys.to_device);
        let mut wrong_direction = Opener::new(&keys.to_host);
        let header = [1, 1, 7, 0, 2];
        let mut a = [0u8; 64];
        let n = tx.seal(&header, b"status", &mut a).unwrap();
        assert_eq!(n, 6 + SEAL_OVERHEAD);
        let mut b = [0u8; 64];
        let m = tx.seal(&header, b"second", &mut b).unwrap();
        let mut replay = a;
        let mut copy = a;
        assert_eq!(
            wrong_direction.open(&header, &mut copy[..n]),
            Err(SealError::Forged)
        );
        // b before a: a is then a reordering.
        assert_eq!(rx.open(&header, &mut b[..m]).unwrap(), b"second");
        assert!(matches!(
            rx.open(&header, &mut a[..n]),
            Err(SealError::Replayed { .. })
        ));
        assert!(matches!(
            rx.open(&header, &mut replay[..n]),
            Err(SealError::Replayed { .. })
        ));
        // Any flipped bit, in the header or the body, is refused.
        let mut tx = Sealer::new(&keys.to_device);
        let mut rx = Opener::new(&keys.to_device);
        let mut c = [0u8; 64];
        let n = tx.seal(&header, b"bolus", &mut c).unwrap();
        for bit in 0..(n + HEADER_LEN) * 8 {
            let (mut hh, mut cc) = (header, c);
            if bit < HEADER_LEN * 8 {
                hh[bit / 8] ^= 1 << (bit % 8);
            } else {
                cc[bit / 8 - HEADER_LEN] ^= 1 << (bit % 8);
            }
            assert!(rx.open(&hh, &mut cc[..n]).is_err(), "bit {bit}");
        }
        assert_eq!(rx.open(&header, &mut c[..n]).unwrap(), b"bolus");
    }

    #[test]
    fn the_counter_stops_at_its_maximum() {
        let key = Secret([5; 32]);
        let mut tx = Sealer::starting_at(&key, u32::MAX - 1);
        let mut out = [0u8; 32];
        assert!(tx.seal(&[0; 5], b"x", &mut out).is_ok());
        assert_eq!(tx.seal(&[0; 5], b"x", &mut out), Err(SealError::Exhausted));
        assert!(tx.exhausted());
    }

    #[test]
    fn a_receiver_drops_counter_u32_max_even_when_authentic() {
        // Only a sender that broke the rule could have made it: PROTOCOL.md 2.9.
        let key = Secret([6; 32]);
        let mut out = [0u8; 32];
        let n = Sealer::starting_at(&key, u32::MAX - 1)
            .seal(&[0; 5], b"x", &mut out)
            .unwrap();
        // Re-seal the same plaintext under counter u32::MAX by hand.
        let cipher = ChaCha20Poly1305::new(&Key::from(key.0));
        let mut text = *b"x";
        let tag = cipher
            .encrypt_inout_detached(&nonce(u32::MAX), &[0; 5], (&mut text[..]).into())
            .unwrap();
        let mut body = [0u8; 21];
        body[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        body[4] = text[0];
        body[5..].copy_from_slice(&tag);
        let mut rx = Opener::new(&key);
        assert!(matches!(
            rx.open(&[0; 5], &mut body),
            Err(SealError::Replayed { .. })
        ));
        // The last usable counter opens.
        assert_eq!(rx.open(&[0; 5], &mut out[..n]).unwrap(), b"x");
    }
}
