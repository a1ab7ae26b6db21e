//! The updater and embassy-boot's bootloader over one RAM flash split into the therapy
//! store, the state partition, the active slot and the update slot; power cut at random
//! flash operations of the transfer, the verification, the swap and the confirmation.

extern crate std;

use core::cell::RefCell;
use std::vec;
use std::vec::Vec;

use embassy_boot::{AlignedBuffer, BootLoader, BootLoaderConfig, State};
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embedded_storage::nor_flash::ReadNorFlash;
use thecal_protocol::update::{
    self, Board, ImageError, ImageHeader, KeyKind, SlotState, UpdateRefusal, Version,
    DEV_PUBLIC_KEY, DEV_SECRET_KEY, HEADER_LEN, MAX_CHUNK,
};

use super::{read_header, Boot, Geometry, Updater};
use crate::store::flash::{RamFlash, PAGE};
use crate::store::STORE_BYTES;

mod gate;

const ACTIVE_PAGES: usize = 6;
const STORE: usize = STORE_BYTES;
const STATE_AT: usize = STORE;
const ACTIVE_AT: usize = STATE_AT + PAGE;
const DFU_AT: usize = ACTIVE_AT + ACTIVE_PAGES * PAGE;
const SIZE: usize = DFU_AT + (ACTIVE_PAGES + 1) * PAGE;
const IMAGE_MAX: usize = (ACTIVE_PAGES - 1) * PAGE;

type Flash = RamFlash<SIZE>;
type Shared = Mutex<NoopRawMutex, RefCell<Flash>>;
type Part<'a> = BlockingPartition<'a, NoopRawMutex, Flash>;

fn parts(f: &Shared) -> (Part<'_>, Part<'_>, Part<'_>) {
    (
        BlockingPartition::new(f, STATE_AT as u32, PAGE as u32),
        BlockingPartition::new(f, ACTIVE_AT as u32, (ACTIVE_PAGES * PAGE) as u32),
        BlockingPartition::new(f, DFU_AT as u32, ((ACTIVE_PAGES + 1) * PAGE) as u32),
    )
}

/// A deterministic image of `len` bytes, different per `seed`.
fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn header(img: &[u8], version: u8, security: u32) -> ImageHeader {
    ImageHeader {
        key: KeyKind::Development,
        board: Board::SIM,
        version: Version {
            major: 1,
            minor: version,
            patch: 0,
        },
        security,
        length: img.len() as u32,
        sha256: update::sha256(img),
    }
}

struct Package {
    header: [u8; HEADER_LEN],
    image: Vec<u8>,
}

fn package(len: usize, seed: u8, version: u8, security: u32) -> Package {
    let image = image(len, seed);
    let header = update::sign(&header(&image, version, security), &DEV_SECRET_KEY);
    Package { header, image }
}

/// A device as it leaves the factory: the old image in the active slot with its
/// trailer, a therapy store full of recognisable bytes, blank state and update slot.
fn factory(old: &Package) -> Flash {
    let mut f = Flash::new();
    let bytes = f.as_bytes_mut();
    for (i, b) in bytes[..STORE].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    bytes[ACTIVE_AT..ACTIVE_AT + old.image.len()].copy_from_slice(&old.image);
    let trailer = ACTIVE_AT + IMAGE_MAX;
    bytes[trailer..trailer + HEADER_LEN].copy_from_slice(&old.header);
    f
}

fn store_untouched(f: &Flash) {
    assert!(
        f.as_bytes()[..STORE]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8),
        "the therapy store region changed"
    );
}

/// The active slot holds `p` whole: its bytes hash to the header's SHA-256 and its
/// trailer is `p`'s header.
fn holds(f: &Flash, p: &Package) -> bool {
    let b = f.as_bytes();
    let h = ImageHeader::parse(&p.header).unwrap();
    let trailer = ACTIVE_AT + IMAGE_MAX;
    update::sha256(&b[ACTIVE_AT..ACTIVE_AT + h.length as usize]) == h.sha256
        && b[trailer..trailer + HEADER_LEN] == p.header
}

/// Runs the bootloader; `Err` on a power cut.
fn boot(f: &Shared) -> Result<State, ()> {
    let (state, active, dfu) = parts(f);
    let mut bl = BootLoader::new(BootLoaderConfig { active, dfu, state });
    let mut buf = AlignedBuffer([0u8; 256]);
    bl.prepare_boot(&mut buf.0).map_err(|_| ())
}

