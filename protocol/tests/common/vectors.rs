//! The worked examples of docs/PROTOCOL.md section 6: a short clinic session (ids count
//! up as a programmer would number its requests), then the plain frames of the handshake
//! and the provisioning worked through in section 2.9.

use super::session::{self as ex, handshake_example, provision_example};
use super::*;

pub struct Vector {
    pub name: &'static str,
    pub header: Header,
    pub msg: Msg,
}

fn v(name: &'static str, header: Header, msg: Msg) -> Vector {
    Vector { name, header, msg }
}

pub fn vectors() -> Vec<Vector> {
    use Msg::{Request as Q, Response as A};
    let retry = Header {
        flags: frame::Flags(frame::Flags::RETRY),
        ..Header::request(0x0303)
    };
    vec![
        v(
            "identify-request",
            Header::request(0x0301),
            Q(Request::Identify),
        ),
        v(
            "identity-response",
            Header::response(0x0301),
            A(Response::Identity(identity())),
        ),
        v(
            "ping-request",
            Header::request(0x0302),
            Q(Request::Ping { token: 0x00C0_FFEE }),
        ),
        v(
            "pong-response",
            Header::response(0x0302),
            A(Response::Pong { token: 0x00C0_FFEE }),
        ),
        v(
            "status-request",
            Header::request(0x0303),
            Q(Request::Status),
        ),
        v("status-request-retry", retry, Q(Request::Status)),
        v(
            "status-response",
            Header::response(0x0303),
            A(Response::Status(status_report())),
        ),
        v(
            "write-prescription-request",
            Header::request(0x0304),
            Q(Request::WritePrescription {
                expected: Revision(3),
                prescription: morphine_draft(),
            }),
        ),
        v(
            "refused-invalid-prescription-response",
            Header::response(0x0304),
            A(Response::Refused(Refusal::InvalidPrescription(
                ScheduleError::StepAboveDailyLimit {
                    at: tuesday_step_3(),
                    dose: NanogramsPerDay::from_mg(7),
                    limit: NanogramsPerDay::from_mg(6),
                },
            ))),
        ),
        v(
            "prescription-written-response",
            Header::response(0x0305),
            A(Response::PrescriptionWritten {
                revision: Revision(4),
            }),
        ),
        v(
            "clinician-bolus-request",
            Header::request(0x0306),
            Q(Request::ClinicianBolus(BolusRequest::Single {
                dose: Nanograms::from_ug(500),
                duration: Minutes(30),
            })),
        ),
        v(
            "reservoir-response",
            Header::response(0x0307),
            A(Response::Reservoir(reservoir_report())),
        ),
        v(
            "log-page-response",
            Header::response(0x0308),
            A(Response::LogPage(log_page())),
        ),
    ]
    .into_iter()
    .chain(session_vectors())
    .collect()
}

/// 6.8 and 6.9: the frames of the examples of 2.9.
fn session_vectors() -> Vec<Vector> {
    use Msg::{Request as Q, Response as A};
    let h = handshake_example();
    let p = provision_example();
    vec![
        v(
            "session-hello-request",
            Header::request(ex::HELLO_ID),
            Q(Request::SessionHello {
                role: ex::ROLE,
                epoch: ex::KEY_EPOCH,
                nonce: ex::HOST_NONCE,
                ephemeral: h.host_ephemeral,
            }),
        ),
        v(
            "session-challenge-response",
            Header::response(ex::HELLO_ID),
            A(Response::SessionChallenge {
                nonce: h.device_nonce,
                ephemeral: h.device_ephemeral,
                proof: h.device_proof,
            }),
        ),
        v(
            "session-proof-request",
            Header::request(ex::PROOF_ID),
            Q(Request::SessionProof {
                nonce: ex::HOST_NONCE,
                proof: h.host_proof,
            }),
        ),
        v(
            "session-established-response",
            Header::response(ex::PROOF_ID),
            A(Response::SessionEstablished),
        ),
        v(
            "provision-request",
            Header::request(ex::PROVISION_ID),
            Q(Request::Provision {
                ephemeral: p.ephemeral,
            }),
        ),
        v(
            "provisioned-response",
            Header::response(ex::PROVISION_ID),
            A(Response::Provisioned {
                confirm: p.confirm,
                epoch: thecal_protocol::session::FIRST_EPOCH,
            }),
        ),
    ]
}
