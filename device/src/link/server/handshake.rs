//! Plain requests: `Identify`, the handshake (`SessionHello` → `SessionChallenge`,
//! `SessionProof` → a session) and `Provision` on an unprovisioned pump.

use thecal_protocol::message::{Event, Refusal, Request, Response, Role};
use thecal_protocol::session::emergency_key;
use thecal_protocol::time::Timestamp;

use super::{nonce_key_of, Server};
use crate::link::budget::{HANDSHAKE_REFUND_FRAMES, IDENTIFY_REFUND_MS};
use crate::link::session::{Ended, Hello, HelloContext, Step};
use crate::store::Storage;
use crate::therapy::motor::Motor;
use crate::update::Firmware;

impl<S: Storage, M: Motor, U: Firmware> Server<S, M, U> {
    /// The answer to a plain request.
    pub(super) fn serve_plain(
        &mut self,
        now: Timestamp,
        link_now: Timestamp,
        request: Option<Request>,
    ) -> Response {
        let serial: heapless::String<16> = self.pump.serial().try_into().unwrap_or_default();
        match request {
            None => Response::Refused(Refusal::Malformed),
            Some(Request::Identify) => {
                self.identified_at = Some(link_now);
                Response::Identity(self.pump.identity())
            }
            Some(Request::SessionHello {
                role,
                epoch,
                nonce,
                ephemeral,
            }) => {
                let key = match role {
                    Role::Emergency => Some((0, emergency_key(&serial))),
                    _ => self.pump.role_key(role),
                };
                let cx = HelloContext {
                    now: link_now,
                    serial: &serial,
                    binding: self.pump.binding(),
                    key,
                    nonce_key: nonce_key_of(&self.pump),
                    presence: self.budget.presence(link_now),
                };
                let hello = Hello {
                    role,
                    epoch,
                    nonce,
                    ephemeral,
                };
                let step = self.sessions.hello(cx, hello);
                self.step_response(now, link_now, step)
            }
            Some(Request::SessionProof { nonce, proof }) => {
                let presence = self.budget.presence(link_now);
                let step = self.sessions.proof(link_now, &nonce, &proof, presence);
                self.step_response(now, link_now, step)
            }
            Some(Request::Provision { ephemeral }) => {
                let response = self.pump.provision(now, &ephemeral, false);
                if let Some(key) = self.pump.nonce_key() {
                    self.sessions.stir(key.as_bytes());
                }
                response
            }
            Some(_) => Response::Refused(Refusal::SessionRequired),
        }
    }

    pub(super) fn step_response(
        &mut self,
        now: Timestamp,
        link_now: Timestamp,
        step: Step,
    ) -> Response {
        match step {
            Step::Challenge {
                nonce,
                ephemeral,
                proof,
            } => Response::SessionChallenge {
                nonce,
                ephemeral,
                proof,
            },
            Step::Established {
                role,
                session,
                replaced,
            } => {
                // A key holder's handshake gets back exactly what it paid (Hello, its
                // challenge, the proof; and the Identify just before it, once), so it
                // never runs the budget down nor up. The emergency key is public: an
                // emergency handshake is no key holder's and gets nothing back.
                if role != Role::Emergency {
                    let frame_nah = self.pump.frame_nah();
                    let identify = self
                        .identified_at
                        .take()
                        .is_some_and(|at| link_now.since(at) <= IDENTIFY_REFUND_MS);
                    let frames = HANDSHAKE_REFUND_FRAMES + if identify { 2 } else { 0 };
                    self.budget.refund(frame_nah.saturating_mul(frames));
                }
                if let Some(ended) = replaced {
                    self.log_ended(now, ended);
                }
                self.pump
                    .log_session(now, Event::SessionOpened { role, session });
                Response::SessionEstablished
            }
            Step::Failed { role } => {
                self.pump
                    .log_noise(now, Event::HandshakeFailed { role, count: 1 });
                Response::Refused(Refusal::AuthenticationFailed)
            }
            Step::Refuse(refusal) => Response::Refused(refusal),
        }
    }

    pub(super) fn log_ended(&mut self, now: Timestamp, e: Ended) {
        self.pump.log_session(
            now,
            Event::SessionEnded {
                role: e.role,
                session: e.session,
                reason: e.reason,
            },
        );
    }
}