/// The application's updater after a boot.
fn updater(f: &Shared) -> Updater<Part<'_>, Part<'_>> {
    let (state, mut active, dfu) = parts(f);
    let g = Geometry::of(dfu.capacity(), PAGE).unwrap();
    let running = read_header(&mut active, g.trailer()).expect("active slot has a header");
    Updater::new(dfu, state, DEV_PUBLIC_KEY, Board::SIM, running).unwrap()
}

/// Sends the whole package; the first refusal is returned.
fn send(u: &mut Updater<Part<'_>, Part<'_>>, p: &Package) -> Result<(), UpdateRefusal> {
    let mut at = u.begin(&p.header)?.next as usize;
    while at < p.image.len() {
        let end = (at + MAX_CHUNK).min(p.image.len());
        at = u.chunk(at as u32, &p.image[at..end])?.next as usize;
    }
    u.finish().map(|_| ())
}

/// The flash images are large arrays, copied by value in debug builds: the tests run on
/// a thread with room for them.
fn big_stack(f: fn()) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

fn shared(f: Flash) -> Shared {
    Mutex::new(RefCell::new(f))
}

fn take(f: Shared) -> Flash {
    f.into_inner().into_inner()
}

fn old() -> Package {
    package(3 * PAGE + 100, 1, 1, 1)
}

fn new() -> Package {
    package(IMAGE_MAX - 7, 2, 2, 1)
}

#[test]
fn geometry_of_the_slots() {
    big_stack(geometry_of_the_slots_body);
}

fn geometry_of_the_slots_body() {
    let g = Geometry::of((ACTIVE_PAGES + 1) * PAGE, PAGE).unwrap();
    assert_eq!(g.active_pages, ACTIVE_PAGES as u32);
    assert_eq!(g.image_capacity(), IMAGE_MAX as u32);
    assert_eq!(g.trailer(), IMAGE_MAX as u32);
    assert_eq!(g.previous_trailer(), (ACTIVE_PAGES * PAGE) as u32);
    assert_eq!(Geometry::of(2 * PAGE, PAGE), None);
    assert_eq!(Geometry::of(3 * PAGE + 4, PAGE), None);
}

#[test]
fn update_swap_trial_confirm() {
    big_stack(update_swap_trial_confirm_body);
}

fn update_swap_trial_confirm_body() {
    let (old, new) = (old(), new());
    let f = shared(factory(&old));
    assert_eq!(boot(&f), Ok(State::Boot));
    {
        let mut u = updater(&f);
        assert_eq!(u.boot(), Boot::Confirmed);
        assert_eq!(u.report().update, None);
        send(&mut u, &new).unwrap();
        let r = u.report();
        assert_eq!(r.active.state, SlotState::Confirmed);
        assert_eq!(r.update.unwrap().state, SlotState::Pending);
        assert_eq!(r.update.unwrap().version.minor, 2);
        assert!(u.wants_restart(false));
        assert!(!u.wants_restart(true), "no swap while a bolus runs");
        // Finishing again or re-sending the header answers "pending", changes nothing.
        assert!(u.finish().unwrap().pending);
        assert!(u.begin(&new.header).unwrap().pending);
        assert_eq!(u.begin(&old.header), Err(UpdateRefusal::SwapPending));
    }
    assert!(
        holds(&f.lock(|c| c.borrow().clone()), &old),
        "active untouched"
    );
    assert_eq!(boot(&f), Ok(State::Swap));
    assert!(holds(&f.lock(|c| c.borrow().clone()), &new));
    {
        let mut u = updater(&f);
        assert_eq!(u.boot(), Boot::Trial);
        assert_eq!(u.running().version.minor, 2);
        let r = u.report();
        assert_eq!(r.active.state, SlotState::Trial);
        let prev = r.update.unwrap();
        assert_eq!((prev.state, prev.version.minor), (SlotState::Previous, 1));
        assert_eq!(
            u.begin(&new.header),
            Err(UpdateRefusal::AwaitingConfirmation)
        );
        u.confirm().unwrap();
        assert_eq!(u.report().active.state, SlotState::Confirmed);
    }
    assert_eq!(boot(&f), Ok(State::Boot));
    let f = take(f);
    assert!(holds(&f, &new));
    store_untouched(&f);
}

