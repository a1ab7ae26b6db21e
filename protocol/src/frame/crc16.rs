//! The frame CRC (CRC-16/IBM-3740: polynomial 0x1021, init 0xFFFF, not reflected, no
//! final XOR; the same checksums as [`super::CRC16`]) computed four bytes at a time with
//! shifts and XORs, without a table.
//!
//! Why not the table: a byte-at-a-time table lookup is one dependent load per byte, and
//! the frame codec runs it twice per frame (encode, decode), which made it the largest
//! cost of a small frame. A 16-table slice-by-16 would be faster still but adds 8 KB of
//! flash to the size-critical firmware; this needs no table at all (the 512-byte one
//! goes away) and handles a 32-bit word in about a dozen shift-XORs (a Cortex-M4 folds
//! each shift into its XOR).
//!
//! The algebra, over GF(2) with P = x^16 + x^12 + x^5 + 1: feeding 32 message bits `d`
//! (first byte most significant) into the register `crc` gives `(v · x^16) mod P`, where
//! `v = crc · x^16 + d`. Write `v · x^16 = q · P + r`. Then `r` is the new register, and
//! because `v · x^16` has no terms below x^16, `r = (q · P) mod x^16 = q ^ q << 5 ^ q << 12`
//! (low 16 bits). The quotient is `q = ⌊v · x^16 / P⌋`, and the series of `x^16 / P` in
//! x^-1 has, down to x^-31 (lower terms cannot reach `v`'s 32 bits), the terms x^-k for
//! k in {0, 4, 8, 11, 12, 19, 20, 22, 26, 27, 28}: `q` is the XOR of `v >> k`. With 8 bits
//! the same reasoning keeps k in {0, 4}: the classic table-less CCITT byte update.

/// The CRC of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut words = data.chunks_exact(4);
    let mut crc = 0xFFFF;
    for word in &mut words {
        if let [a, b, c, d] = *word {
            crc = update_word(crc, u32::from_be_bytes([a, b, c, d]));
        }
    }
    words
        .remainder()
        .iter()
        .fold(crc, |crc, &byte| update_byte(crc, byte))
}

/// Feeds four bytes (`d`, big-endian) into the register.
#[inline(always)]
fn update_word(crc: u16, d: u32) -> u16 {
    let v = (u32::from(crc) << 16) ^ d;
    let q = v
        ^ (v >> 4)
        ^ (v >> 8)
        ^ (v >> 11)
        ^ (v >> 12)
        ^ (v >> 19)
        ^ (v >> 20)
        ^ (v >> 22)
        ^ (v >> 26)
        ^ (v >> 27)
        ^ (v >> 28);
    // Truncation keeps the low 16 bits: `(q · P) mod x^16`.
    (q ^ (q << 5) ^ (q << 12)) as u16
}

/// Feeds one byte into the register.
#[inline(always)]
fn update_byte(crc: u16, byte: u8) -> u16 {
    let v = u32::from((crc >> 8) as u8 ^ byte);
    let q = v ^ (v >> 4);
    ((u32::from(crc) << 8) ^ q ^ (q << 5) ^ (q << 12)) as u16
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::frame::CRC16;

    /// The register fed `bits` message bits (most significant first) one at a time: the
    /// definition of a non-reflected CRC.
    fn bitwise(mut crc: u16, data: u32, bits: u32) -> u16 {
        for i in (0..bits).rev() {
            let feedback = ((crc >> 15) as u32 ^ (data >> i)) & 1;
            crc <<= 1;
            if feedback == 1 {
                crc ^= 0x1021;
            }
        }
        crc
    }

    /// Both steps are linear in (register, data) jointly, as is the definition, so
    /// agreeing on every single-bit input proves them equal on every input.
    #[test]
    fn each_step_equals_the_bitwise_definition_on_a_basis() {
        for bit in 0..16 {
            let crc = 1u16 << bit;
            assert_eq!(
                update_word(crc, 0),
                bitwise(crc, 0, 32),
                "register bit {bit}"
            );
            assert_eq!(
                update_byte(crc, 0),
                bitwise(crc, 0, 8),
                "register bit {bit}"
            );
        }
        for bit in 0..32 {
            let d = 1u32 << bit;
            assert_eq!(update_word(0, d), bitwise(0, d, 32), "data bit {bit}");
        }
        for bit in 0..8 {
            let b = 1u8 << bit;
            assert_eq!(
                update_byte(0, b),
                bitwise(0, u32::from(b), 8),
                "data bit {bit}"
            );
        }
        assert_eq!(update_word(0, 0), 0);
        assert_eq!(update_byte(0, 0), 0);
    }

    #[test]
    fn checksums_are_the_crc_crates_for_every_length() {
        assert_eq!(checksum(b"123456789"), 0x29B1); // the catalogue's check value
        assert_eq!(checksum(&[]), 0xFFFF);
        let mut state = 0x2545_F491u32;
        let data: Vec<u8> = (0..1100)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            })
            .collect();
        for len in 0..=data.len() {
            let slice = data.get(..len).unwrap_or_default();
            assert_eq!(checksum(slice), CRC16.checksum(slice), "{len} bytes");
        }
        for fill in [0x00, 0xFF] {
            let same = [fill; 37];
            assert_eq!(checksum(&same), CRC16.checksum(&same));
        }
    }
}
