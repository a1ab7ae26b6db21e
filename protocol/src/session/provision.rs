//! Provisioning by key agreement: the device secret is never sent.
//!
//! Every pump has its own static X25519 key pair, made from its RNG at its first boot;
//! the public key `P` is printed on its label and shown by `Identify`. The provisioning
//! programmer (the factory, or a service session re-provisioning the pump) draws an
//! ephemeral key `e_f` and sends `Provision { ephemeral: E_f }`. Both sides compute
//! `dh = X25519(p, E_f) = X25519(e_f, P)`,
//! `th = SHA-256("thecal/provision/v3" ‖ serial length (u8) ‖ serial ‖ P ‖ E_f)` and
//! `HKDF-SHA256(salt = th, ikm = dh, info = "thecal/device-secret/v3")` → 64 bytes: the
//! device secret, then a confirmation key. The pump answers `Provisioned { confirm }`,
//! `confirm = HMAC-SHA256(confirmation key, th)`: the programmer learns that the pump
//! holding `P`'s private key derived the same secret. An eavesdropper sees `P` and `E_f`
//! only; without `p` or `e_f` it learns nothing about the secret.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::{take_key, Secret, KEY_LEN, PROOF_LEN, PUBLIC_LEN};

type HmacSha256 = Hmac<Sha256>;

/// What a provisioning covers.
#[derive(Debug, Clone, Copy)]
pub struct ProvisionTranscript<'a> {
    /// Pump serial number (at most 255 bytes are hashed).
    pub serial: &'a str,
    /// The pump's static public key.
    pub pump_public: &'a [u8; PUBLIC_LEN],
    /// The provisioning programmer's ephemeral public key.
    pub ephemeral: &'a [u8; PUBLIC_LEN],
}

impl ProvisionTranscript<'_> {
    /// The transcript hash `th`.
    pub fn hash(&self) -> [u8; 32] {
        let serial = self.serial.as_bytes();
        let serial = serial.get(..serial.len().min(255)).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(b"thecal/provision/v3");
        h.update([serial.len() as u8]);
        h.update(serial);
        h.update(self.pump_public);
        h.update(self.ephemeral);
        h.finalize().into()
    }
}

/// The outcome of a provisioning, on either side.
#[derive(Debug)]
pub struct ProvisionKeys {
    /// The new device secret.
    pub device_secret: Secret,
    confirm_key: Secret,
    th: [u8; 32],
}

impl ProvisionKeys {
    /// Derives the device secret and confirmation key from the shared secret `dh`.
    pub fn derive(dh: &Secret, t: &ProvisionTranscript<'_>) -> Self {
        let th = t.hash();
        let hk = hkdf::Hkdf::<Sha256>::new(Some(&th), dh.as_bytes());
        let mut okm = [0u8; 2 * KEY_LEN];
        // 64 bytes is a valid HKDF-SHA256 output length.
        let _ = hk.expand(b"thecal/device-secret/v3", &mut okm);
        let keys = Self {
            device_secret: take_key(&okm, 0),
            confirm_key: take_key(&okm, 1),
            th,
        };
        okm.zeroize();
        keys
    }

    fn mac(&self) -> HmacSha256 {
        let mut m = match HmacSha256::new_from_slice(self.confirm_key.as_bytes()) {
            Ok(m) => m,
            // HMAC accepts keys of any length.
            Err(_) => HmacSha256::new(&Default::default()),
        };
        m.update(&self.th);
        m
    }

    /// The pump's confirmation.
    pub fn confirm(&self) -> [u8; PROOF_LEN] {
        self.mac().finalize().into_bytes().into()
    }

    /// Checks the pump's confirmation in constant time.
    pub fn verify(&self, got: &[u8; PROOF_LEN]) -> bool {
        self.mac().verify_slice(got).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Ephemeral;
    use super::*;

    #[test]
    fn both_ends_derive_the_same_secret_and_the_confirmation_binds_it() {
        let pump = Ephemeral::from_bytes([5; 32]);
        let factory = Ephemeral::from_bytes([6; 32]);
        let (p, e) = (pump.public(), factory.public());
        let t = ProvisionTranscript {
            serial: "SIM000001",
            pump_public: &p,
            ephemeral: &e,
        };
        let at_pump = ProvisionKeys::derive(&pump.agree(&e).unwrap(), &t);
        let at_factory = ProvisionKeys::derive(&factory.agree(&p).unwrap(), &t);
        assert!(at_pump.device_secret.ct_eq(&at_factory.device_secret));
        assert!(at_factory.verify(&at_pump.confirm()));
        // Another pump (another static key) cannot confirm.
        let other = Ephemeral::from_bytes([7; 32]);
        let fake = ProvisionKeys::derive(&other.agree(&e).unwrap(), &t);
        assert!(!at_factory.verify(&fake.confirm()));
        assert!(!fake.device_secret.ct_eq(&at_factory.device_secret));
    }
}