#[test]
fn unconfirmed_image_is_rolled_back_at_the_next_boot() {
    big_stack(unconfirmed_image_is_rolled_back_at_the_next_boot_body);
}

fn unconfirmed_image_is_rolled_back_at_the_next_boot_body() {
    let (old, new) = (old(), new());
    let f = shared(factory(&old));
    boot(&f).unwrap();
    send(&mut updater(&f), &new).unwrap();
    assert_eq!(boot(&f), Ok(State::Swap));
    assert_eq!(updater(&f).boot(), Boot::Trial);
    // The new firmware restarts (crash, watchdog) before confirming itself: the
    // bootloader finds the swap unconfirmed and swaps back (it reports the state it
    // found, and leaves "reverted" behind).
    assert_eq!(boot(&f), Ok(State::Swap));
    assert!(holds(&f.lock(|c| c.borrow().clone()), &old));
    let mut u = updater(&f);
    assert_eq!(u.boot(), Boot::RolledBack);
    let r = u.report();
    assert_eq!(r.active.state, SlotState::Confirmed);
    assert_eq!(r.active.version.minor, 1);
    let back = r.update.unwrap();
    assert_eq!((back.state, back.version.minor), (SlotState::RolledBack, 2));
    // The pump can be updated again after a rollback.
    send(&mut u, &new).unwrap();
    drop(u);
    assert_eq!(boot(&f), Ok(State::Swap));
    assert_eq!(updater(&f).boot(), Boot::Trial);
    updater(&f).confirm().unwrap();
    assert_eq!(boot(&f), Ok(State::Boot));
    let f = take(f);
    assert!(holds(&f, &new));
    store_untouched(&f);
}

/// A refused update changes nothing at all: every byte of the flash is as before.
fn refused(p: &Package, why: UpdateRefusal) {
    let factory = factory(&old());
    let f = shared(factory.clone());
    boot(&f).unwrap();
    let before = f.lock(|c| c.borrow().clone());
    let ops = before.stats().ops();
    assert_eq!(send(&mut updater(&f), p), Err(why));
    let after = take(f);
    assert_eq!(after.stats().ops(), ops, "no flash operation");
    assert!(after.as_bytes() == before.as_bytes());
}

#[test]
fn bad_images_are_refused_before_any_flash_operation() {
    big_stack(bad_images_are_refused_before_any_flash_operation_body);
}

fn bad_images_are_refused_before_any_flash_operation_body() {
    let mut bad_sig = new();
    bad_sig.header[70] ^= 1;
    refused(
        &bad_sig,
        UpdateRefusal::Image(ImageError::BadSignature { dev_signed: true }),
    );

    let mut h = header(&new().image, 2, 1);
    h.board = Board::NRF52840_DK;
    let other_board = Package {
        header: update::sign(&h, &DEV_SECRET_KEY),
        image: new().image,
    };
    refused(
        &other_board,
        UpdateRefusal::Image(ImageError::WrongBoard {
            expected: Board::SIM,
            found: Board::NRF52840_DK,
        }),
    );

    let downgrade = package(PAGE, 3, 9, 0);
    refused(
        &downgrade,
        UpdateRefusal::Image(ImageError::Downgrade {
            minimum: 1,
            found: 0,
        }),
    );

    let too_large = package(IMAGE_MAX + 1, 3, 3, 1);
    refused(
        &too_large,
        UpdateRefusal::Image(ImageError::TooLarge {
            capacity: IMAGE_MAX as u32,
            length: IMAGE_MAX as u32 + 1,
        }),
    );

    let other_key = {
        let img = image(100, 4);
        Package {
            header: update::sign(&header(&img, 3, 1), &[9; 32]),
            image: img,
        }
    };
    refused(
        &other_key,
        UpdateRefusal::Image(ImageError::BadSignature { dev_signed: true }),
    );
}

#[test]
fn truncated_or_altered_images_are_refused_and_nothing_is_marked() {
    big_stack(truncated_or_altered_images_are_refused_and_nothing_is_marked_body);
}

