//! Secure sessions (PROTOCOL.md 2.9): keys, the forward-secret handshake, provisioning by
//! key agreement and sealed frames.
//!
//! * **Keys, each for one purpose** ([`keys`]). A pump holds a 32-byte device secret,
//!   established by [`provision`] (key agreement with the pump's own X25519 key pair:
//!   the secret never crosses the link). From it, under separate HKDF labels: the role
//!   keys of epoch 1 ([`role_key`]) and the key of the pump's handshake nonces
//!   ([`nonce_key`]). A role key is replaced by a sealed `RotateKey` (a random key the
//!   programmer drew), which moves its role to the next epoch; the pump accepts only the
//!   key of the epoch in force.
//! * **Handshake** ([`handshake`]). `SessionHello` carries the role, the key epoch, a
//!   nonce and an ephemeral X25519 public key; `SessionChallenge` the pump's nonce,
//!   ephemeral public key and proof; `SessionProof` the programmer's proof. Proof keys
//!   and session keys come from `HKDF(salt = transcript hash, ikm = X25519 shared secret ‖
//!   role key)`: a recording of a session stays secret even after the role key (or the
//!   device secret) is later lost, because the shared secret of the two ephemeral keys
//!   was never stored. The transcript binds protocol version, schema hash and
//!   capabilities, so a future version cannot be downgraded by an active attacker.
//! * **Sealed frames** ([`seal`]): ChaCha20-Poly1305 with a per-direction counter.
//!
//! Every secret type wipes itself when dropped and has no `Clone` or `PartialEq`;
//! [`Secret::ct_eq`] compares in constant time.

pub mod handshake;
pub mod keyfile;
pub mod keys;
pub mod provision;
pub mod seal;

pub use handshake::{proofs_match, Binding, Ephemeral, HandshakeKeys, Pool, Transcript};
pub use keys::{device_nonce, emergency_key, nonce_key, role_key, role_label};
pub use provision::{ProvisionKeys, ProvisionTranscript};
pub use seal::{Opener, SealError, Sealer};

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Key length.
pub const KEY_LEN: usize = 32;
/// X25519 public key length.
pub const PUBLIC_LEN: usize = 32;
/// Handshake nonce length.
pub const NONCE_LEN: usize = 16;
/// Handshake proof length.
pub const PROOF_LEN: usize = 32;
/// Sealed-frame counter length on the wire: the low 16 bits of the direction's u32
/// counter ([`seal`] places them).
pub const COUNTER_LEN: usize = 2;
/// AEAD tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed body adds to the plaintext.
pub const SEAL_OVERHEAD: usize = COUNTER_LEN + TAG_LEN;
/// The key epoch of every role key derived at provisioning.
pub const FIRST_EPOCH: u32 = 1;

/// A 32-byte secret (device secret, role key, session key, X25519 private key). Wiped
/// when dropped; never printed; compared only in constant time.
pub struct Secret([u8; KEY_LEN]);

impl Secret {
    /// Wraps `bytes`.
    pub const fn new(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The bytes (to key a primitive, or to store the secret).
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A second copy (explicit: a secret is never copied by accident).
    pub fn duplicate(&self) -> Self {
        Self(self.0)
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Secret) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The keys of one session.
#[derive(Debug)]
pub struct SessionKeys {
    /// Programmer → pump.
    pub to_device: Secret,
    /// Pump → programmer.
    pub to_host: Secret,
}

/// Splits 32 bytes off the front of `okm` as a [`Secret`].
fn take_key(okm: &[u8], index: usize) -> Secret {
    let mut key = [0u8; KEY_LEN];
    if let Some(part) = okm.get(index * KEY_LEN..(index + 1) * KEY_LEN) {
        key.copy_from_slice(part);
    }
    Secret(key)
}
