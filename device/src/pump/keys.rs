//! The pump's secrets: its static key pair, the device secret and the role keys with
//! their epochs ([`crate::store::Secrets`], a store region of their own).
//!
//! * **Identity.** Made once, at the first boot that has entropy
//!   ([`Pump::create_identity`]); its public key is on the label and in `Identify`.
//! * **Provisioning** ([`Pump::provision`]): `Provision { ephemeral }` agrees the device
//!   secret with the identity key (`thecal_protocol::session::provision`). Every role
//!   key then derives from the new secret at one new epoch (1 at the factory; one above
//!   every epoch so far on a re-provisioning, so every old key is refused).
//! * **Rotation** ([`Pump::rotate_key`]): a session hands in the next epoch's key of a
//!   role; stored (one atomic record) before the answer, logged.
//!
//! A failed store changes nothing: the old secrets stay in force and in RAM.

use thecal_protocol::message::{Event, KeyEpochs, Refusal, Response, Role};
use thecal_protocol::session::{
    nonce_key, role_key, Ephemeral, ProvisionKeys, ProvisionTranscript, Secret, FIRST_EPOCH,
    PUBLIC_LEN,
};
use thecal_protocol::time::Timestamp;

use super::Pump;
use crate::store::{RoleSlot, Secrets, Storage};
use crate::therapy::motor::Motor;

/// Index of `role` in [`Secrets::keys`]; `None` for the emergency role (no stored key).
pub const fn slot(role: Role) -> Option<usize> {
    match role {
        Role::Patient => Some(0),
        Role::Clinician => Some(1),
        Role::Service => Some(2),
        Role::Emergency => None,
    }
}

impl<S: Storage, M: Motor> Pump<S, M> {
    /// The static public key, once made (computed when the secrets are loaded or
    /// written, not at every call: it is an X25519 multiplication).
    pub fn public_key(&self) -> Option<[u8; PUBLIC_LEN]> {
        self.keys.public_key
    }

    /// Sets the secrets in force and the public key they imply.
    pub(super) fn set_secrets(&mut self, secrets: Option<Secrets>) {
        self.keys.public_key = secrets
            .as_ref()
            .map(|s| Ephemeral::from_bytes(s.identity).public());
        self.keys.secrets = secrets;
    }

    /// Whether a device secret is held.
    pub fn is_provisioned(&self) -> bool {
        self.keys
            .secrets
            .as_ref()
            .is_some_and(|s| s.device_secret.is_some())
    }

    /// Epochs of the role keys in force (all 0 while unprovisioned).
    pub fn key_epochs(&self) -> KeyEpochs {
        let e = |role| self.role_slot(role).map_or(0, |s| s.epoch);
        KeyEpochs {
            patient: e(Role::Patient),
            clinician: e(Role::Clinician),
            service: e(Role::Service),
        }
    }

    fn role_slot(&self, role: Role) -> Option<RoleSlot> {
        let s = self.keys.secrets.as_ref()?;
        s.device_secret?;
        s.keys.get(slot(role)?).copied()
    }

    /// The key of `role` in force and its epoch; `None` while unprovisioned (the
    /// emergency role has no stored key: also `None`).
    pub fn role_key(&self, role: Role) -> Option<(u32, Secret)> {
        let secret = self.keys.secrets.as_ref()?.device_secret?;
        let slot = self.role_slot(role)?;
        let key = match slot.key {
            Some(key) => Secret::new(key),
            None => role_key(&Secret::new(secret), role, slot.epoch, self.serial()),
        };
        Some((slot.epoch, key))
    }

    /// The key of the handshake nonces; `None` while unprovisioned.
    pub fn nonce_key(&self) -> Option<Secret> {
        let secret = self.keys.secrets.as_ref()?.device_secret?;
        Some(nonce_key(&Secret::new(secret), self.serial()))
    }

    /// Makes the static key pair from `random` (32 bytes of the platform's entropy) if
    /// there is none yet, and stores it. `false` if it could not be stored.
    pub fn create_identity(&mut self, random: &Secret) -> bool {
        if self.keys.secrets.is_some() || self.keys.secrets_unreadable {
            return true;
        }
        let secrets = Secrets {
            generation: 1,
            identity: *random.as_bytes(),
            device_secret: None,
            keys: [RoleSlot::default(); 3],
        };
        self.store_secrets(secrets)
    }

