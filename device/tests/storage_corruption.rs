//! Bit rot and misbehaving flash: no flash contents make the store panic; damaged records
//! are skipped (fall back to the older copy) or reported as `Corrupt`, never returned; a
//! write that does not read back is refused and leaves the old record in force.

mod storage_common;

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use storage_common::*;
use thecal_device::store::flash::FlashError;
use thecal_device::store::layout::{PRESCRIPTION_OFFSET, SECRETS_OFFSET, SNAPSHOT_OFFSET};
use thecal_device::store::{FlashStore, FLASH_SIZE};
use thecal_device::store::{Storage, StoreError};

/// A store holding prescriptions 1..=5, snapshots 1..=40 and 1500 log entries (wrapped).
fn full_store() -> Box<Flash> {
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    for i in 0..1_500 {
        if i % 300 == 0 {
            store.save_prescription(&record(i / 300 + 1)).unwrap();
        }
        if i % 37 == 0 {
            store.save_snapshot(&snapshot(i / 37 + 1)).unwrap();
        }
        store.append_log(&entry(i)).unwrap();
    }
    flash
}

/// Everything the store can be asked after damage: nothing panics, and whatever comes back
/// was written at some point (whole).
fn exercise(flash: &mut Flash, rng: &mut Rng) {
    let mut store = mount(flash);
    match store.load() {
        Ok(stored) => {
            if let Some(p) = &stored.prescription {
                assert!((1..=5).contains(&p.revision.0));
                assert_eq!(*p, record(p.revision.0));
            }
            if let Some(s) = &stored.snapshot {
                assert_eq!(*s, snapshot(s.seq));
            }
            assert!(stored.log.oldest <= stored.log.next);
        }
        Err(e) => assert_eq!(e, StoreError::Corrupt),
    }
    let (bounds, entries) = read_all(&mut store, rng.below(1_600) as u32);
    for e in &entries {
        assert_eq!(*e, entry(e.index), "damaged entry returned");
    }
    assert!(entries.windows(2).all(|w| w[0].index < w[1].index));
    assert!(entries.iter().all(|e| e.index < bounds.next));
    // Whatever the damage, fresh writes succeed and are what loads afterwards.
    store.save_prescription(&record(5)).unwrap();
    store.save_snapshot(&snapshot(41)).unwrap();
    let next = store.append_log(&entry(0)).unwrap().next;
    let stored = mount(flash).load().unwrap();
    assert_eq!(stored.prescription, Some(record(5)));
    assert_eq!(stored.snapshot, Some(snapshot(41)));
    assert_eq!(stored.log.next, next);
}

#[test]
fn random_bit_rot_never_panics_nor_returns_damaged_data() {
    let base = full_store();
    let mut rng = Rng::new(0xB17_2072);
    for trial in 0..400 {
        let mut flash = Box::new((*base).clone());
        let bytes = flash.as_bytes_mut();
        match trial % 4 {
            // A few flipped bits anywhere.
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(FLASH_SIZE as u64) as usize;
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            // Random bytes anywhere.
            1 => {
                for _ in 0..1 + rng.below(64) {
                    let at = rng.below(FLASH_SIZE as u64) as usize;
                    bytes[at] = rng.next() as u8;
                }
            }
            // A run of garbage (a sector gone bad).
            2 => {
                let at = rng.below(FLASH_SIZE as u64) as usize;
                let len = (rng.below(6_000) as usize).min(FLASH_SIZE - at);
                for b in &mut bytes[at..at + len] {
                    *b = rng.next() as u8;
                }
            }
            // Everything random.
            _ => bytes.iter_mut().for_each(|b| *b = rng.next() as u8),
        }
        exercise(&mut flash, &mut rng);
    }
}

#[test]
fn blank_zeroed_and_foreign_flash_never_panic() {
    let mut rng = Rng::new(3);
    let mut flash = blank_flash();
    exercise(&mut flash, &mut rng);
    let mut flash = blank_flash();
    flash.as_bytes_mut().fill(0);
    exercise(&mut flash, &mut rng);
    // A foreign image: loads as corrupt or empty; format makes it a clean, empty store.
    let mut flash = blank_flash();
    for (i, b) in flash.as_bytes_mut().iter_mut().enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    let mut store = mount(&mut flash);
    let _ = store.load();
    store.format().unwrap();
    let stored = store.load().unwrap();
    assert_eq!(
        (stored.prescription, stored.snapshot, stored.log),
        (None, None, Default::default())
    );
}

/// Flips a bit of the byte at `at`.
fn rot_byte(flash: &mut Flash, at: usize) {
    flash.as_bytes_mut()[at] ^= 0x10;
}

