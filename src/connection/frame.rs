//! The one framing of [`Connection`](super::Connection) and the manager's
//! channel: CPython's `multiprocessing.connection` header, and how much a
//! receiver may allocate on a header's word.
//!
//! A header is a 4-byte big-endian signed length, or, for a body longer
//! than `i32::MAX` bytes, `-1` (`ff ff ff ff`) and an 8-byte big-endian
//! length. Any other negative length is malformed.
//!
//! A header is only a claim: a receiver grows its buffer as the body's
//! bytes arrive ([`grow`]), never to the announced size at once, so a
//! 12-byte lie costs it at most [`FIRST_READ`] bytes.
//!
//! Two readers use this framing. [`Connection`](super::Connection) reads
//! exactly one message per call, header then body, and never a byte more:
//! its descriptor may be shared by several processes (inherited over a
//! fork), and a byte read ahead would be lost to the others. The manager's
//! channel belongs to one thread and reads ahead into a buffer, finding
//! each frame in it with [`locate`] (header, the limit, completeness); it
//! is the read loop of every manager socket, client and server.

use crate::error::{Error, Result};

/// The short header's size.
pub(crate) const SHORT: usize = 4;
/// The long header's size (`-1`, then a 64-bit length).
pub(crate) const LONG: usize = 12;
/// The most a receiver commits for a body before any of it arrived; then
/// the buffer doubles as it fills.
pub(crate) const FIRST_READ: usize = 64 << 10;

/// Writes the header for a body of `len` bytes into `out`; returns its
/// size (the short form whenever the length fits it, as CPython does).
pub(crate) fn encode_header(len: u64, out: &mut [u8; LONG]) -> usize {
    if len > i32::MAX as u64 {
        out[..SHORT].copy_from_slice(&(-1i32).to_be_bytes());
        out[SHORT..].copy_from_slice(&len.to_be_bytes());
        LONG
    } else {
        out[..SHORT].copy_from_slice(&(len as i32).to_be_bytes());
        SHORT
    }
}

/// Decodes the header at the start of `buf`: `Ok(Some((header, body)))`
/// once the whole header is there (its size and the body's announced
/// length), `Ok(None)` if more bytes are needed, an error for a negative
/// length other than `-1`.
pub(crate) fn decode_header(buf: &[u8]) -> Result<Option<(usize, u64)>> {
    let Some(h) = buf.get(..SHORT) else {
        return Ok(None);
    };
    let short = i32::from_be_bytes(h.try_into().expect("4 bytes"));
    match short {
        0.. => Ok(Some((SHORT, short as u64))),
        -1 => Ok(buf
            .get(SHORT..LONG)
            .map(|l| (LONG, u64::from_be_bytes(l.try_into().expect("8 bytes"))))),
        _ => Err(Error::Codec(format!("bad message length {short}"))),
    }
}

/// For a reader that reads ahead into a buffer (the manager's channel):
/// where the next frame in `buf` stands: `Ok(Some((header, len)))` if a
/// whole frame of `len` body bytes is there (the body starts at `header`),
/// `Ok(None)` if more bytes are needed, an error for a malformed or
/// oversized length (the connection cannot go on: nothing is allocated for
/// it).
#[cfg_attr(not(feature = "manager"), allow(dead_code))]
pub(crate) fn locate(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>> {
    let Some((header, len)) = decode_header(buf)? else {
        return Ok(None);
    };
    if len > max as u64 {
        return Err(Error::MessageTooLarge {
            size: len,
            max: max as u64,
        });
    }
    let len = len as usize;
    Ok((buf.len() - header >= len).then_some((header, len)))
}

/// The size to grow a buffer holding `have` bytes of a message of `need`
/// bytes to, once it is full: doubling from [`FIRST_READ`], never past
/// `need`. What is committed is thus at most about twice what arrived.
pub(crate) fn grow(have: usize, need: u64) -> usize {
    let next = have.saturating_mul(2).max(FIRST_READ);
    next.min(usize::try_from(need).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn python_headers() {
        let mut h = [0u8; LONG];
        assert_eq!(encode_header(2, &mut h), SHORT);
        assert_eq!(&h[..4], b"\0\0\0\x02");
        assert_eq!(decode_header(&h[..4]).unwrap(), Some((SHORT, 2)));
        assert_eq!(encode_header(1 << 31, &mut h), LONG);
        assert_eq!(h, *b"\xff\xff\xff\xff\0\0\0\0\x80\0\0\0");
        assert_eq!(decode_header(&h).unwrap(), Some((LONG, 1 << 31)));
        assert_eq!(decode_header(&h[..11]).unwrap(), None);
        assert_eq!(decode_header(&h[..3]).unwrap(), None);
        assert!(decode_header(&(-2i32).to_be_bytes()).is_err());
    }

    #[test]
    fn growth_follows_arrivals() {
        let claimed = 0xF000_0000u64;
        assert_eq!(grow(0, claimed), FIRST_READ);
        assert_eq!(grow(FIRST_READ, claimed), 2 * FIRST_READ);
        assert_eq!(grow(0, 10), 10);
        assert_eq!(grow(1 << 20, (1 << 20) + 1), (1 << 20) + 1);
    }

    // A bounded fuzz run (well under a second): any bytes decode without a
    // panic, to a header no longer than the bytes given, and encoding then
    // decoding gives the length back.
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_bytes_decode_safely(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(Some((h, _))) = decode_header(&bytes) {
                prop_assert!(h <= bytes.len());
                prop_assert!(h == SHORT || h == LONG);
            }
        }

        #[test]
        fn lengths_round_trip(len in any::<u64>(), have in 0usize..1 << 40) {
            let mut h = [0u8; LONG];
            let n = encode_header(len, &mut h);
            prop_assert_eq!(decode_header(&h[..n]).unwrap(), Some((n, len)));
            let g = grow(have, len);
            prop_assert!(g as u64 <= len);
            prop_assert!(g <= have.saturating_mul(2).max(FIRST_READ));
        }
    }
}
