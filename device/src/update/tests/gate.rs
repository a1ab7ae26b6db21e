//! The bootloader's check of a pending image ([`crate::update::gate`]) in front of
//! embassy-boot's bootloader, over the same flash as the updater's tests.

use super::*;
use crate::update::gate::{check_pending, Gate};

/// The gate, then the bootloader, as the QEMU and nRF52840 bootloaders run them.
fn gated_boot(f: &Shared) -> (Gate, Result<State, ()>) {
    let (mut state, mut active, mut dfu) = parts(f);
    let g = Geometry::of(dfu.capacity(), PAGE).unwrap();
    // Mid-swap the active trailer may be torn: no minimum then, as the bootloaders do.
    let min = read_header(&mut active, g.trailer()).map_or(0, |h| h.security);
    let mut scratch = [0u8; 256];
    let gate = check_pending(
        &mut dfu,
        &mut state,
        &DEV_PUBLIC_KEY,
        Board::SIM,
        min,
        &mut scratch,
    );
    (gate, boot(f))
}

fn marked(new: &Package) -> Shared {
    let f = shared(factory(&old()));
    boot(&f).unwrap();
    send(&mut updater(&f), new).unwrap();
    f
}

#[test]
fn a_marked_image_that_passes_is_installed() {
    big_stack(|| {
        let new = new();
        let f = marked(&new);
        let (gate, booted) = gated_boot(&f);
        let Gate::Install(h) = gate else {
            panic!("{gate:?}")
        };
        assert_eq!(h.version.minor, 2);
        assert_eq!(booted, Ok(State::Swap));
        assert!(holds(&f.lock(|c| c.borrow().clone()), &new));
        // On trial now: the gate lets a restart revert (no check of the way back).
        assert_eq!(gated_boot(&f).0, Gate::Underway);
        assert!(holds(&take(f), &old()));
    });
}

#[test]
fn an_image_changed_after_it_was_marked_is_not_installed() {
    big_stack(|| {
        // A byte of the image, then the signature in its header, altered in the update
        // slot after the application verified and marked it.
        for (at, why) in [
            (DFU_AT + 100, ImageError::HashMismatch),
            (
                DFU_AT + IMAGE_MAX + 70,
                ImageError::BadSignature { dev_signed: true },
            ),
        ] {
            let f = marked(&new());
            f.lock(|c| c.borrow_mut().as_bytes_mut()[at] ^= 0x10);
            let (gate, booted) = gated_boot(&f);
            assert_eq!(gate, Gate::Refused(why));
            assert_eq!(booted, Ok(State::Boot), "the swap was cancelled");
            let u = updater(&f);
            assert_eq!(u.boot(), Boot::Confirmed);
            assert_eq!(u.running().version.minor, 1);
            drop(u);
            let end = take(f);
            assert!(holds(&end, &old()), "the running image boots as it is");
            store_untouched(&end);
        }
    });
}

#[test]
fn an_image_signed_by_another_key_is_not_installed_even_if_marked() {
    big_stack(|| {
        // What a flaw in the application's check would let through: a header signed by
        // a key the pump does not trust, written with its image and marked.
        let f = marked(&new());
        let forged = update::sign(&header(&new().image, 2, 1), &[7u8; 32]);
        f.lock(|c| {
            let mut c = c.borrow_mut();
            let at = DFU_AT + IMAGE_MAX;
            c.as_bytes_mut()[at..at + HEADER_LEN].copy_from_slice(&forged);
        });
        let (gate, booted) = gated_boot(&f);
        assert_eq!(
            gate,
            Gate::Refused(ImageError::BadSignature { dev_signed: true })
        );
        assert_eq!(booted, Ok(State::Boot));
        assert!(holds(&take(f), &old()));
    });
}

#[test]
fn a_swap_cut_short_is_never_stopped_by_the_gate() {
    big_stack(|| {
        let mut rng = Rng(0x5eed);
        let mut installs = 0;
        for _ in 0..40 {
            let new = new();
            let f = marked(&new);
            // Power fails part-way through the swap.
            let cut = rng.below(3_000);
            f.lock(|c| c.borrow_mut().cut_power_after(cut));
            let _ = boot(&f);
            f.lock(|c| {
                let mut c = c.borrow_mut();
                c.disarm();
                c.reboot();
            });
            let (gate, booted) = gated_boot(&f);
            // Once the first page copy is marked, the gate must not check (the image is
            // half moved); before it nothing of the image has moved and it checks and
            // passes. Either way the swap goes on.
            assert!(
                matches!(gate, Gate::Underway | Gate::Install(_)),
                "cut {cut}: the gate must let the swap finish, found {gate:?}"
            );
            if matches!(gate, Gate::Install(_)) {
                installs += 1;
            }
            assert_eq!(booted, Ok(State::Swap));
            assert!(holds(&take(f), &new), "cut {cut}: the swap finished");
        }
        assert!(installs < 40, "some cuts fell after the first page copy");
    });
}

#[test]
fn nothing_marked_nothing_to_check() {
    big_stack(|| {
        let f = shared(factory(&old()));
        boot(&f).unwrap();
        assert_eq!(gated_boot(&f).0, Gate::Idle);
        assert!(holds(&take(f), &old()));
    });
}
