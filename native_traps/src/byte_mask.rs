//! Which bytes of a 64-byte block belong to a class, as a 64-bit mask
//! (bit `j` for byte `j`).
//!
//! On x86-64 this uses SSE2, which is part of the base instruction set (no
//! check at run time): per 16 bytes and byte range, subtract the range's
//! first byte, compare the unsigned minimum with the range's span for
//! equality, and gather the sign bits; a class of all bytes below some
//! ASCII byte or from `0x80` up takes one signed comparison. That is a few
//! instructions per 16 bytes, against several per byte for the loop the
//! compiler makes of the scalar definition. With [`crate::keyword_teddy`],
//! this module holds the crate's only `unsafe` code: SSE2 intrinsics, and
//! unaligned 16-byte loads that lie inside the array they read.
#![allow(unsafe_code)]

/// Bytes `16 * q .. 16 * q + 16` of `block` (`q` below 4) as a vector.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn load(block: &[u8; 64], q: usize) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128};
    assert!(q < 4);
    // SAFETY: SSE2 is enabled for this build (the cfg above); the 16 bytes
    // read lie inside the 64-byte array, and `_mm_loadu_si128` needs no
    // alignment (hence the cast to a more aligned pointer type is fine).
    #[allow(clippy::cast_ptr_alignment)]
    unsafe {
        _mm_loadu_si128(block.as_ptr().add(16 * q).cast::<__m128i>())
    }
}

/// The sign bits of four 16-byte vectors (bytes `16 * q ..` of a block in
/// `flags[q]`) as one 64-bit mask.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn gather(flags: [std::arch::x86_64::__m128i; 4]) -> u64 {
    use std::arch::x86_64::_mm_movemask_epi8;
    flags.iter().enumerate().fold(0u64, |mask, (q, &flag)| {
        // SAFETY: SSE2 is enabled for this build (the cfg above).
        let bits = unsafe { _mm_movemask_epi8(flag) };
        // Lossless: `_mm_movemask_epi8` sets only the low 16 bits.
        #[allow(clippy::cast_sign_loss)]
        let bits = bits as u32;
        mask | (u64::from(bits) << (16 * q))
    })
}

/// Bit `j` of the result is set when `block[j]` is below `bound` (itself
/// below `0x80`) or from `0x80` up, and is none of `except`: a signed
/// comparison and one test for equality per excepted byte, per 16 bytes
/// with SSE2.
#[inline]
pub fn below_or_high_except(block: &[u8; 64], bound: u8, except: &[u8]) -> u64 {
    debug_assert!(bound < 0x80);
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::{
            _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_or_si128, _mm_set1_epi8,
            _mm_setzero_si128,
        };
        // SAFETY: SSE2 is enabled for this build (the cfg above), so its
        // intrinsics may run.
        unsafe {
            // Bit-for-bit reinterpretations. As signed bytes, 0x80 and up
            // are negative, so below the bound too.
            #[allow(clippy::cast_possible_wrap)]
            let bound = _mm_set1_epi8(bound as i8);
            gather(std::array::from_fn(|q| {
                let v = load(block, q);
                let excepted = except.iter().fold(_mm_setzero_si128(), |acc, &b| {
                    #[allow(clippy::cast_possible_wrap)]
                    let b = _mm_set1_epi8(b as i8);
                    _mm_or_si128(acc, _mm_cmpeq_epi8(v, b))
                });
                _mm_andnot_si128(excepted, _mm_cmplt_epi8(v, bound))
            }))
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        block.iter().enumerate().fold(0, |mask, (j, &b)| {
            mask | (u64::from((b < bound || b >= 0x80) && !except.contains(&b)) << j)
        })
    }
}

/// Bit `j` of the result is set when `block[j]` lies in one of `ranges`
/// (each `(first, last)`, inclusive).
#[inline]
pub fn in_ranges(block: &[u8; 64], ranges: &[(u8, u8)]) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2_ranges(block, ranges)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        ranges.iter().fold(0, |mask, &(first, last)| {
            mask | portable(block, first, last)
        })
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn sse2_ranges(block: &[u8; 64], ranges: &[(u8, u8)]) -> u64 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_or_si128, _mm_set1_epi8, _mm_setzero_si128, _mm_sub_epi8,
    };
    // SAFETY: SSE2 is enabled for this build (the cfg above), so its
    // intrinsics may run.
    unsafe {
        let bytes: [_; 4] = std::array::from_fn(|q| load(block, q));
        let mut inside = [_mm_setzero_si128(); 4];
        for &(first, last) in ranges {
            if first > last {
                continue;
            }
            // Bit-for-bit reinterpretations of the bytes.
            #[allow(clippy::cast_possible_wrap)]
            let (low, span) = (
                _mm_set1_epi8(first as i8),
                _mm_set1_epi8((last - first) as i8),
            );
            for (acc, &v) in inside.iter_mut().zip(&bytes) {
                let offset = _mm_sub_epi8(v, low);
                *acc = _mm_or_si128(*acc, _mm_cmpeq_epi8(_mm_min_epu8(offset, span), offset));
            }
        }
        gather(inside)
    }
}

/// The scalar definition, used where SSE2 is not available and in tests.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn portable(block: &[u8; 64], first: u8, last: u8) -> u64 {
    block.iter().enumerate().fold(0, |mask, (j, &b)| {
        mask | (u64::from(first <= b && b <= last) << j)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_scalar_definition() {
        // Every byte value in every position, and ranges at the edges of
        // the signed and unsigned orders.
        let mut block = [0u8; 64];
        for start in (0..256).step_by(64) {
            for (j, b) in block.iter_mut().enumerate() {
                *b = u8::try_from((start + j * 5) % 256).expect("a byte");
            }
            for (first, last) in [
                (b'0', b'9'),
                (b':', b':'),
                (0, 0x7f),
                (0x7f, 0x80),
                (0x80, 0xff),
                (0, 0xff),
                (9, 3),
            ] {
                assert_eq!(
                    in_ranges(&block, &[(first, last)]),
                    portable(&block, first, last),
                    "{first} {last}"
                );
            }
        }
        let ranges = [(b'0', b'9'), (0x80, 0xff), (b'a', b'a'), (7, 3)];
        for start in 0..256 {
            for (j, b) in block.iter_mut().enumerate() {
                *b = u8::try_from((start + j * 3) % 256).expect("a byte");
            }
            let expected = ranges.iter().fold(0, |mask, &(first, last)| {
                mask | portable(&block, first, last)
            });
            assert_eq!(in_ranges(&block, &ranges), expected);
        }
        assert_eq!(in_ranges(&block, &[]), 0);
        for bound in [0, 1, b'0', 0x7f] {
            for start in 0..256 {
                for (j, b) in block.iter_mut().enumerate() {
                    *b = u8::try_from((start + j * 7) % 256).expect("a byte");
                }
                for except in [&b""[..], b"\"", b"\",\x90"] {
                    let expected = block.iter().enumerate().fold(0, |mask, (j, &b)| {
                        let kept = (b < bound || b >= 0x80) && !except.contains(&b);
                        mask | (u64::from(kept) << j)
                    });
                    assert_eq!(
                        below_or_high_except(&block, bound, except),
                        expected,
                        "bound {bound}"
                    );
                }
            }
        }
        assert_eq!(in_ranges(&[b'7'; 64], &[(b'0', b'9')]), u64::MAX);
        assert_eq!(in_ranges(&[b'a'; 64], &[(b'0', b'9')]), 0);
    }
}
