//! The client's key lifecycle against the scripted pump: rotated keys proved by every
//! later handshake, who may rotate whose key, a rotation whose answer was lost carried out
//! once, stale epochs refused at the hello, and re-provisioning to a new secret.
//!
//! Against the scripted pump (`common/scripted.rs`) over an in-memory pipe, on tokio's
//! paused clock: timeouts cost nothing and never flake.

mod common;

use common::scripted::*;
use thecal_host::client::Agreement;
use thecal_host::{Error, RoleKey};
use thecal_protocol::message::{Refusal, Role};
use thecal_protocol::session::Secret;

/// A fresh random-looking key of `role` at `epoch`.
fn new_key(role: Role, epoch: u32, byte: u8) -> RoleKey {
    RoleKey {
        role,
        epoch,
        key: Secret::new([byte; 32]),
    }
}

#[tokio::test(start_paused = true)]
async fn a_rotated_key_is_the_one_every_later_handshake_proves() {
    // The clinician rotates its own key; the pump then loses the session (sealed frame
    // 1): the renewal proves the new key, at the new epoch.
    let (mut c, seen) = start(Script {
        lose_session_before: vec![1],
        ..Script::default()
    })
    .await;
    c.rotate_key(&new_key(Role::Clinician, 2, 0xc2))
        .await
        .unwrap();
    c.ping().await.unwrap();
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.hello_epochs, [1, 2]);
        assert_eq!(s.sessions, 2);
        assert_eq!(s.executed, 1);
    }
    let epochs = c.identify().await.unwrap().key_epochs;
    assert_eq!(
        (epochs.clinician, epochs.patient, epochs.service),
        (2, 1, 1)
    );
    // The old key is refused at the hello, naming both epochs; no proof is sent for it.
    let e = c
        .authenticate(key(Role::Clinician), SERIAL)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::StaleKey {
                role: Role::Clinician,
                epoch: 1,
                current: 2
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("epoch 1") && text.contains("epoch 2") && text.contains("rotated"),
        "{text}"
    );
    assert_eq!(seen.lock().unwrap().proofs, 2);
    // A key of the right epoch that is not the rotated one: the pump does not prove it.
    let e = c
        .authenticate(new_key(Role::Clinician, 2, 0xc3), SERIAL)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PumpNotAuthenticated { .. }), "{e:?}");
    c.authenticate(new_key(Role::Clinician, 2, 0xc2), SERIAL)
        .await
        .unwrap();
    c.ping().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_clinician_rotates_the_patient_key_and_the_patient_cannot() {
    let (mut c, _) = start(Script::default()).await;
    c.rotate_key(&new_key(Role::Patient, 2, 0xa2))
        .await
        .unwrap();
    // The clinician's own session and key are untouched.
    assert_eq!(c.role(), Some(Role::Clinician));
    c.ping().await.unwrap();
    // A rotation must name the next epoch.
    let e = c
        .rotate_key(&new_key(Role::Patient, 4, 0xa4))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::StaleKey {
                role: Role::Patient,
                current: 2,
                ..
            }
        ),
        "{e:?}"
    );
    // The patient's new key opens a patient session, the old one is stale; a patient may
    // not rotate any key, its own included.
    let e = c
        .authenticate(key(Role::Patient), SERIAL)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::StaleKey {
                epoch: 1,
                current: 2,
                ..
            }
        ),
        "{e:?}"
    );
    c.authenticate(new_key(Role::Patient, 2, 0xa2), SERIAL)
        .await
        .unwrap();
    for whose in [Role::Patient, Role::Clinician] {
        let e = c.rotate_key(&new_key(whose, 3, 0xa3)).await.unwrap_err();
        assert_eq!(e.refusal(), Some(&Refusal::NotPermitted), "{e:?}");
    }
    let epochs = c.identify().await.unwrap().key_epochs;
    assert_eq!((epochs.patient, epochs.clinician), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_rotation_whose_answer_was_lost_is_carried_out_once() {
    let (mut c, seen) = start(Script {
        lose_answers: 1,
        ..Script::default()
    })
    .await;
    c.rotate_key(&new_key(Role::Patient, 2, 0xa2))
        .await
        .unwrap();
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.executed, 1, "the retry is answered from the reply cache");
        assert_eq!(
            s.frames,
            vec![(100, false, "RotateKey"), (100, true, "RotateKey")]
        );
    }
    // Unanswered for good: uncertain, never a silent success.
    let (mut c, _) = start(Script {
        silent: true,
        ..Script::default()
    })
    .await;
    let e = c
        .rotate_key(&new_key(Role::Patient, 2, 0xa2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Uncertain {
                request: "RotateKey",
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_of_another_epoch_is_refused_at_the_hello() {
    let (mut c, seen) = start_plain(
        Script {
            epoch: Some(3),
            ..Script::default()
        },
        100,
    );
    let id = c.identify().await.unwrap();
    assert_eq!(id.key_epochs, all_at(3));
    let e = c
        .authenticate(key(Role::Clinician), SERIAL)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::StaleKey {
                role: Role::Clinician,
                epoch: 1,
                current: 3
            }
        ),
        "{e:?}"
    );
    assert_eq!(seen.lock().unwrap().proofs, 0);
    c.authenticate(key_at(Role::Clinician, 3), SERIAL)
        .await
        .unwrap();
    c.ping().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn reprovisioning_moves_every_key_to_a_new_epoch_of_a_new_secret() {
    // Only a service session may.
    let (mut c, _) = start(Script::default()).await;
    let agreement = Agreement::new(SERIAL, &pump_public()).unwrap();
    let e = c.reprovision(&agreement).await.unwrap_err();
    assert_eq!(e.refusal(), Some(&Refusal::NotPermitted), "{e:?}");
    let (mut c, seen) = start_plain(
        Script {
            epoch: Some(2),
            ..Script::default()
        },
        100,
    );
    c.authenticate(key_at(Role::Service, 2), SERIAL)
        .await
        .unwrap();
    let agreement = Agreement::new(SERIAL, &pump_public()).unwrap();
    assert_eq!(c.reprovision(&agreement).await.unwrap(), 3);
    assert_eq!(seen.lock().unwrap().executed, 1);
    let id = c.identify().await.unwrap();
    assert_eq!(id.key_epochs, all_at(3));
    for role in [Role::Patient, Role::Clinician, Role::Service] {
        // The old secret's keys: stale, and refused even at the new epoch.
        let e = c.authenticate(key_at(role, 2), SERIAL).await.unwrap_err();
        assert!(matches!(e, Error::StaleKey { current: 3, .. }), "{e:?}");
        let e = c.authenticate(key_at(role, 3), SERIAL).await.unwrap_err();
        assert!(matches!(e, Error::PumpNotAuthenticated { .. }), "{e:?}");
        c.authenticate(agreement.role_key(role, 3), SERIAL)
            .await
            .unwrap();
        c.ping().await.unwrap();
    }
}
