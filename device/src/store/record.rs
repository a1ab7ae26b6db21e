//! The on-flash record format: a CRC-protected header, the payload, and a commit word.
//!
//! ```text
//! offset  size  field
//!  0      2     magic        region tag, u16 LE (see `layout`)
//!  2      2     len          payload length in bytes, u16 LE
//!  4      4     seq          sequence number, u32 LE (log: the entry's index)
//!  8      4     payload_crc  CRC-32C of the payload, u32 LE
//! 12      4     header_crc   CRC-32C of bytes 0..12, u32 LE
//! 16      len   payload      postcard; padded with 0xFF to a multiple of 4
//! 16+pad  4     commit       00 00 00 00 once the record has been verified
//! ```
//!
//! The three parts are written by three separate `write` calls, in this order: header,
//! payload, and — only after the header and payload read back exactly — the commit word.
//! A record *counts* when its header and payload CRCs hold and its commit word is no
//! longer all `0xFF`. How the others are read:
//!
//! | header | payload CRC | commit   | meaning                                        |
//! |--------|-------------|----------|------------------------------------------------|
//! | valid  | ok          | not FF.. | **valid** record                               |
//! | valid  | ok          | FF FF..  | not committed (cut before commit, or verify failed): ignored |
//! | valid  | bad         | FF FF..  | torn write: ignored                            |
//! | valid  | bad         | not FF.. | **corrupt** (bit rot after commit)             |
//! | bad    | —           | —        | torn header if the rest of the page is erased, else **corrupt**; the rest of the page is unusable |
//!
//! Erasing a page only turns bits to 1, so no erase, however torn, can commit a record.

/// Record alignment: every field starts at a multiple of this.
pub(crate) const ALIGN: usize = 4;
/// Header bytes.
pub(crate) const HEADER: usize = 16;
/// Commit word bytes.
pub(crate) const COMMIT: usize = 4;
/// Value written to the commit word.
pub(crate) const COMMIT_WORD: [u8; COMMIT] = [0; COMMIT];

/// CRC-32C (Castagnoli), computed bit by bit (`NoTable`): the same checksums as the
/// table-driven default (the on-flash format is unchanged) without its 1 KiB table in
/// flash. The store checks a record when it mounts, reads or writes it, and the reply
/// cache fingerprints a sealed request; both are rare next to the cost of the flash
/// write or the decryption around them.
pub(crate) const CRC: crc::Crc<u32, crc::NoTable> =
    crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISCSI);

/// A decoded, checked header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) magic: u16,
    pub(crate) len: u16,
    pub(crate) seq: u32,
    pub(crate) payload_crc: u32,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER] {
        let mut out = [0xFF; HEADER];
        let [m0, m1] = self.magic.to_le_bytes();
        let [l0, l1] = self.len.to_le_bytes();
        let [s0, s1, s2, s3] = self.seq.to_le_bytes();
        let [c0, c1, c2, c3] = self.payload_crc.to_le_bytes();
        let body = [m0, m1, l0, l1, s0, s1, s2, s3, c0, c1, c2, c3];
        let [h0, h1, h2, h3] = CRC.checksum(&body).to_le_bytes();
        for (o, b) in out
            .iter_mut()
            .zip(body.iter().chain([h0, h1, h2, h3].iter()))
        {
            *o = *b;
        }
        out
    }

    /// The header in `raw`, if its CRC holds and it carries `magic`.
    pub(crate) fn decode(raw: &[u8; HEADER], magic: u16) -> Option<Header> {
        let [m0, m1, l0, l1, s0, s1, s2, s3, c0, c1, c2, c3, h0, h1, h2, h3] = *raw;
        let body = [m0, m1, l0, l1, s0, s1, s2, s3, c0, c1, c2, c3];
        if CRC.checksum(&body) != u32::from_le_bytes([h0, h1, h2, h3]) {
            return None;
        }
        let header = Header {
            magic: u16::from_le_bytes([m0, m1]),
            len: u16::from_le_bytes([l0, l1]),
            seq: u32::from_le_bytes([s0, s1, s2, s3]),
            payload_crc: u32::from_le_bytes([c0, c1, c2, c3]),
        };
        (header.magic == magic).then_some(header)
    }
}

/// `n` rounded up to [`ALIGN`].
pub(crate) const fn padded(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Bytes a record with a `len`-byte payload takes in flash.
pub(crate) const fn record_len(len: usize) -> usize {
    HEADER + padded(len) + COMMIT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = Header {
            magic: 0x5431,
            len: 300,
            seq: 77,
            payload_crc: 0xDEAD_BEEF,
        };
        let raw = h.encode();
        assert_eq!(&raw[..4], &[0x31, 0x54, 0x2C, 0x01]);
        assert_eq!(Header::decode(&raw, 0x5431), Some(h));
        assert_eq!(Header::decode(&raw, 0x5432), None);
        for byte in 0..HEADER {
            for bit in 0..8 {
                let mut bad = raw;
                bad[byte] ^= 1 << bit;
                assert_eq!(Header::decode(&bad, 0x5431), None, "byte {byte} bit {bit}");
            }
        }
        assert_eq!(Header::decode(&[0xFF; HEADER], 0x5431), None);
    }

    /// The on-flash format: the header CRC of a fixed header, byte-exact, and the
    /// table-less CRC equal to the table-driven CRC-32C the store was written with.
    #[test]
    fn crc_is_the_castagnoli_crc_of_the_format() {
        assert_eq!(CRC.checksum(b"123456789"), 0xE306_9283);
        let table = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        let bytes: [u8; 300] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        for len in 0..bytes.len() {
            assert_eq!(CRC.checksum(&bytes[..len]), table.checksum(&bytes[..len]));
        }
        let raw = Header {
            magic: 0x5431,
            len: 300,
            seq: 77,
            payload_crc: 0xDEAD_BEEF,
        }
        .encode();
        assert_eq!(&raw[12..], &table.checksum(&raw[..12]).to_le_bytes());
    }

    #[test]
    fn record_lengths() {
        assert_eq!(record_len(0), 20);
        assert_eq!(record_len(1), 24);
        assert_eq!(record_len(4), 24);
        assert_eq!(record_len(5), 28);
    }
}
