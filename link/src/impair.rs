//! The impairments of one direction of the link, sans-IO: bytes in at a time, a schedule
//! of bytes out.
//!
//! [`Impairments::apply`] takes the bytes one side sent at `now` and returns when which
//! bytes arrive at the other side. Each byte goes through, in this order:
//!
//! 1. **frame drop** — when a frame starts (its first non-zero byte after a `0x00`
//!    delimiter), the whole frame, delimiter included, is lost with probability
//!    `frame_drop`; empty frames (lone delimiters) are never dropped;
//! 2. **byte drop** — the byte is lost with probability `drop`;
//! 3. **noise** — with probability `noise` a burst of 1 ..= `noise_max` random bytes
//!    (any value, `0x00` included) arrives before it;
//! 4. **duplication** — the byte arrives twice with probability `dup`;
//! 5. **bit errors** — every bit that arrives (noise included) is flipped with
//!    probability `ber`;
//! 6. **pace and latency** — the sender's line carries `baud / 10` bytes per second (8N1:
//!    ten bit times a byte), one byte after the other; each byte arrives `latency` after
//!    its last bit was sent, plus, for all the bytes of one write, a delay drawn from
//!    `0 ..= jitter` (never overtaking earlier bytes: the link delivers in order). Without
//!    a baud rate, bytes take no time on the line.
//!
//! Everything random comes from one [`Rng`] seeded by the caller, so a seed and the same
//! input (at the same times) give the same output, byte for byte.

use std::fmt;

use crate::rng::Rng;

/// Nanoseconds, the link's time unit (from any origin the caller chooses).
pub type Nanos = u64;

/// What one direction of the link does to the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Line rate in bit/s (8N1), or `None` for an infinitely fast line.
    pub baud: Option<u32>,
    /// Delay from the end of a byte on the line to its arrival.
    pub latency: Nanos,
    /// Extra delay of one write's bytes, uniform in `0 ..= jitter`.
    pub jitter: Nanos,
    /// Probability that a byte is lost.
    pub drop: f64,
    /// Probability that a (non-empty) frame is lost whole.
    pub frame_drop: f64,
    /// Bit error rate: probability that a bit is flipped.
    pub ber: f64,
    /// Probability that a byte arrives twice.
    pub dup: f64,
    /// Probability that a burst of noise arrives before a byte.
    pub noise: f64,
    /// Longest noise burst, bytes (at least 1).
    pub noise_max: u8,
}

impl Impairment {
    /// A perfect, infinitely fast link.
    pub const CLEAN: Impairment = Impairment {
        baud: None,
        latency: 0,
        jitter: 0,
        drop: 0.0,
        frame_drop: 0.0,
        ber: 0.0,
        dup: 0.0,
        noise: 0.0,
        noise_max: 8,
    };
}

impl Default for Impairment {
    fn default() -> Self {
        Self::CLEAN
    }
}

/// What happened to the bytes, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Bytes the sender sent.
    pub bytes_in: u64,
    /// Bytes that arrived (noise and duplicates included).
    pub bytes_out: u64,
    /// Non-empty frames the sender completed (counted at their delimiter).
    pub frames_in: u64,
    /// Frames lost whole.
    pub frames_dropped: u64,
    /// Single bytes lost.
    pub bytes_dropped: u64,
    /// Bits flipped.
    pub bits_flipped: u64,
    /// Bytes that arrived twice.
    pub bytes_duplicated: u64,
    /// Noise bursts.
    pub noise_bursts: u64,
    /// Noise bytes.
    pub noise_bytes: u64,
}

impl Stats {
    /// The sum of two counts (both directions of a link).
    pub fn plus(&self, o: &Stats) -> Stats {
        Stats {
            bytes_in: self.bytes_in + o.bytes_in,
            bytes_out: self.bytes_out + o.bytes_out,
            frames_in: self.frames_in + o.frames_in,
            frames_dropped: self.frames_dropped + o.frames_dropped,
            bytes_dropped: self.bytes_dropped + o.bytes_dropped,
            bits_flipped: self.bits_flipped + o.bits_flipped,
            bytes_duplicated: self.bytes_duplicated + o.bytes_duplicated,
            noise_bursts: self.noise_bursts + o.noise_bursts,
            noise_bytes: self.noise_bytes + o.noise_bytes,
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes in, {} out; {} frames, {} dropped; {} bytes dropped, {} duplicated; \
             {} bits flipped; {} noise bursts ({} bytes)",
            self.bytes_in,
            self.bytes_out,
            self.frames_in,
            self.frames_dropped,
            self.bytes_dropped,
            self.bytes_duplicated,
            self.bits_flipped,
            self.noise_bursts,
            self.noise_bytes
        )
    }
}

