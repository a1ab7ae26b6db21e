//! Downgrades: a pump (or a man in the middle rewriting `Identify`) that announces other
//! capabilities than it binds into the handshake gets no proof and no request.
//!
//! Against the scripted pump (`common/scripted.rs`) over an in-memory pipe, on tokio's
//! paused clock: timeouts cost nothing and never flake.

mod common;

use std::sync::{Arc, Mutex};

use common::scripted::*;
use thecal_host::client::Client;
use thecal_host::Error;
use thecal_protocol::frame::{decode_body, encode_raw, Feed, Flags, FrameDecoder};
use thecal_protocol::message::{Capabilities, Identity, Role};
use thecal_protocol::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

#[tokio::test(start_paused = true)]
async fn a_pump_that_binds_other_capabilities_than_it_announced_gets_nothing() {
    // Identify announces fewer capabilities than the pump binds into its transcript
    // (what a client sees when a man in the middle stripped them): the pump's proof does
    // not verify for the Identify this client saw, so no proof and no request is sent.
    let (mut c, seen) = start_plain(
        Script {
            announce: Some(Capabilities::SECURE_SESSION),
            ..Script::default()
        },
        100,
    );
    let id = c.identify().await.unwrap();
    assert_eq!(id.capabilities, Capabilities(Capabilities::SECURE_SESSION));
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
    // A request after it is not sent either: the client tries the handshake again, and
    // it fails the same way.
    let e = c.stop().await.unwrap_err();
    assert!(matches!(e, Error::PumpNotAuthenticated { .. }), "{e:?}");
    {
        let s = seen.lock().unwrap();
        assert_eq!((s.hellos, s.proofs, s.sessions), (2, 0, 0));
        assert!(
            s.frames.is_empty(),
            "no request reached the pump: {:?}",
            s.frames
        );
        assert_eq!(s.executed, 0);
    }
    // The same pump, announcing what it binds, opens a session with the same key: the
    // refusal above is the downgrade, nothing else.
    let (mut c, _) = start(Script::default()).await;
    c.stop().await.unwrap();
}

/// A man in the middle between a client and an honest scripted pump: every byte from
/// the client goes on as it is; every answer from the pump is decoded and encoded again,
/// `Identity` answers rewritten by `rewrite` first.
fn start_behind(
    script: Script,
    rewrite: fn(&mut Identity),
) -> (Client<DuplexStream>, Arc<Mutex<Seen>>) {
    let (ours, middle_client) = tokio::io::duplex(4096);
    let (middle_pump, theirs) = tokio::io::duplex(4096);
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(pump(theirs, script, Arc::clone(&seen)));
    let (mut from_client, mut to_client) = tokio::io::split(middle_client);
    let (mut from_pump, mut to_pump) = tokio::io::split(middle_pump);
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_pump).await;
    });
    tokio::spawn(async move {
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let mut buf = [0u8; 256];
        loop {
            let n = match from_pump.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut out = Vec::new();
            let mut input = &buf[..n];
            loop {
                match decoder.feed(input) {
                    Feed::Consumed => break,
                    Feed::Error { remaining, .. } => input = remaining,
                    Feed::Frame {
                        frame: f,
                        remaining,
                    } => {
                        let header = f.header;
                        let plain = !header.flags.has(Flags::SEALED);
                        match decode_body::<Response>(f.body) {
                            Ok(Response::Identity(mut id)) if plain => {
                                rewrite(&mut id);
                                out.extend(frame(header, &Response::Identity(id)));
                            }
                            _ => {
                                let mut wire = vec![0u8; 2048];
                                let w = encode_raw(header, f.body, &mut wire).unwrap();
                                out.extend_from_slice(&wire[..w]);
                            }
                        }
                        input = remaining;
                    }
                }
            }
            if to_client.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    (Client::with_first_id(ours, CONFIG, 100), seen)
}

#[tokio::test(start_paused = true)]
async fn a_man_in_the_middle_who_rewrites_identify_is_refused_before_any_request() {
    // Passing everything through unchanged, the man in the middle is invisible: a session
    // opens and requests are served (so what follows fails for the rewrite alone).
    let (c, _) = start_behind(Script::default(), |_| {});
    let (mut c, _) = Client::connect(c.into_inner(), CONFIG, key(Role::Clinician))
        .await
        .unwrap();
    c.stop().await.unwrap();
    // Stripping the key-lifecycle capability from Identify (a downgrade to what an older
    // pump would offer): version and schema still match, so the client goes on to the
    // handshake, and the pump's proof, bound to what it really announced, fails.
    let (c, seen) = start_behind(Script::default(), |id| {
        id.capabilities = Capabilities(id.capabilities.0 & !Capabilities::KEY_LIFECYCLE);
    });
    let e = Client::connect(c.into_inner(), CONFIG, key(Role::Clinician))
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
    let s = seen.lock().unwrap();
    assert!(s.connected);
    assert_eq!((s.hellos, s.proofs, s.sessions), (1, 0, 0));
    assert!(s.frames.is_empty(), "no request: {:?}", s.frames);
}
