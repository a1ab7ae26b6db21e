//! The client's session rules (issue 6): a lost session renewed and the request sent
//! again with its id (never a change whose answer was lost), bounded renewals, a pump that
//! does not prove the key, handshake refusals told apart, role permissions, the sending
//! counter's limit, closing, and provisioning proved by a service handshake.
//!
//! Against the scripted pump (`common/scripted.rs`) over an in-memory pipe, on tokio's
//! paused clock: timeouts cost nothing and never flake.

mod common;

use common::scripted::*;
use thecal_host::client::Agreement;
use thecal_host::error::{ReadBack, UncertainCause};
use thecal_host::Error;
use thecal_protocol::message::{Refusal, Role};
use thecal_protocol::session::Ephemeral;

#[tokio::test(start_paused = true)]
async fn a_lost_session_is_renewed_and_the_request_sent_again_with_its_id() {
    // The pump forgets the session (idle timeout, or another programmer's hello) just
    // before the second sealed request: it answers a plain SessionRequired without
    // opening it; the client opens a new session and sends the request again, same
    // id, RETRY flag, counter 1 of the new session.
    let (mut c, seen) = start(Script {
        lose_session_before: vec![1],
        ..Script::default()
    })
    .await;
    c.ping().await.unwrap();
    c.stop().await.unwrap();
    c.ping().await.unwrap();
    let s = seen.lock().unwrap();
    assert_eq!(
        s.frames,
        vec![
            (100, false, "Ping"),
            (101, false, NO_SESSION),
            // 102 and 103: the new handshake.
            (101, true, "StopTherapy"),
            (104, false, "Ping"),
        ]
    );
    assert_eq!(s.counters, vec![1, 1, 2]);
    assert_eq!(s.sessions, 2);
    assert_eq!(s.executed, 1);
    assert_eq!(c.counters().sessions, 2);
}