    fn store_secrets(&mut self, secrets: Secrets) -> bool {
        let ok = self.storage.save_secrets(&secrets).is_ok();
        self.note_storage(ok);
        if ok {
            let new_identity =
                self.keys.secrets.as_ref().map(|s| s.identity) != Some(secrets.identity);
            if new_identity {
                self.set_secrets(Some(secrets));
            } else {
                self.keys.secrets = Some(secrets);
            }
            // Both copies written afresh.
            self.keys.secrets_damaged = false;
        }
        ok
    }

    /// `Provision { ephemeral }`: agrees a new device secret. `sealed`: inside a
    /// session (the server lets only a service session through); a plain `Provision` is
    /// served only while unprovisioned.
    pub fn provision(
        &mut self,
        now: Timestamp,
        ephemeral: &[u8; PUBLIC_LEN],
        sealed: bool,
    ) -> Response {
        match self.try_provision(now, ephemeral, sealed) {
            Ok(response) => response,
            Err(refusal) => Response::Refused(refusal),
        }
    }

    fn try_provision(
        &mut self,
        now: Timestamp,
        ephemeral: &[u8; PUBLIC_LEN],
        sealed: bool,
    ) -> Result<Response, Refusal> {
        let Some(current) = self.keys.secrets.clone() else {
            // No identity key (no entropy yet, or an unreadable secrets region).
            return Err(Refusal::Unsupported);
        };
        if current.device_secret.is_some() && !sealed {
            return Err(Refusal::NotPermitted);
        }
        let identity = Ephemeral::from_bytes(current.identity);
        let public = identity.public();
        let dh = identity.agree(ephemeral).ok_or(Refusal::Malformed)?;
        let keys = ProvisionKeys::derive(
            &dh,
            &ProvisionTranscript {
                serial: self.serial(),
                pump_public: &public,
                ephemeral,
            },
        );
        let epoch = match current.device_secret {
            None => FIRST_EPOCH,
            Some(_) => current
                .keys
                .iter()
                .map(|k| k.epoch)
                .max()
                .unwrap_or(0)
                .checked_add(1)
                .ok_or(Refusal::Unsupported)?,
        };
        let next = Secrets {
            generation: current.generation.wrapping_add(1),
            identity: current.identity,
            device_secret: Some(*keys.device_secret.as_bytes()),
            keys: [RoleSlot { epoch, key: None }; 3],
        };
        if !self.store_secrets(next) {
            return Err(Refusal::StorageFault);
        }
        // Security events are never aggregated or rate-limited away.
        self.log_event(now, Event::Provisioned { epoch });
        Ok(Response::Provisioned {
            confirm: keys.confirm(),
            epoch,
        })
    }

    /// `RotateKey` from a session of `by` (the server checked who may rotate what):
    /// `epoch` must be the role's epoch plus one.
    pub fn rotate_key(
        &mut self,
        now: Timestamp,
        by: Role,
        role: Role,
        epoch: u32,
        key: &[u8; 32],
    ) -> Result<Response, Refusal> {
        let (Some(current), Some(index)) = (self.keys.secrets.clone(), slot(role)) else {
            return Err(Refusal::NotProvisioned);
        };
        let Some(old) = current.keys.get(index).copied() else {
            return Err(Refusal::NotProvisioned);
        };
        if current.device_secret.is_none() {
            return Err(Refusal::NotProvisioned);
        }
        if old.epoch.checked_add(1) != Some(epoch) {
            return Err(Refusal::StaleKey {
                epoch,
                current: old.epoch,
            });
        }
        let mut next = current;
        next.generation = next.generation.wrapping_add(1);
        if let Some(s) = next.keys.get_mut(index) {
            *s = RoleSlot {
                epoch,
                key: Some(*key),
            };
        }
        if !self.store_secrets(next) {
            return Err(Refusal::StorageFault);
        }
        self.log_event(now, Event::KeyRotated { by, role, epoch });
        Ok(Response::KeyRotated { role, epoch })
    }
}