fn truncated_or_altered_images_are_refused_and_nothing_is_marked_body() {
    let (old, new) = (old(), new());
    for case in 0..2 {
        let f = shared(factory(&old));
        boot(&f).unwrap();
        {
            let mut u = updater(&f);
            u.begin(&new.header).unwrap();
            let cut = 3 * PAGE;
            let mut at = 0;
            let mut body = new.image.clone();
            if case == 1 {
                body[5000] ^= 0x40;
            }
            let stop = if case == 0 { cut } else { body.len() };
            while at < stop {
                let end = (at + MAX_CHUNK).min(stop);
                at = u.chunk(at as u32, &body[at..end]).unwrap().next as usize;
            }
            let err = u.finish().unwrap_err();
            if case == 0 {
                assert_eq!(
                    err,
                    UpdateRefusal::Incomplete {
                        next: cut as u32,
                        length: new.image.len() as u32
                    }
                );
            } else {
                assert_eq!(err, UpdateRefusal::Image(ImageError::HashMismatch));
                assert_eq!(u.finish(), Err(UpdateRefusal::NotStarted), "dropped");
            }
            assert!(!u.wants_restart(false));
        }
        assert_eq!(boot(&f), Ok(State::Boot), "nothing marked");
        let f = take(f);
        assert!(holds(&f, &old));
        store_untouched(&f);
    }
}

#[test]
fn chunks_out_of_order_write_nothing_and_a_transfer_resumes() {
    big_stack(chunks_out_of_order_write_nothing_and_a_transfer_resumes_body);
}

