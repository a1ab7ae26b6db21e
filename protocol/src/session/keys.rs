//! Long-term keys: what derives from the device secret, each under its own label.
//!
//! | key | derivation |
//! |---|---|
//! | role key of epoch 1 | `HKDF-SHA256(salt = "thecal/role-key/v3", ikm = device secret, info = role tag ‖ epoch (u32 LE) ‖ serial)` |
//! | nonce key | `HKDF-SHA256(salt = "thecal/nonce-key/v3", ikm = device secret, info = serial)` |
//! | emergency key | `HKDF-SHA256(salt = "thecal/emergency-key/v3", ikm = serial, info = "emergency")` (public) |
//!
//! A provisioning derives every role key at one epoch (1 at the factory, one above every
//! earlier epoch at a re-provisioning). A rotated role key is a random key a programmer
//! drew and sent inside a sealed session; it does not derive from the device secret.

use hkdf::Hkdf;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Secret, KEY_LEN, NONCE_LEN};
use crate::message::Role;

type HmacSha256 = Hmac<Sha256>;

/// Wire label of a role (its name), as in key files.
pub const fn role_label(role: Role) -> &'static [u8] {
    match role {
        Role::Patient => b"patient",
        Role::Clinician => b"clinician",
        Role::Service => b"service",
        Role::Emergency => b"emergency",
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Secret {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut okm = [0u8; KEY_LEN];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand_multi_info(info, &mut okm);
    Secret::new(okm)
}

/// The emergency role's key on the pump with `serial`. It is public on purpose (anyone
/// who reads the serial with `Identify` can compute it): the emergency role is
/// authorised by physical presence, not by a key. Its sessions are still sealed, and
/// forward-secret like any other: an eavesdropper cannot read them.
pub fn emergency_key(serial: &str) -> Secret {
    hkdf(
        b"thecal/emergency-key/v3",
        serial.as_bytes(),
        &[role_label(Role::Emergency)],
    )
}

/// The derived key of `role` at `epoch` on the pump with `serial` (what provisioning
/// hands out at [`super::FIRST_EPOCH`]). For [`Role::Emergency`], the public
/// [`emergency_key`], whatever the secret.
pub fn role_key(device_secret: &Secret, role: Role, epoch: u32, serial: &str) -> Secret {
    if role == Role::Emergency {
        return emergency_key(serial);
    }
    hkdf(
        b"thecal/role-key/v3",
        device_secret.as_bytes(),
        &[
            &[role.index() as u8],
            &epoch.to_le_bytes(),
            serial.as_bytes(),
        ],
    )
}

/// The key of the pump's handshake nonces (never used for anything else).
pub fn nonce_key(device_secret: &Secret, serial: &str) -> Secret {
    hkdf(
        b"thecal/nonce-key/v3",
        device_secret.as_bytes(),
        &[serial.as_bytes()],
    )
}

/// The pump's `n`-th handshake nonce of boot `epoch`: the first 16 bytes of
/// `HMAC-SHA256(nonce key, "thecal/device-nonce/v3" ‖ epoch ‖ n)` (both u64 LE). `epoch`
/// is new at every boot and never repeats; `n` counts handshakes in RAM, so a nonce
/// never repeats and no flash is written for a handshake.
pub fn device_nonce(nonce_key: &Secret, epoch: u64, n: u64) -> [u8; NONCE_LEN] {
    let mut out = [0u8; NONCE_LEN];
    if let Ok(mut mac) = HmacSha256::new_from_slice(nonce_key.as_bytes()) {
        mac.update(b"thecal/device-nonce/v3");
        mac.update(&epoch.to_le_bytes());
        mac.update(&n.to_le_bytes());
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        for (o, f) in out.iter_mut().zip(full) {
            *o = f;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_its_own() {
        let secret = Secret::new([7; 32]);
        let k = role_key(&secret, Role::Clinician, 1, "SIM000001");
        for other in [
            role_key(&secret, Role::Patient, 1, "SIM000001"),
            role_key(&secret, Role::Clinician, 2, "SIM000001"),
            role_key(&secret, Role::Clinician, 1, "SIM000002"),
            role_key(&Secret::new([8; 32]), Role::Clinician, 1, "SIM000001"),
            nonce_key(&secret, "SIM000001"),
        ] {
            assert!(!k.ct_eq(&other));
        }
        let n = nonce_key(&secret, "SIM000001");
        assert_ne!(device_nonce(&n, 1, 1), device_nonce(&n, 1, 2));
        assert_ne!(device_nonce(&n, 1, 1), device_nonce(&n, 2, 1));
        // The emergency key needs no secret and is the same whatever the secret.
        assert!(
            role_key(&secret, Role::Emergency, 1, "SIM000001").ct_eq(&role_key(
                &Secret::new([8; 32]),
                Role::Emergency,
                9,
                "SIM000001"
            ))
        );
        assert!(!emergency_key("SIM000001").ct_eq(&emergency_key("SIM000002")));
    }
}
