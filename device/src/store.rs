//! FlashStore: the Storage trait over any NorFlash.