/// One thing the link did, for `-v` logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// When the affected bytes were sent.
    pub at: Nanos,
    /// Offset of the affected byte in the sender's stream.
    pub offset: u64,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A frame starting at `offset` was lost; `len` counts its bytes and delimiter.
    FrameDropped {
        /// Bytes lost.
        len: u64,
    },
    /// A byte was lost.
    ByteDropped {
        /// Its value.
        byte: u8,
    },
    /// Bits of a byte were flipped.
    BitsFlipped {
        /// Sent.
        from: u8,
        /// Arrived.
        to: u8,
    },
    /// A byte arrived twice.
    Duplicated {
        /// Its value.
        byte: u8,
    },
    /// A burst of noise arrived before the byte.
    Noise {
        /// Burst length.
        len: u8,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>12.6} s  byte {:>8}  ",
            self.at as f64 / 1e9,
            self.offset
        )?;
        match self.kind {
            EventKind::FrameDropped { len } => write!(f, "frame dropped ({len} bytes)"),
            EventKind::ByteDropped { byte } => write!(f, "byte dropped ({byte:02x})"),
            EventKind::BitsFlipped { from, to } => {
                write!(f, "bit error {from:02x} -> {to:02x}")
            }
            EventKind::Duplicated { byte } => write!(f, "byte duplicated ({byte:02x})"),
            EventKind::Noise { len } => write!(f, "noise burst ({len} bytes)"),
        }
    }
}

/// Bytes arriving at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Arrival time.
    pub at: Nanos,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Largest time span (and size) of one [`Delivery`] on a paced line: bytes arriving
/// within a millisecond of each other are handed over together, as a UART driver would.
const CHUNK_SPAN: Nanos = 1_000_000;
const CHUNK_MAX: usize = 256;

/// The state of one direction of the link.
#[derive(Debug, Clone)]
pub struct Impairments {
    cfg: Impairment,
    rng: Rng,
    /// Probability that a byte has at least one bit error.
    byte_error: f64,
    /// Inside a frame (a non-zero byte seen since the last delimiter).
    in_frame: bool,
    /// The current frame is being dropped: (its first offset, bytes so far).
    dropping: Option<(u64, u64)>,
    offset: u64,
    line_free: Nanos,
    /// Arrival time of the last byte delivered (arrivals never go back).
    last_arrival: Nanos,
    stats: Stats,
    record: bool,
    events: Vec<Event>,
}

impl Impairments {
    /// A direction with `cfg`, its randomness from `seed`.
    pub fn new(cfg: Impairment, seed: u64) -> Self {
        let ber = cfg.ber.clamp(0.0, 1.0);
        Self {
            cfg,
            rng: Rng::new(seed),
            byte_error: 1.0 - (1.0 - ber).powi(8),
            in_frame: false,
            dropping: None,
            offset: 0,
            line_free: 0,
            last_arrival: 0,
            stats: Stats::default(),
            record: false,
            events: Vec::new(),
        }
    }

    /// Keeps an [`Event`] for everything done (see [`Impairments::take_events`]).
    pub fn record_events(&mut self, on: bool) {
        self.record = on;
    }

