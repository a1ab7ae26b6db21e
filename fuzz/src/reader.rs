//! A total byte reader: the fuzz inputs of `device_server` and `host_client` are small
//! hand-parsed formats (so `seed_corpora.py` can write seeds for them); running out of
//! bytes reads as zeros and ends the input.

/// A cursor over fuzz input.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `data` from the start.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// One byte, or `None` at the end.
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// Little-endian u16 (missing bytes read as zero).
    pub fn u16(&mut self) -> u16 {
        let lo = self.u8().unwrap_or(0);
        let hi = self.u8().unwrap_or(0);
        u16::from_le_bytes([lo, hi])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
}