#[test]
fn damaged_newest_prescription_falls_back_to_the_older_copy() {
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    store.save_prescription(&record(1)).unwrap();
    // Records go back to back from the region start: the second starts at the first
    // erased word.
    let region = PRESCRIPTION_OFFSET as usize;
    let second_at = region
        + store.flash().as_bytes()[region..]
            .chunks_exact(4)
            .position(|w| w == [0xFF; 4])
            .unwrap()
            * 4;
    store.save_prescription(&record(2)).unwrap();
    // A flipped bit in the second record's payload.
    rot_byte(&mut flash, second_at + 20);
    let stored = mount(&mut flash).load().unwrap();
    assert_eq!(stored.prescription, Some(record(1)));
    // A flipped bit in its header as well: still the first one.
    rot_byte(&mut flash, second_at + 2);
    assert_eq!(
        mount(&mut flash).load().unwrap().prescription,
        Some(record(1))
    );
    // The next write goes after the damage and wins.
    let mut store = mount(&mut flash);
    store.save_prescription(&record(3)).unwrap();
    assert_eq!(store.load().unwrap().prescription, Some(record(3)));
}

#[test]
fn damaged_only_prescription_is_corrupt_not_missing() {
    for at in [2, 9, 14, 20, 40] {
        let mut flash = blank_flash();
        mount(&mut flash).save_prescription(&record(2)).unwrap();
        rot_byte(&mut flash, PRESCRIPTION_OFFSET as usize + at);
        // Not `None`: the core would then install its factory prescription.
        assert_eq!(
            mount(&mut flash).load(),
            Err(StoreError::Corrupt),
            "byte {at}"
        );
        // A new write clears the condition.
        let mut store = mount(&mut flash);
        store.save_prescription(&record(3)).unwrap();
        assert_eq!(store.load().unwrap().prescription, Some(record(3)));
    }
}

#[test]
fn damaged_only_snapshot_is_corrupt() {
    let mut flash = blank_flash();
    mount(&mut flash).save_snapshot(&snapshot(5)).unwrap();
    rot_byte(&mut flash, SNAPSHOT_OFFSET as usize + 30);
    assert_eq!(mount(&mut flash).load(), Err(StoreError::Corrupt));
}

#[test]
fn torn_first_write_is_no_record_not_corrupt() {
    let mut uncut = blank_flash();
    let before = uncut.stats();
    mount(&mut uncut).save_prescription(&record(1)).unwrap();
    let ops = uncut.stats().since(&before).ops();
    for cut in 0..ops {
        for seed in 0..3 {
            let mut flash = blank_flash();
            flash.seed_tearing(seed);
            flash.cut_power_after(cut);
            assert!(mount(&mut flash).save_prescription(&record(1)).is_err());
            let stored = reboot_and_load(&mut flash);
            let p = stored.prescription;
            assert!(p.is_none() || p == Some(record(1)), "cut at {cut}");
        }
    }
}

#[test]
fn stray_bits_in_erased_space_are_not_written_over() {
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    store.save_prescription(&record(1)).unwrap();
    let region = PRESCRIPTION_OFFSET as usize;
    let end = region
        + store.flash().as_bytes()[region..region + 4096]
            .chunks_exact(4)
            .position(|w| w == [0xFF; 4])
            .unwrap()
            * 4;
    // A bit stuck at 0 where the next record would go.
    flash.as_bytes_mut()[end + 40] = 0xFE;
    let mut store = mount(&mut flash);
    store.save_prescription(&record(2)).unwrap();
    assert_eq!(store.load().unwrap().prescription, Some(record(2)));
    assert_eq!(
        mount(&mut flash).load().unwrap().prescription,
        Some(record(2))
    );
}

/// A flash with one bit stuck at 0: writes "succeed" but do not read back as written.
struct StuckBit {
    inner: Box<Flash>,
    at: usize,
}

impl ErrorType for StuckBit {
    type Error = FlashError;
}

impl ReadNorFlash for StuckBit {
    const READ_SIZE: usize = 4;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.inner.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl NorFlash for StuckBit {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        self.inner.erase(from, to)?;
        self.inner.as_bytes_mut()[self.at] &= 0xFE;
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        self.inner.write(offset, bytes)?;
        self.inner.as_bytes_mut()[self.at] &= 0xFE;
        Ok(())
    }
}

#[test]
fn write_that_does_not_read_back_is_refused_and_the_old_record_stays() {
    let mut flash = blank_flash();
    mount(&mut flash).save_prescription(&record(1)).unwrap();
    let region = PRESCRIPTION_OFFSET as usize;
    let end = region
        + flash.as_bytes()[region..region + 4096]
            .chunks_exact(4)
            .position(|w| w == [0xFF; 4])
            .unwrap()
            * 4;
    // The bit goes bad after the blank check, while the second record is written.
    let mut bad = StuckBit {
        inner: flash,
        at: 0,
    };
    let mut store = FlashStore::new(&mut bad).unwrap();
    store.load().unwrap();
    store.flash_mut().at = end + 16 + 8; // inside the payload of the next record
                                         // Make the payload byte there have its low bit set, so the stuck bit changes it.
    let mut rev = 2;
    while {
        // The payload: the format prefix (00 02), then the postcard body.
        let mut bytes = vec![0, 2];
        bytes.extend_from_slice(postcard::to_slice(&record(rev), &mut [0u8; 1024]).unwrap());
        bytes.get(8).is_none_or(|b| b & 1 == 0)
    } {
        rev += 1;
    }
    assert_eq!(
        store.save_prescription(&record(rev)),
        Err(StoreError::Verify)
    );
    assert_eq!(store.load().unwrap().prescription, Some(record(1)));
    let StuckBit { mut inner, .. } = bad;
    assert_eq!(
        mount(&mut inner).load().unwrap().prescription,
        Some(record(1))
    );
}

