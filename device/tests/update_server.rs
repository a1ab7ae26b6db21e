//! Firmware updates through the request server: sealed sessions, the role check, a
//! whole transfer of sealed chunks while the pump keeps dosing, and the swap decision.

mod common;

use common::client::{self, RoleKey};
use common::*;
use thecal_device::link::server::{SelfTest, Server};
use thecal_device::store::flash::{RamFlash, PAGE};
use thecal_device::update::{Boot, Updater, TRUSTED_KEY};
use thecal_protocol::message::{BolusRequest, Refusal, Request, Response, Role};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};
use thecal_protocol::update::{
    self, Board, ImageError, ImageHeader, KeyKind, SlotState, UpdateRefusal, Version,
    DEV_SECRET_KEY, MAX_CHUNK,
};

type Slots = Updater<RamFlash<{ 7 * PAGE }>, RamFlash<PAGE>>;
type UpdServer = Server<Store, thecal_device::therapy::motor::CountingMotor, Slots>;

fn header(len: usize, minor: u8, security: u32, image: &[u8]) -> ImageHeader {
    ImageHeader {
        key: KeyKind::Development,
        board: Board::SIM,
        version: Version {
            major: 1,
            minor,
            patch: 0,
        },
        security,
        length: len as u32,
        sha256: update::sha256(image),
    }
}

fn server() -> UpdServer {
    let running = header(1, 0, 1, b"x");
    let updater = Updater::new(
        RamFlash::new(),
        RamFlash::new(),
        TRUSTED_KEY,
        Board::SIM,
        running,
    )
    .unwrap();
    let mut server = Server::with_firmware(
        boot(continuous(100), Nanolitres::from_ml(18)),
        updater,
        Timestamp(0),
    );
    server.stir(&ENTROPY);
    provision(server.pump_mut(), BOOT);
    server
}

fn exchange(server: &mut UpdServer, now: Timestamp) -> impl FnMut(&[u8]) -> Vec<u8> + '_ {
    move |bytes: &[u8]| {
        let mut out = Vec::new();
        server.receive(now, bytes, &mut |b| out.extend_from_slice(b));
        out
    }
}

fn open(server: &mut UpdServer, role: Role, now: Timestamp) -> client::Session {
    let key = if role == Role::Emergency {
        server.apply_presence(now, now);
        RoleKey::emergency(SERIAL)
    } else {
        let (epoch, key) = server.pump().role_key(role).unwrap();
        RoleKey { role, epoch, key }
    };
    let peer = client::Peer::from_identity(&server.pump().identity());
    client::handshake(&mut exchange(server, now), &key, &peer, [7; 16]).expect("handshake")
}

fn begin(bytes: &[u8]) -> Request {
    Request::UpdateBegin {
        header: heapless::Vec::from_slice(bytes).unwrap(),
    }
}

#[test]
fn patient_and_emergency_sessions_may_not_update() {
    let mut s = server();
    let img = vec![0x11; 100];
    let signed = update::sign(&header(100, 1, 1, &img), &DEV_SECRET_KEY);
    for (i, role) in [Role::Patient, Role::Emergency].into_iter().enumerate() {
        let now = Timestamp(BOOT.0 + 1000 * i as u64);
        let mut session = open(&mut s, role, now);
        for (id, request) in [begin(&signed), Request::UpdateStatus, Request::UpdateFinish]
            .iter()
            .enumerate()
        {
            let answer = session.request(&mut exchange(&mut s, now), id as u16, request);
            assert_eq!(answer, Response::Refused(Refusal::NotPermitted), "{role:?}");
        }
    }
    let mut s2 = server();
    assert!(matches!(
        open(&mut s2, Role::Clinician, BOOT).request(
            &mut exchange(&mut s2, BOOT),
            1,
            &Request::UpdateStatus
        ),
        Response::UpdateStatus(_)
    ));
}