#[tokio::test(start_paused = true)]
async fn a_session_lost_after_an_unanswered_change_is_uncertain_and_not_repeated() {
    // The bolus is carried out but its answer is lost; the pump then resets (session
    // and reply cache gone). Sending it again could deliver it twice: the client renews
    // the session, does not send it again, and says what to read back.
    let (mut c, seen) = start(Script {
        lose_answers: 1,
        lose_session_before: vec![1],
        reset: true,
        ..Script::default()
    })
    .await;
    let e = c.bolus(bolus()).await.unwrap_err();
    match &e {
        Error::Uncertain {
            read_back, cause, ..
        } => {
            assert_eq!(*cause, UncertainCause::SessionEndedAfterUnanswered);
            assert_eq!(*read_back, ReadBack::Bolus);
            assert!(e.to_string().contains("may have been reset"), "{e}");
            assert!(e.to_string().contains("before giving another bolus"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.executed, 1, "never delivered twice");
        assert_eq!(
            s.frames,
            vec![(100, false, "ClinicianBolus"), (100, true, NO_SESSION)]
        );
        assert_eq!(s.sessions, 2);
    }
    // The renewed session serves the read-back.
    c.ping().await.unwrap();
    assert_eq!(seen.lock().unwrap().counters, vec![1, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_change_unanswered_after_a_renewal_is_uncertain_when_the_session_goes_again() {
    // The pump lost the session before the first attempt (renewed), carried out the
    // second but its answer was lost, then reset before the third. That third attempt's
    // `SessionRequired` comes after a renewal, but the change may have happened: it is
    // uncertain (not "session expired"), and it is not sent again.
    let (mut c, seen) = start(Script {
        lose_answers: 1,
        lose_session_before: vec![0, 2],
        reset: true,
        ..Script::default()
    })
    .await;
    let e = c.bolus(bolus()).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Uncertain {
                request: "ClinicianBolus",
                cause: UncertainCause::SessionEndedAfterUnanswered,
                read_back: ReadBack::Bolus,
                ..
            }
        ),
        "{e:?}"
    );
    let s = seen.lock().unwrap();
    assert_eq!(s.executed, 1, "never delivered twice");
    assert_eq!(
        s.frames,
        vec![
            (100, false, NO_SESSION),
            (100, true, "ClinicianBolus"),
            (100, true, NO_SESSION)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_pump_that_keeps_losing_the_session_gives_session_expired() {
    let (mut c, seen) = start(Script {
        lose_session_before: vec![0, 1],
        ..Script::default()
    })
    .await;
    let e = c.ping().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::SessionExpired {
                request: "Ping",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("session expired"), "{e}");
    assert_eq!(seen.lock().unwrap().sessions, 2, "renewed once, not more");
}

#[tokio::test(start_paused = true)]
async fn a_renewal_the_pump_keeps_refusing_as_busy_is_session_expired() {
    let (mut c, seen) = start(Script {
        lose_session_before: vec![0],
        busy_after: Some(1),
        ..Script::default()
    })
    .await;
    let e = c.status().await.unwrap_err();
    assert!(matches!(e, Error::SessionExpired { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("busy"), "{text}");
    // The first hello, then the renewal's, waited out BUSY_RETRIES times.
    assert_eq!(
        seen.lock().unwrap().hellos,
        2 + thecal_host::client::BUSY_RETRIES
    );
}

#[tokio::test(start_paused = true)]
async fn a_pump_that_does_not_prove_the_key_gets_nothing_more() {
    let (mut c, seen) = start_plain(
        Script {
            impostor: true,
            ..Script::default()
        },
        100,
    );
    let e = c
        .authenticate(key(Role::Clinician), SERIAL)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::PumpNotAuthenticated {
                role: Role::Clinician
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "the pump did not prove it holds the clinician key — wrong key file, or not the pump \
         you think"
    );
    let s = seen.lock().unwrap();
    assert_eq!((s.hellos, s.proofs, s.sessions), (1, 0, 0));
    assert!(!c.has_session());
}

#[tokio::test(start_paused = true)]
async fn handshake_refusals_are_told_apart() {
    let (mut c, _) = start_plain(
        Script {
            refuse_proof: true,
            ..Script::default()
        },
        100,
    );
    let e = c
        .authenticate(key(Role::Patient), SERIAL)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::AuthenticationFailed {
                role: Role::Patient
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("authentication failed"), "{e}");
    let (mut c, _) = start_plain(
        Script {
            busy_after: Some(0),
            ..Script::default()
        },
        100,
    );
    let e = c
        .authenticate(key(Role::Clinician), SERIAL)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Busy), "{e:?}");
    assert!(e.to_string().contains("try again"), "{e}");
    let (mut c, _) = start_plain(
        Script {
            unprovisioned: true,
            ..Script::default()
        },
        100,
    );
    let e = c
        .authenticate(key(Role::Clinician), SERIAL)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotProvisioned), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn a_request_the_role_may_not_make_names_the_role_needed() {
    let (mut c, _) = start_as(Script::default(), Role::Patient).await;
    c.ping().await.unwrap();
    let e = c.stop().await.unwrap_err();
    match &e {
        Error::NotPermitted {
            request,
            role,
            allowed,
        } => {
            assert_eq!(*request, "StopTherapy");
            assert_eq!(*role, Role::Patient);
            // A stop is the clinician's, or anyone's at the patient's side with the
            // magnet (emergency).
            assert_eq!(allowed, &vec![Role::Clinician, Role::Emergency]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.refusal(), Some(&Refusal::NotPermitted));
    let text = e.to_string();
    assert!(
        text.contains("the patient role may not ask for the therapy stop")
            && text.contains("needs the clinician or emergency role"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sending_counter_at_its_maximum_renews_the_session() {
    let (mut c, seen) = start(Script {
        first_counter_after: u32::MAX - 2,
        ..Script::default()
    })
    .await;
    c.restart_send_counter(u32::MAX - 1);
    c.ping().await.unwrap();
    // u32::MAX is never used: a new session first.
    c.ping().await.unwrap();
    let s = seen.lock().unwrap();
    assert_eq!(s.counters, vec![u32::MAX - 1, 1]);
    assert_eq!(s.sessions, 2);
    assert_eq!(
        s.frames,
        vec![(100, false, "Ping"), (101, false, "Ping")],
        "a fresh request, not a retry"
    );
}

#[tokio::test(start_paused = true)]
async fn close_ends_the_session_sealed() {
    let (mut c, seen) = start(Script::default()).await;
    c.ping().await.unwrap();
    c.close().await.unwrap();
    assert!(!c.has_session());
    assert_eq!(c.role(), None);
    let s = seen.lock().unwrap();
    assert_eq!(
        s.frames,
        vec![(100, false, "Ping"), (101, false, "SessionClose")]
    );
    assert_eq!(s.counters, vec![1, 2]);
}

#[tokio::test(start_paused = true)]
async fn provisioning_is_proved_by_a_service_handshake() {
    let (mut c, seen) = start_plain(
        Script {
            unprovisioned: true,
            ..Script::default()
        },
        99,
    );
    let id = c.identify().await.unwrap();
    assert_eq!(id.key_epochs, all_at(0), "unprovisioned");
    assert_eq!(id.public_key, pump_public());
    let agreement = Agreement::new(SERIAL, &id.public_key).unwrap();
    c.provision(&agreement).await.unwrap();
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.sessions, 1, "the service handshake");
        assert_eq!(s.hello_epochs, [1]);
        assert_eq!(
            s.frames,
            vec![(100, false, "Provision"), (103, false, "SessionClose")]
        );
    }
    assert!(!c.has_session());
    assert_eq!(c.identify().await.unwrap().key_epochs, all_at(1));
    // Once only.
    let again = Agreement::new(SERIAL, &pump_public()).unwrap();
    let e = c.provision(&again).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyProvisioned), "{e:?}");
    // The clinician key derived from the agreed secret now opens a session; one derived
    // from another secret does not.
    c.authenticate(agreement.role_key(Role::Clinician, 1), SERIAL)
        .await
        .unwrap();
    c.ping().await.unwrap();
    let e = c
        .authenticate(again.role_key(Role::Clinician, 1), SERIAL)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PumpNotAuthenticated { .. }), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn provisioning_with_another_pumps_public_key_is_not_confirmed() {
    // The programmer agreed a secret with a key that is not this pump's (a wrong label,
    // or a pump swapped in on the link): the pump derives another secret and its
    // confirmation does not verify.
    let (mut c, _) = start_plain(
        Script {
            unprovisioned: true,
            ..Script::default()
        },
        99,
    );
    c.identify().await.unwrap();
    let other = Ephemeral::from_bytes([0x78; 32]).public();
    let agreement = Agreement::new(SERIAL, &other).unwrap();
    let e = c.provision(&agreement).await.unwrap_err();
    assert!(matches!(e, Error::ProvisionNotConfirmed), "{e:?}");
    assert!(e.to_string().contains("did not confirm"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn provisioning_whose_answer_was_lost_is_decided_by_the_handshake() {
    // The secret is stored but the answer lost; the retry is refused (already
    // provisioned). Whether by this programmer: the service handshake says.
    let (mut c, seen) = start_plain(
        Script {
            unprovisioned: true,
            lose_answers: 1,
            ..Script::default()
        },
        99,
    );
    c.identify().await.unwrap();
    let agreement = Agreement::new(SERIAL, &pump_public()).unwrap();
    c.provision(&agreement).await.unwrap();
    assert_eq!(seen.lock().unwrap().sessions, 1);
    // The same when another secret was already in the pump: the handshake with the
    // key from ours fails, so it was not ours.
    let (mut c, seen) = start_plain(
        Script {
            lose_answers: 1,
            ..Script::default()
        },
        99,
    );
    c.identify().await.unwrap();
    let agreement = Agreement::new(SERIAL, &pump_public()).unwrap();
    let e = c.provision(&agreement).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyProvisioned), "{e:?}");
    let s = seen.lock().unwrap();
    assert_eq!((s.hellos, s.proofs), (1, 0));
}