fn chunks_out_of_order_write_nothing_and_a_transfer_resumes_body() {
    let (old, new) = (old(), new());
    let f = shared(factory(&old));
    boot(&f).unwrap();
    let mut u = updater(&f);
    assert_eq!(
        u.chunk(0, &new.image[..512]),
        Err(UpdateRefusal::NotStarted)
    );
    assert_eq!(u.finish(), Err(UpdateRefusal::NotStarted));
    u.begin(&new.header).unwrap();
    assert_eq!(u.chunk(512, &new.image[512..1024]).unwrap().next, 0);
    assert_eq!(u.chunk(0, &new.image[..512]).unwrap().next, 512);
    // A repeat of the last chunk (its answer was lost) is not written again.
    assert_eq!(u.chunk(0, &new.image[..512]).unwrap().next, 512);
    assert_eq!(
        u.chunk(512, &new.image[512..514]),
        Err(UpdateRefusal::BadChunk)
    );
    assert_eq!(u.chunk(512, &[]), Err(UpdateRefusal::BadChunk));
    let long = vec![0; MAX_CHUNK + 4];
    assert_eq!(u.chunk(512, &long), Err(UpdateRefusal::BadChunk));
    assert_eq!(u.chunk(512, &new.image[512..1024]).unwrap().next, 1024);
    // The link breaks; the programmer begins again with the same header and resumes.
    let resumed = u.begin(&new.header).unwrap();
    assert_eq!((resumed.next, resumed.pending), (1024, false));
    let r = u.report();
    assert_eq!(
        r.update.unwrap().state,
        SlotState::Receiving {
            next: 1024,
            length: new.image.len() as u32
        }
    );
    send(&mut u, &new).unwrap();
    drop(u);
    assert_eq!(boot(&f), Ok(State::Swap));
    assert!(holds(&take(f), &new));
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Boots until a boot completes, cutting power again at a random operation of each
/// attempt while `cuts` lasts; then the application confirms (or not). Returns the
/// bootloader's last state.
fn boot_through_cuts(f: &Shared, rng: &mut Rng, mut cuts: u32, confirm: bool) -> State {
    loop {
        if cuts > 0 {
            cuts -= 1;
            let n = rng.below(30_000);
            f.lock(|c| c.borrow_mut().cut_power_after(n));
        }
        let r = boot(f);
        f.lock(|c| c.borrow_mut().disarm());
        match r {
            Ok(state) => {
                let trial = updater(f).boot() == Boot::Trial;
                if trial && confirm {
                    if cuts > 0 {
                        cuts -= 1;
                        let n = rng.below(1100);
                        f.lock(|c| c.borrow_mut().cut_power_after(n));
                    }
                    let done = updater(f).confirm();
                    let off = f.lock(|c| {
                        let mut c = c.borrow_mut();
                        let off = c.is_powered_off();
                        c.disarm();
                        c.reboot();
                        off
                    });
                    if off || done.is_err() {
                        continue;
                    }
                }
                return state;
            }
            Err(()) => f.lock(|c| c.borrow_mut().reboot()),
        }
    }
}

/// Operations of a whole update (transfer, verification, marking) and of its swap.
fn ops_of_update_and_swap() -> (u64, u64) {
    let (old, new) = (old(), new());
    let f = shared(factory(&old));
    boot(&f).unwrap();
    let start = f.lock(|c| c.borrow().stats().ops());
    send(&mut updater(&f), &new).unwrap();
    let sent = f.lock(|c| c.borrow().stats().ops());
    boot(&f).unwrap();
    let swapped = f.lock(|c| c.borrow().stats().ops());
    (sent - start, swapped - sent)
}

#[test]
fn power_cut_anywhere_in_an_update_leaves_a_whole_image_and_the_store_untouched() {
    big_stack(power_cut_anywhere_in_an_update_leaves_a_whole_image_and_the_store_untouched_body);
}

fn power_cut_anywhere_in_an_update_leaves_a_whole_image_and_the_store_untouched_body() {
    let (old, new) = (old(), new());
    let (update_ops, swap_ops) = ops_of_update_and_swap();
    assert!(
        update_ops > 5_000 && swap_ops > 10_000,
        "{update_ops} {swap_ops}"
    );
    let mut fresh = factory(&old);
    {
        let f = shared(fresh);
        boot(&f).unwrap();
        fresh = take(f);
    }
    let mut rng = Rng(0x7e57_c0de);
    let (mut kept_old, mut got_new) = (0, 0);
    // 1 200 runs, each cut once at a random operation from the first chunk on.
    for i in 0..1_200u64 {
        let mut flash = fresh.clone();
        flash.seed_tearing(i);
        // Two thirds of the cuts fall in the transfer, the rest in the swap and the
        // confirmation after it (the budget left after the transfer carries on).
        let cut = rng.below((update_ops + swap_ops / 2) + 1_100);
        flash.cut_power_after(cut);
        let f = shared(flash);
        let sent = send(&mut updater(&f), &new);
        let off = f.lock(|c| c.borrow().is_powered_off());
        assert!(
            sent.is_ok() || off,
            "cut {cut}: {sent:?} without a power cut"
        );
        if off {
            f.lock(|c| {
                let mut c = c.borrow_mut();
                c.disarm();
                c.reboot();
            });
        }
        // A further power cut during the boot that follows in half of the runs cut in
        // the transfer.
        let confirm = i % 3 != 0;
        let more = if off { (i % 2) as u32 } else { 0 };
        boot_through_cuts(&f, &mut rng, more, confirm);
        // And a second boot: an unconfirmed image is rolled back, a confirmed one stays.
        boot_through_cuts(&f, &mut rng, 0, confirm);
        let end = take(f);
        store_untouched(&end);
        let is_new = holds(&end, &new);
        assert!(
            is_new || holds(&end, &old),
            "run {i}, cut {cut}: no whole image"
        );
        if is_new {
            // (A cut during the last word of the mark may still have completed it.)
            assert!(confirm, "run {i}: an unconfirmed image was kept");
            got_new += 1;
        } else {
            kept_old += 1;
        }
    }
    std::println!("transfer cuts: {kept_old} kept the old image, {got_new} the new");
    assert!(kept_old > 100 && got_new > 0, "{kept_old} {got_new}");
}

#[test]
fn power_cut_anywhere_in_the_swap_and_its_rollback() {
    big_stack(power_cut_anywhere_in_the_swap_and_its_rollback_body);
}

fn power_cut_anywhere_in_the_swap_and_its_rollback_body() {
    let (old, new) = (old(), new());
    let (_, swap_ops) = ops_of_update_and_swap();
    let mut marked = factory(&old);
    {
        let f = shared(marked);
        boot(&f).unwrap();
        send(&mut updater(&f), &new).unwrap();
        marked = take(f);
    }
    let mut rng = Rng(0x5a17);
    let (mut old_n, mut new_n) = (0, 0);
    for i in 0..1_200u64 {
        let mut flash = marked.clone();
        flash.seed_tearing(i);
        // Every tenth run cuts at one of the swap's first and last operations.
        let cut = match i % 10 {
            0 => i / 10 % 40,
            1 => swap_ops.saturating_sub(i / 10 % 40),
            _ => rng.below(swap_ops + 10),
        };
        flash.cut_power_after(cut);
        let f = shared(flash);
        if boot(&f).is_err() {
            f.lock(|c| c.borrow_mut().reboot());
        }
        f.lock(|c| c.borrow_mut().disarm());
        let confirm = i % 2 == 0;
        // Up to two more cuts while the interrupted swap (or its rollback) resumes.
        boot_through_cuts(&f, &mut rng, (i % 3) as u32, confirm);
        boot_through_cuts(&f, &mut rng, (i % 2) as u32, confirm);
        let end = take(f);
        store_untouched(&end);
        if holds(&end, &new) {
            new_n += 1;
        } else {
            assert!(holds(&end, &old), "run {i}, cut {cut}: no whole image");
            old_n += 1;
        }
    }
    std::println!("swap cuts ({swap_ops} operations): {old_n} old, {new_n} new");
    assert!(old_n > 100 && new_n > 100, "{old_n} {new_n}");
}

mod arbitrary {
    //! Any sequence of update requests, with any bytes, never panics, never marks an
    //! image that is not the signed one, and never touches the active slot or the store.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Begin(Vec<u8>),
        BeginGood,
        Chunk(u32, Vec<u8>),
        GoodChunk(u8, bool),
        /// The rest of the signed image, in order, from where the pump stands.
        Rest,
        Finish,
        Report,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..140).prop_map(Op::Begin),
            Just(Op::BeginGood),
            (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..600))
                .prop_map(|(o, d)| Op::Chunk(o, d)),
            (any::<u8>(), any::<bool>()).prop_map(|(i, flip)| Op::GoodChunk(i, flip)),
            Just(Op::Rest),
            Just(Op::Finish),
            Just(Op::Report),
        ]
    }

    fn run(ops: &[Op]) {
        let (old, new) = (old(), package(3 * PAGE, 9, 3, 1));
        let f = shared(factory(&old));
        boot(&f).unwrap();
        let untouched = |b: &[u8]| [b[..STATE_AT].to_vec(), b[ACTIVE_AT..DFU_AT].to_vec()].concat();
        let active_before = f.lock(|c| untouched(c.borrow().as_bytes()));
        let mut marked = false;
        let mut marks = 0;
        {
            let mut u = updater(&f);
            for op in ops {
                let r = match op {
                    Op::Begin(b) => match <&[u8; HEADER_LEN]>::try_from(b.as_slice()) {
                        Ok(h) => u.begin(h),
                        Err(_) => Err(UpdateRefusal::BadChunk),
                    },
                    Op::BeginGood => u.begin(&new.header),
                    Op::Chunk(o, d) => u.chunk(*o, d),
                    Op::GoodChunk(i, flip) => {
                        let at = (*i as usize % 24) * MAX_CHUNK;
                        let end = (at + MAX_CHUNK).min(new.image.len());
                        let mut d = new.image[at.min(end)..end].to_vec();
                        if *flip && !d.is_empty() {
                            d[0] ^= 1;
                        }
                        u.chunk(at as u32, &d)
                    }
                    Op::Rest => u.begin(&new.header).and_then(|p| {
                        let mut at = p.next as usize;
                        let mut last = p;
                        while at < new.image.len() {
                            let end = (at + MAX_CHUNK).min(new.image.len());
                            last = u.chunk(at as u32, &new.image[at..end])?;
                            at = last.next as usize;
                        }
                        Ok(last)
                    }),
                    Op::Finish => u.finish(),
                    Op::Report => {
                        u.report();
                        Ok(update::UpdateProgress {
                            next: 0,
                            length: 0,
                            pending: false,
                        })
                    }
                };
                marked |= r.is_ok_and(|p| p.pending);
                marks += usize::from(matches!(op, Op::Finish) && marked);
            }
        }
        let after = take(f);
        assert!(
            untouched(after.as_bytes()) == active_before,
            "store or active slot changed before a boot"
        );
        let f = shared(after);
        boot(&f).unwrap();
        let end = take(f);
        if marked {
            assert!(
                holds(&end, &new),
                "a marked image must be the signed one, whole"
            );
            assert!(marks > 0);
        } else {
            assert!(holds(&end, &old));
        }
        store_untouched(&end);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn any_request_sequence_is_safe(ops in proptest::collection::vec(op(), 0..80)) {
            let ops2 = ops.clone();
            std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn(move || run(&ops2))
                .unwrap()
                .join()
                .unwrap();
        }
    }
}