#[test]
fn a_clinician_updates_while_the_pump_keeps_dosing_and_the_swap_waits_for_the_bolus() {
    let mut s = server();
    let img: Vec<u8> = (0..3 * PAGE + 123).map(|i| (i * 7 % 256) as u8).collect();
    let signed = update::sign(&header(img.len(), 1, 1, &img), &DEV_SECRET_KEY);
    let mut now = BOOT;
    let mut session = open(&mut s, Role::Clinician, now);
    let mut id = 1u16;
    let mut call = |s: &mut UpdServer, session: &mut client::Session, now, r: &Request| {
        id += 1;
        session.request(&mut exchange(s, now), id, r)
    };

    // Refusals first: a downgrade and another board, nothing started.
    let low = update::sign(&header(img.len(), 1, 0, &img), &DEV_SECRET_KEY);
    assert_eq!(
        call(&mut s, &mut session, now, &begin(&low)),
        Response::Refused(Refusal::Update(UpdateRefusal::Image(
            ImageError::Downgrade {
                minimum: 1,
                found: 0
            }
        )))
    );
    assert_eq!(
        call(&mut s, &mut session, now, &begin(&signed[..100])),
        Response::Refused(Refusal::Update(UpdateRefusal::Image(
            ImageError::NotAnImage
        )))
    );
    assert_eq!(
        call(&mut s, &mut session, now, &Request::UpdateFinish),
        Response::Refused(Refusal::Update(UpdateRefusal::NotStarted))
    );

    // A bolus runs during the transfer.
    let bolus = Request::ClinicianBolus(BolusRequest::Single {
        dose: Nanograms(20_000),
        duration: Minutes(30),
    });
    assert!(matches!(
        call(&mut s, &mut session, now, &bolus),
        Response::BolusStarted(_)
    ));
    let delivered_before = s.pump().delivered_total();
    let Response::UpdateStarted(p) = call(&mut s, &mut session, now, &begin(&signed)) else {
        panic!("not started")
    };
    let mut at = p.next as usize;
    while at < img.len() {
        now = Timestamp(now.0 + 30_000);
        let end = (at + MAX_CHUNK).min(img.len());
        let chunk = Request::UpdateChunk {
            offset: at as u32,
            data: heapless::Vec::from_slice(&img[at..end]).unwrap(),
        };
        let Response::ChunkWritten(p) = call(&mut s, &mut session, now, &chunk) else {
            panic!("chunk refused")
        };
        at = p.next as usize;
    }
    assert!(
        s.pump().delivered_total() > delivered_before,
        "dosing went on during the transfer"
    );
    let Response::UpdateVerified(p) = call(&mut s, &mut session, now, &Request::UpdateFinish)
    else {
        panic!("not verified")
    };
    assert!(p.pending);
    let Response::UpdateStatus(r) = call(&mut s, &mut session, now, &Request::UpdateStatus) else {
        panic!("no status")
    };
    assert_eq!(r.active.state, SlotState::Confirmed);
    assert_eq!(r.update.unwrap().state, SlotState::Pending);
    assert_eq!(r.update.unwrap().version.minor, 1);
    // The swap waits for the bolus to end.
    assert!(s.pump().bolus_running());
    assert!(!s.firmware().wants_restart(s.pump().bolus_running()));
    assert!(!s.restart_due(now), "no restart while the bolus runs");
    assert!(s.pump().bolus_running());
    // Once it has ended, the platform's next turn restarts: the pump ticked to the
    // moment and its snapshot saved there, so device time resumes after it.
    let ended = Timestamp(now.0 + 31 * 60_000);
    assert!(s.restart_due(ended));
    assert!(!s.pump().bolus_running());
    assert_eq!(
        thecal_device::store::resume_time(s.pump_mut().storage_mut()),
        Timestamp(ended.0 + 1)
    );
}

#[test]
fn without_a_pending_image_no_restart_and_the_self_test_has_nothing_to_test() {
    let mut s = server();
    assert_eq!(s.self_test(BOOT), SelfTest::NotOnTrial);
    assert!(!s.restart_due(BOOT));
    assert!(!s.restart_due(Timestamp(BOOT.0 + 86_400_000)));
}

#[test]
fn device_time_resumes_after_the_newest_snapshot() {
    // A blank store: from 0.
    let mut blank = Store::new(RamFlash::new()).unwrap();
    assert_eq!(thecal_device::store::resume_time(&mut blank), Timestamp(0));
    let mut s = server();
    let later = Timestamp(BOOT.0 + 3_600_000);
    s.tick(later);
    s.pump_mut().save_snapshot(later);
    assert_eq!(
        thecal_device::store::resume_time(s.pump_mut().storage_mut()),
        Timestamp(later.0 + 1)
    );
}

/// A server whose updater runs on trial: embassy-boot's state partition marked as the
/// bootloader leaves it after swapping a new image in.
fn on_trial() -> UpdServer {
    let mut state = RamFlash::<PAGE>::new();
    let mut word = embassy_boot::AlignedBuffer([0u8; 4]);
    embassy_boot::BlockingFirmwareState::new(&mut state, &mut word.0)
        .mark_updated()
        .unwrap();
    let running = header(1, 1, 1, b"x");
    let updater = Updater::new(RamFlash::new(), state, TRUSTED_KEY, Board::SIM, running).unwrap();
    assert_eq!(updater.boot(), Boot::Trial);
    let mut server = Server::with_firmware(
        boot(continuous(100), Nanolitres::from_ml(18)),
        updater,
        Timestamp(0),
    );
    server.stir(&ENTROPY);
    server
}

#[test]
fn an_image_on_trial_that_comes_up_from_its_store_confirms_itself() {
    let mut s = on_trial();
    // Refused while on trial: no update over an unconfirmed image.
    assert_eq!(
        s.firmware_mut().begin(&update::sign(
            &header(100, 2, 1, &[0; 100]),
            &DEV_SECRET_KEY
        )),
        Err(UpdateRefusal::AwaitingConfirmation)
    );
    assert_eq!(s.self_test(BOOT), SelfTest::Confirmed);
    assert_eq!(s.firmware().boot(), Boot::Confirmed);
    let (_, state) = s.into_parts().1.into_parts();
    let mut state = state;
    let mut word = embassy_boot::AlignedBuffer([0u8; 4]);
    assert_eq!(
        embassy_boot::BlockingFirmwareState::new(&mut state, &mut word.0)
            .get_state()
            .unwrap(),
        embassy_boot::State::Boot,
        "the bootloader keeps the image"
    );
    // Once confirmed, nothing more to test.
    let mut again = on_trial();
    assert_eq!(again.self_test(BOOT), SelfTest::Confirmed);
    assert_eq!(again.self_test(BOOT), SelfTest::NotOnTrial);
}
