//! The wire under the engine: one attempt's bytes (plain, or sealed with the session's
//! next counter), reading frames off the link, and what a frame carrying an awaited id
//! means (an answer, a lost session, or an unauthentic frame to drop).
//!
//! Every frame is preceded by a lone `0x00`, which flushes any partial frame the pump's
//! decoder still holds (see the frame codec docs).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use thecal_protocol::frame::{
    decode_body, encode, encode_raw, EncodeError, Feed, Flags, FrameError, FrameKind, Header,
    MAX_BODY, MAX_WIRE,
};
use thecal_protocol::message::{Command, OpKey, Refusal};
use thecal_protocol::session::{SealError, SEAL_OVERHEAD};
use thecal_protocol::{Request, Response};

use super::{Client, Trace};
use crate::error::Error;

/// How one attempt ended, when an acceptable frame carrying its id arrived.
// Short-lived, on the stack of one request: not worth a box.
#[allow(clippy::large_enum_variant)]
pub(super) enum Outcome {
    Answer(Response),
    /// A plain `SessionRequired` answered a sealed request.
    SessionLost,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Client<T> {
    /// The wire bytes of one attempt: a lone `0x00` (flushes any partial frame in the
    /// pump's decoder), then the frame, sealed with the session's next counter when
    /// `sealed` (its plaintext a [`Command`] with the idempotency `key`).
    pub(super) fn frame(
        &mut self,
        request: &Request,
        id: u16,
        retry: bool,
        sealed: bool,
        key: Option<OpKey>,
    ) -> Result<Vec<u8>, Error> {
        let mut header = Header::request(id);
        if retry {
            header.flags = Flags(Flags::RETRY);
        }
        let mut wire = vec![0u8; MAX_WIRE + 1];
        let out = wire.get_mut(1..).unwrap_or_default();
        let n = if sealed {
            let session = self
                .session
                .as_mut()
                .ok_or(Error::Seal(SealError::Exhausted))?;
            header.flags = Flags(header.flags.0 | Flags::SEALED);
            let command = Command {
                key,
                request: request.clone(),
            };
            let mut plain = vec![0u8; MAX_BODY];
            let plain = postcard::to_slice(&command, &mut plain)
                .map_err(|_| Error::Encode(EncodeError::BodyTooLarge))?;
            if plain.len() + SEAL_OVERHEAD > MAX_BODY {
                return Err(Error::Encode(EncodeError::BodyTooLarge));
            }
            let mut body = vec![0u8; MAX_BODY];
            let len = session
                .sealer
                .seal(&header.to_bytes(), plain, &mut body)
                .map_err(Error::Seal)?;
            encode_raw(header, body.get(..len).unwrap_or_default(), out)
        } else {
            encode(header, request, out)
        }
        .map_err(Error::Encode)?;
        wire.truncate(n + 1);
        Ok(wire)
    }

    /// Writes one attempt's bytes and traces it.
    pub(super) async fn write_attempt(
        &mut self,
        frame: &[u8],
        id: u16,
        request: &Request,
        retry: bool,
    ) -> Result<(), Error> {
        self.io.write_all(frame).await?;
        self.io.flush().await?;
        self.trace(Trace::Sent {
            id,
            request: request.name(),
            retry,
            bytes: frame.len(),
        });
        Ok(())
    }

    /// Writes one attempt and waits up to the timeout for its answer (`None` when none
    /// came).
    pub(super) async fn exchange(
        &mut self,
        frame: &[u8],
        id: u16,
        request: &Request,
        sealed: bool,
    ) -> Result<Option<Outcome>, Error> {
        self.write_attempt(frame, id, request, false).await?;
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.answer(id, request.name(), sealed)).await {
            Ok(outcome) => outcome.map(Some),
            Err(_elapsed) => Ok(None),
        }
    }

    /// Waits for an acceptable answer to `id`: inside a session a sealed one that opens,
    /// or a plain `SessionRequired`; outside, a plain one.
    async fn answer(
        &mut self,
        id: u16,
        request: &'static str,
        sealed: bool,
    ) -> Result<Outcome, Error> {
        loop {
            let (header, body) = self.receive(id).await?;
            if let Some(outcome) = self.classify(header, body, request, sealed)? {
                return Ok(outcome);
            }
        }
    }

