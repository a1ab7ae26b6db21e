//! The store on `FileFlash`: what was written survives closing and reopening the file (the
//! simulator's `--state FILE`).
#![cfg(feature = "sim")]

mod storage_common;

use storage_common::*;
use thecal_device::store::flash::FileFlash;
use thecal_device::store::Storage;
use thecal_device::store::{FlashStore, FLASH_SIZE};

#[test]
fn store_survives_reopening_its_state_file() {
    let path = std::env::temp_dir().join(format!("thecal-store-{}.bin", std::process::id()));
    let _ = std::fs::remove_file(&path);
    {
        let mut store = FlashStore::new(FileFlash::open(&path, FLASH_SIZE).unwrap()).unwrap();
        assert_eq!(store.load().unwrap().prescription, None);
        store.save_prescription(&record(4)).unwrap();
        store.save_snapshot(&snapshot(8)).unwrap();
        for i in 0..700 {
            store.append_log(&entry(i)).unwrap();
        }
        // Dropped without any shutdown step, as a killed process would be.
    }
    let mut store = FlashStore::new(FileFlash::open(&path, FLASH_SIZE).unwrap()).unwrap();
    let stored = store.load().unwrap();
    assert_eq!(stored.prescription, Some(record(4)));
    assert_eq!(stored.snapshot, Some(snapshot(8)));
    assert_eq!(stored.log.next, 700);
    let (_, entries) = read_all(&mut store, 0);
    assert_eq!(entries.last(), Some(&entry(699)));
    // A state file of another size is refused rather than misread.
    assert!(FileFlash::open(&path, FLASH_SIZE + 4096).is_err());
    std::fs::remove_file(&path).unwrap();
}