    /// The events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// `input` sent at `now`: what arrives when, in time order, every delivery at or
    /// after `now`.
    pub fn apply(&mut self, now: Nanos, input: &[u8]) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut arriving = Vec::with_capacity(input.len());
        for &byte in input {
            let offset = self.offset;
            self.offset += 1;
            self.stats.bytes_in += 1;
            if self.frame_dropped(now, offset, byte) {
                continue;
            }
            if self.rng.chance(self.cfg.drop) {
                self.stats.bytes_dropped += 1;
                self.event(now, offset, EventKind::ByteDropped { byte });
                continue;
            }
            if self.rng.chance(self.cfg.noise) {
                let len = 1 + self.rng.below(u64::from(self.cfg.noise_max.max(1))) as u8;
                self.stats.noise_bursts += 1;
                self.stats.noise_bytes += u64::from(len);
                self.event(now, offset, EventKind::Noise { len });
                for _ in 0..len {
                    let noise = self.rng.next_u64() as u8;
                    arriving.push(self.bit_errors(now, offset, noise, false));
                }
            }
            let copies = if self.rng.chance(self.cfg.dup) {
                self.stats.bytes_duplicated += 1;
                self.event(now, offset, EventKind::Duplicated { byte });
                2
            } else {
                1
            };
            for _ in 0..copies {
                arriving.push(self.bit_errors(now, offset, byte, true));
            }
        }
        self.stats.bytes_out += arriving.len() as u64;
        self.schedule(now, arriving, &mut out);
        out
    }

    /// Frame-drop bookkeeping for one byte; `true` if the byte is lost with its frame.
    fn frame_dropped(&mut self, now: Nanos, offset: u64, byte: u8) -> bool {
        if byte == 0 {
            if self.in_frame {
                self.stats.frames_in += 1;
            }
            self.in_frame = false;
            return match self.dropping.take() {
                Some((start, len)) => {
                    self.event(now, start, EventKind::FrameDropped { len: len + 1 });
                    true
                }
                None => false,
            };
        }
        if !self.in_frame {
            self.in_frame = true;
            if self.rng.chance(self.cfg.frame_drop) {
                self.stats.frames_dropped += 1;
                self.dropping = Some((offset, 0));
            }
        }
        match &mut self.dropping {
            Some((_, len)) => {
                *len += 1;
                true
            }
            None => false,
        }
    }

    fn bit_errors(&mut self, now: Nanos, offset: u64, byte: u8, log: bool) -> u8 {
        if !self.rng.chance(self.byte_error) {
            return byte;
        }
        // At least one bit is wrong: pick it, then each other bit independently.
        let first = self.rng.below(8) as u8;
        let mut mask = 1u8 << first;
        for bit in 0..8u8 {
            if bit != first && self.rng.chance(self.cfg.ber) {
                mask |= 1 << bit;
            }
        }
        self.stats.bits_flipped += u64::from(mask.count_ones());
        let to = byte ^ mask;
        if log {
            self.event(now, offset, EventKind::BitsFlipped { from: byte, to });
        }
        to
    }

    /// Paces `bytes` onto the line from `now` and groups their arrivals.
    fn schedule(&mut self, now: Nanos, bytes: Vec<u8>, out: &mut Vec<Delivery>) {
        if bytes.is_empty() {
            return;
        }
        let delay = self.cfg.latency
            + match self.cfg.jitter {
                0 => 0,
                j => self.rng.below(j.saturating_add(1)),
            };
        let Some(baud) = self.cfg.baud.filter(|b| *b > 0) else {
            let at = (now + delay).max(self.last_arrival);
            self.last_arrival = at;
            out.push(Delivery { at, bytes });
            return;
        };
        let byte_time = 10_000_000_000 / u64::from(baud);
        let mut start = self.line_free.max(now);
        // Arrival of the first byte of the delivery being filled: a delivery spans at most
        // CHUNK_SPAN from its first byte to its last.
        let mut chunk_start: Option<Nanos> = None;
        for byte in bytes {
            let sent = start + byte_time;
            start = sent;
            let at = (sent + delay).max(self.last_arrival);
            self.last_arrival = at;
            match (out.last_mut(), chunk_start) {
                (Some(d), Some(first)) if at - first <= CHUNK_SPAN && d.bytes.len() < CHUNK_MAX => {
                    // Handed over when its last byte is in.
                    d.at = at;
                    d.bytes.push(byte);
                }
                _ => {
                    chunk_start = Some(at);
                    out.push(Delivery {
                        at,
                        bytes: vec![byte],
                    });
                }
            }
        }
        self.line_free = start;
    }

    fn event(&mut self, at: Nanos, offset: u64, kind: EventKind) {
        if self.record {
            self.events.push(Event { at, offset, kind });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Nanos = 1_000_000;

    fn all(deliveries: &[Delivery]) -> Vec<u8> {
        deliveries.iter().flat_map(|d| d.bytes.clone()).collect()
    }

    /// `n` frames of `len` non-zero bytes, each closed by a delimiter.
    fn frames(n: usize, len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            v.extend((0..len).map(|j| 1 + ((i + j) % 250) as u8));
            v.push(0);
        }
        v
    }

    #[test]
    fn a_clean_link_delivers_everything_at_once_after_the_latency() {
        let mut link = Impairments::new(
            Impairment {
                latency: 5 * MS,
                ..Impairment::CLEAN
            },
            1,
        );
        let input = frames(3, 10);
        let out = link.apply(7 * MS, &input);
        assert_eq!(
            out,
            vec![Delivery {
                at: 12 * MS,
                bytes: input.clone()
            }]
        );
        assert_eq!(link.stats().frames_in, 3);
        assert_eq!(link.stats().bytes_out, input.len() as u64);
    }

    #[test]
    fn the_line_paces_bytes_at_a_tenth_of_the_baud_rate() {
        // 9600 baud: 960 bytes/s, 1.041 666 ms a byte.
        let mut link = Impairments::new(
            Impairment {
                baud: Some(9_600),
                latency: 2 * MS,
                ..Impairment::CLEAN
            },
            1,
        );
        let input = vec![0x55; 960];
        let out = link.apply(0, &input);
        assert_eq!(all(&out), input);
        let last = out.last().unwrap().at;
        // One second on the line plus the latency (to within one byte's rounding).
        assert!((1_002 * MS - 1_000..=1_002 * MS).contains(&last), "{last}");
        // Bytes arrive in order, never before they were sent, chunks at most 1 ms wide.
        assert!(out.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(out.iter().all(|d| d.bytes.len() <= 2));
        // At 115 200 baud (86.8 µs a byte) a delivery holds at most 12 bytes (1 ms).
        let mut fast = Impairments::new(
            Impairment {
                baud: Some(115_200),
                ..Impairment::CLEAN
            },
            1,
        );
        let burst = fast.apply(0, &[0x55; 600]);
        assert_eq!(all(&burst), vec![0x55; 600]);
        assert!(
            burst.iter().all(|d| d.bytes.len() <= 12),
            "a delivery wider than 1 ms"
        );
        // A second burst sent while the line is still busy queues behind the first.
        let more = link.apply(500 * MS, &[1, 2, 3]);
        assert!(more[0].at > last);
    }

    #[test]
    fn frame_drops_remove_whole_frames_and_keep_the_others_intact() {
        let mut link = Impairments::new(
            Impairment {
                frame_drop: 0.3,
                ..Impairment::CLEAN
            },
            42,
        );
        link.record_events(true);
        // 1 000 distinct frames with a lone delimiter before each (as the host sends).
        let mut input = Vec::new();
        for i in 0u32..1_000 {
            input.push(0);
            input.extend([0x80 | (i & 0x7f) as u8, 0x80 | (i >> 7) as u8, 0xAA, 0xBB]);
            input.push(0);
        }
        let out = all(&link.apply(0, &input));
        let got: Vec<&[u8]> = out.split(|&b| b == 0).filter(|c| !c.is_empty()).collect();
        let s = link.stats();
        assert_eq!(s.frames_in, 1_000);
        assert_eq!(got.len() as u64, 1_000 - s.frames_dropped);
        assert!((240..360).contains(&s.frames_dropped), "{s:?}");
        // Every surviving frame is one of the originals, in order, and whole.
        let mut last = None;
        for chunk in got {
            assert_eq!(chunk.len(), 4);
            let i = u32::from(chunk[0] & 0x7f) | u32::from(chunk[1] & 0x7f) << 7;
            assert!(last.is_none_or(|l| i > l));
            last = Some(i);
        }
        let events = link.take_events();
        assert_eq!(events.len() as u64, s.frames_dropped);
        assert!(events
            .iter()
            .all(|e| e.kind == EventKind::FrameDropped { len: 5 }));
    }

    #[test]
    fn bit_errors_come_at_the_given_rate() {
        let mut link = Impairments::new(
            Impairment {
                ber: 1e-3,
                ..Impairment::CLEAN
            },
            9,
        );
        let input = vec![0xA5u8; 1_000_000];
        let out = all(&link.apply(0, &input));
        assert_eq!(out.len(), input.len());
        let flipped: u64 = out.iter().map(|b| u64::from((b ^ 0xA5).count_ones())).sum();
        assert_eq!(flipped, link.stats().bits_flipped);
        // 8 000 expected; a 5-sigma band.
        assert!((7_550..8_450).contains(&flipped), "{flipped}");
    }

    #[test]
    fn drops_duplicates_and_noise_are_counted_and_logged() {
        let mut link = Impairments::new(
            Impairment {
                drop: 0.01,
                dup: 0.01,
                noise: 0.01,
                noise_max: 4,
                ..Impairment::CLEAN
            },
            3,
        );
        link.record_events(true);
        let input = vec![0x11u8; 100_000];
        let out = all(&link.apply(0, &input));
        let s = link.stats();
        assert!((800..1_200).contains(&s.bytes_dropped), "{s:?}");
        assert!((800..1_200).contains(&s.bytes_duplicated), "{s:?}");
        assert!((800..1_200).contains(&s.noise_bursts), "{s:?}");
        assert!(s.noise_bytes >= s.noise_bursts && s.noise_bytes <= 4 * s.noise_bursts);
        assert_eq!(
            out.len() as u64,
            100_000 - s.bytes_dropped + s.bytes_duplicated + s.noise_bytes
        );
        assert_eq!(s.bytes_out, out.len() as u64);
        let events = link.take_events();
        assert_eq!(
            events.len() as u64,
            s.bytes_dropped + s.bytes_duplicated + s.noise_bursts
        );
        assert!(events.windows(2).all(|w| w[0].offset <= w[1].offset));
        assert!(format!("{}", events[0]).contains("byte"));
    }

    #[test]
    fn a_seed_gives_the_same_output_every_time() {
        let cfg = Impairment {
            baud: Some(115_200),
            latency: MS,
            jitter: MS,
            drop: 0.01,
            frame_drop: 0.05,
            ber: 1e-3,
            dup: 0.01,
            noise: 0.01,
            noise_max: 8,
        };
        let input = frames(200, 40);
        let run = |seed| {
            let mut link = Impairments::new(cfg, seed);
            let mut out = Vec::new();
            for (i, chunk) in input.chunks(97).enumerate() {
                out.extend(link.apply(i as u64 * MS, chunk));
            }
            (out, link.stats())
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5).0, run(6).0);
    }

    #[test]
    fn jitter_delays_writes_but_never_reorders_them() {
        let mut link = Impairments::new(
            Impairment {
                latency: 10 * MS,
                jitter: 50 * MS,
                ..Impairment::CLEAN
            },
            4,
        );
        // Writes 100 ms apart: each one's delay is its own.
        let delays: Vec<Nanos> = (0..1_000u64)
            .map(|i| link.apply(i * 100 * MS, &[1, 2, 0])[0].at - i * 100 * MS)
            .collect();
        assert!(delays.iter().all(|&d| (10 * MS..=60 * MS).contains(&d)));
        assert!(delays.iter().any(|&d| d > 55 * MS) && delays.iter().any(|&d| d < 15 * MS));
        // Writes 1 ms apart: a delayed write holds back the ones after it.
        let mut last = 0;
        for i in 0..1_000u64 {
            let at = link.apply(100_000 * MS + i * MS, &[1, 2, 0])[0].at;
            assert!(at >= last, "write {i} overtook the one before");
            last = at;
        }
    }

    #[test]
    fn lone_delimiters_are_never_dropped_as_frames() {
        let mut link = Impairments::new(
            Impairment {
                frame_drop: 1.0,
                ..Impairment::CLEAN
            },
            1,
        );
        let out = all(&link.apply(0, &[0, 0, 1, 2, 0, 0]));
        assert_eq!(out, vec![0, 0, 0]);
        assert_eq!(link.stats().frames_dropped, 1);
    }
}