    /// What a frame carrying an awaited id means: `None` when it is dropped as
    /// unauthentic (inside a session: not sealed, or it does not open; outside: sealed).
    pub(super) fn classify(
        &mut self,
        header: Header,
        mut body: Vec<u8>,
        request: &'static str,
        sealed: bool,
    ) -> Result<Option<Outcome>, Error> {
        let id = header.id;
        let is_sealed = header.flags.has(Flags::SEALED);
        if sealed && is_sealed {
            let opened = match self.session.as_mut() {
                Some(s) => s
                    .opener
                    .open(&header.to_bytes(), &mut body)
                    .map(decode_body::<Response>),
                None => Err(SealError::Forged),
            };
            match opened {
                Ok(decoded) => {
                    return decoded
                        .map(|r| Some(Outcome::Answer(r)))
                        .map_err(|source| Error::Decode { request, source })
                }
                Err(_) => self.unauthentic(id),
            }
        } else if sealed {
            match decode_body::<Response>(&body) {
                Ok(Response::Refused(Refusal::SessionRequired)) => {
                    return Ok(Some(Outcome::SessionLost))
                }
                _ => self.unauthentic(id),
            }
        } else if is_sealed {
            self.unauthentic(id);
        } else {
            return decode_body::<Response>(&body)
                .map(|r| Some(Outcome::Answer(r)))
                .map_err(|source| Error::Decode { request, source });
        }
        Ok(None)
    }

    fn unauthentic(&mut self, id: u16) {
        self.counters.unauthentic += 1;
        self.trace(Trace::Unauthentic { id });
    }

    /// Reads until a frame answering `id` arrives; returns its header and body.
    /// Cancel-safe: bytes read are kept in `pending` and the decoder keeps its partial
    /// frame.
    async fn receive(&mut self, id: u16) -> Result<(Header, Vec<u8>), Error> {
        self.receive_where(&|i| i == id).await
    }

    /// Reads until a frame answering an id that `wanted` accepts arrives (cancel-safe,
    /// like `receive`).
    pub(super) async fn receive_where(
        &mut self,
        wanted: &(dyn Fn(u16) -> bool + Sync),
    ) -> Result<(Header, Vec<u8>), Error> {
        let mut buf = [0u8; 512];
        loop {
            if let Some(answer) = self.scan(wanted) {
                return Ok(answer);
            }
            let n = self.io.read(&mut buf).await?;
            if n == 0 {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the link closed",
                )));
            }
            self.pending
                .extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }

    /// Feeds pending bytes to the decoder until a frame answering an id that `wanted`
    /// accepts is found.
    fn scan(&mut self, wanted: &(dyn Fn(u16) -> bool + Sync)) -> Option<(Header, Vec<u8>)> {
        let mut consumed = 0;
        let mut found = None;
        let mut traces = Vec::new();
        while consumed < self.pending.len() && found.is_none() {
            let input = self.pending.get(consumed..).unwrap_or_default();
            match self.decoder.feed(input) {
                Feed::Consumed => consumed = self.pending.len(),
                Feed::Frame { frame, remaining } => {
                    consumed = self.pending.len() - remaining.len();
                    if frame.header.kind != FrameKind::Response {
                        traces.push(Trace::NotAnAnswer {
                            id: frame.header.id,
                        });
                    } else if !wanted(frame.header.id) {
                        self.counters.stale += 1;
                        traces.push(Trace::Stale {
                            id: frame.header.id,
                        });
                    } else {
                        found = Some((frame.header, frame.body.to_vec()));
                    }
                }
                Feed::Error { error, remaining } => {
                    consumed = self.pending.len() - remaining.len();
                    self.counters.bad_frames += 1;
                    if let FrameError::Version(v) = error {
                        self.foreign_version = Some(v);
                    }
                    traces.push(Trace::BadFrame(error));
                }
            }
        }
        self.pending.drain(..consumed);
        for t in traces {
            self.trace(t);
        }
        found
    }

    pub(super) fn trace(&mut self, event: Trace) {
        if let Some(tracer) = self.tracer.as_mut() {
            tracer(&event);
        }
    }
}
