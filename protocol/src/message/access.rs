//! Who may make which request: the role table both sides share.
//!
//! The pump enforces it ([`permitted`] is checked for every request inside a session);
//! the programmer uses the same table to say which role a refused request needs.

use super::{Request, Role};

impl Role {
    /// Every role that has a key file, in the order key files are written. (The
    /// emergency role has none: its key derives from the serial number alone,
    /// [`crate::session::emergency_key`].)
    pub const KEYED: [Role; 3] = [Role::Clinician, Role::Patient, Role::Service];

    /// The role's name as on a command line and in key files: `patient`, `clinician`,
    /// `service`, `emergency`.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Clinician => "clinician",
            Role::Service => "service",
            Role::Emergency => "emergency",
        }
    }

    /// The role called `name` ([`Role::name`]).
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Every role that may make `request` inside a session, in [`Role::ALL`] order.
    pub fn allowed(request: &Request) -> impl Iterator<Item = Role> + '_ {
        Role::ALL.into_iter().filter(|r| permitted(*r, request))
    }
}

impl Request {
    /// Whether the pump serves this request only inside a session. `Identify`, the
    /// handshake and the factory's `Provision` travel in plain frames.
    pub const fn needs_session(&self) -> bool {
        !matches!(
            self,
            Request::Identify
                | Request::SessionHello { .. }
                | Request::SessionProof { .. }
                | Request::Provision { .. }
        )
    }
}

/// Whether `role` may make `request` inside a session. Written out for every request
/// and role: a request added later is refused until someone decides who may make it.
pub fn permitted(role: Role, request: &Request) -> bool {
    use Request as R;
    use Role::{Clinician, Emergency, Patient, Service};
    match request {
        R::Identify | R::Status | R::ReadAlarms | R::SessionClose => true,
        R::Ping { .. } | R::Battery | R::Reservoir => {
            matches!(role, Patient | Clinician | Service)
        }
        // Both only lower delivery: the emergency role may end a bolus as it may stop.
        R::StopTherapy | R::CancelBolus => matches!(role, Clinician | Emergency),
        R::PatientBolus => matches!(role, Patient | Clinician),
        R::ReadLog { .. } | R::LinkStats => matches!(role, Clinician | Service),
        R::ReadPrescription
        | R::WritePrescription { .. }
        | R::Refill { .. }
        | R::ClinicianBolus(_)
        | R::ResumeTherapy
        | R::AcknowledgeAlarm { .. }
        | R::SetClock { .. } => matches!(role, Clinician),
        // Re-provisioning (a new device secret, every key to a new epoch): service.
        R::Provision { .. } => matches!(role, Service),
        // A clinician replaces the patient's and its own key, service its own.
        R::RotateKey { role: whose, .. } => matches!(
            (role, whose),
            (Clinician, Patient | Clinician) | (Service, Service)
        ),
        // Firmware updates: the clinic's programmer or service, never the patient's
        // device, and not the emergency role (it exists to lower delivery).
        R::UpdateBegin { .. } | R::UpdateChunk { .. } | R::UpdateFinish | R::UpdateStatus => {
            matches!(role, Clinician | Service)
        }
        // Plain-frame requests: never inside a session.
        R::SessionHello { .. } | R::SessionProof { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{BolusRequest, Revision};
    use crate::units::{Minutes, Nanograms, Nanolitres};

    #[test]
    fn names_round_trip_and_are_distinct() {
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.name()), Some(role));
        }
        assert_eq!(Role::from_name("Clinician"), None);
        assert_eq!(Role::from_name(""), None);
        assert!(!Role::KEYED.contains(&Role::Emergency));
    }

    #[test]
    fn therapy_is_the_clinicians_and_a_stop_also_the_emergency_roles() {
        let write = Request::StopTherapy;
        assert!(permitted(Role::Clinician, &write));
        assert!(permitted(Role::Emergency, &write));
        assert!(!permitted(Role::Patient, &write));
        assert!(!permitted(Role::Service, &write));
        let bolus = Request::ClinicianBolus(BolusRequest::Single {
            dose: Nanograms(1),
            duration: Minutes(1),
        });
        assert_eq!(
            Role::allowed(&bolus).collect::<heapless::Vec<_, 4>>(),
            [Role::Clinician]
        );
        let refill = Request::Refill {
            expected: Revision(1),
            volume: Nanolitres(1),
            prescription: None,
        };
        assert_eq!(Role::allowed(&refill).count(), 1);
        assert!(permitted(Role::Patient, &Request::PatientBolus));
        assert!(!permitted(Role::Emergency, &Request::PatientBolus));
    }

    #[test]
    fn plain_requests_are_never_served_inside_a_session() {
        let hello = Request::SessionHello {
            role: Role::Clinician,
            epoch: 1,
            nonce: [0; 16],
            ephemeral: [0; 32],
        };
        assert!(!hello.needs_session());
        assert_eq!(Role::allowed(&hello).count(), 0);
        assert!(!Request::Identify.needs_session());
        assert!(Request::Status.needs_session());
    }

    #[test]
    fn roles_see_only_their_requests() {
        let write = Request::StopTherapy;
        assert!(permitted(Role::Clinician, &write));
        assert!(permitted(Role::Emergency, &write));
        assert!(!permitted(Role::Patient, &write));
        assert!(!permitted(Role::Service, &write));
        assert!(permitted(Role::Patient, &Request::PatientBolus));
        assert!(!permitted(Role::Service, &Request::PatientBolus));
        assert!(!permitted(Role::Emergency, &Request::PatientBolus));
        assert!(permitted(Role::Service, &Request::LinkStats));
        assert!(!permitted(Role::Emergency, &Request::ResumeTherapy));
        // Re-provisioning: service only.
        for role in Role::ALL {
            assert_eq!(
                permitted(role, &Request::Provision { ephemeral: [0; 32] }),
                role == Role::Service,
                "{role:?}"
            );
        }
        // Rotation: a clinician the patient's and its own key, service its own.
        for by in Role::ALL {
            for whose in Role::ALL {
                let rotate = Request::RotateKey {
                    role: whose,
                    epoch: 2,
                    key: [0; 32],
                };
                let expected = matches!(
                    (by, whose),
                    (Role::Clinician, Role::Patient | Role::Clinician)
                        | (Role::Service, Role::Service)
                );
                assert_eq!(permitted(by, &rotate), expected, "{by:?} rotates {whose:?}");
            }
        }
    }
}