/// Where the payload of every stored copy of `secrets` starts (records hold their
/// payload whole).
fn copies(flash: &Flash, secrets: &thecal_device::store::Secrets) -> Vec<usize> {
    let payload = postcard::to_slice(secrets, &mut [0u8; 512])
        .unwrap()
        .to_vec();
    let region = SECRETS_OFFSET as usize..PRESCRIPTION_OFFSET as usize;
    flash.as_bytes()[region.clone()]
        .windows(payload.len())
        .enumerate()
        .filter(|(_, w)| *w == payload)
        .map(|(i, _)| region.start + i)
        .collect()
}

#[test]
fn one_damaged_copy_of_the_newest_secrets_leaves_the_newest_generation() {
    let mut base = blank_flash();
    let mut store = mount(&mut base);
    store.save_secrets(&secrets(1)).unwrap();
    store.save_secrets(&secrets(2)).unwrap();
    let (old, new) = (copies(&base, &secrets(1)), copies(&base, &secrets(2)));
    assert_eq!((old.len(), new.len()), (2, 2), "each save is written twice");
    assert!(old[1] < new[0]);
    // Either copy of the newest damaged: the other one, and the damage is reported.
    for at in &new {
        let mut flash = Box::new((*base).clone());
        rot_byte(&mut flash, at + 5);
        assert_eq!(
            mount(&mut flash).load_secrets(),
            Ok((Some(secrets(2)), true)),
            "copy at {at:#x}"
        );
    }
    // Both: the generation before, whole.
    let mut flash = Box::new((*base).clone());
    for at in &new {
        rot_byte(&mut flash, at + 5);
    }
    assert_eq!(
        mount(&mut flash).load_secrets(),
        Ok((Some(secrets(1)), true))
    );
    // Every copy: damage and nothing valid, never "a new pump".
    for at in &old {
        rot_byte(&mut flash, at + 5);
    }
    assert_eq!(mount(&mut flash).load_secrets(), Ok((None, true)));
    // Undamaged: the newest, no damage.
    assert_eq!(
        mount(&mut base).load_secrets(),
        Ok((Some(secrets(2)), false))
    );
}

#[test]
fn secrets_and_therapy_records_keep_to_their_regions() {
    let mut base = blank_flash();
    let mut store = mount(&mut base);
    store.save_secrets(&secrets(3)).unwrap();
    store.save_prescription(&record(2)).unwrap();
    store.save_snapshot(&snapshot(4)).unwrap();
    for i in 0..20 {
        store.append_log(&entry(i)).unwrap();
    }
    let therapy = mount(&mut base).load().unwrap();
    let secrets_region = SECRETS_OFFSET as usize..PRESCRIPTION_OFFSET as usize;
    let therapy_region = PRESCRIPTION_OFFSET as usize..FLASH_SIZE;
    // The secrets region destroyed: the therapy records are all there.
    let mut flash = Box::new((*base).clone());
    for (i, b) in flash.as_bytes_mut()[secrets_region.clone()]
        .iter_mut()
        .enumerate()
    {
        *b = (i as u8).wrapping_mul(37) ^ 0x5A;
    }
    let mut store = mount(&mut flash);
    assert_eq!(store.load_secrets(), Ok((None, true)));
    assert_eq!(store.load(), Ok(therapy.clone()));
    assert_eq!(read_all(&mut store, 0).1.len(), 20);
    // The therapy regions destroyed: the secrets are.
    let mut flash = Box::new((*base).clone());
    for (i, b) in flash.as_bytes_mut()[therapy_region].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0x5A;
    }
    let mut store = mount(&mut flash);
    assert_eq!(store.load(), Err(StoreError::Corrupt));
    assert_eq!(store.load_secrets(), Ok((Some(secrets(3)), false)));
    // And a secrets save writes nowhere else.
    let mut flash = Box::new((*base).clone());
    mount(&mut flash).save_secrets(&secrets(4)).unwrap();
    assert_eq!(
        flash.as_bytes()[PRESCRIPTION_OFFSET as usize..],
        base.as_bytes()[PRESCRIPTION_OFFSET as usize..]
    );
    assert_eq!(mount(&mut flash).load(), Ok(therapy));
}
