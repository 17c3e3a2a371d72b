//! Which bytes of a 64-byte block belong to a class, as a 64-bit mask
//! (bit `j` for byte `j`), the masks of a whole body ([`masks`]), where
//! long runs of set bits start in such masks ([`run_starts`]), whether
//! two set bits lie close ([`close_pair`]), and a copy of a body with its
//! runs of ASCII white space squeezed to one space ([`squeeze_spaces`]).
//!
//! Where the CPU has AVX-512 BW (checked at run time), [`masks`] takes a
//! block in one register: one subtraction and one unsigned comparison per
//! byte range give the mask directly. Otherwise, and for single blocks,
//! x86-64 uses SSE2, which is part of the base instruction set (no check
//! at run time): per 16 bytes and byte range, subtract the range's
//! first byte, compare the unsigned minimum with the range's span for
//! equality, and gather the sign bits; a class of all bytes below some
//! ASCII byte or from `0x80` up takes one signed comparison. That is a few
//! instructions per 16 bytes, against several per byte for the loop the
//! compiler makes of the scalar definition. With [`crate::keyword_teddy`],
//! this module holds the crate's only `unsafe` code: SSE2 and AVX-512
//! intrinsics, unaligned loads that lie inside the slice they read,
//! masked loads of a block's tail that read only its bytes, and stores of
//! whole vectors into a vector's spare capacity that end inside it.
#![allow(unsafe_code)]

/// A class of bytes, for [`masks`].
#[derive(Debug, Clone, Copy)]
pub enum Class<'a> {
    /// The bytes in any of these ranges `(first, last)`, inclusive (as
    /// [`in_ranges`]).
    InRanges(&'a [(u8, u8)]),
    /// The bytes below the bound (itself below `0x80`) or from `0x80` up,
    /// except these (as [`below_or_high_except`]).
    BelowOrHighExcept(u8, &'a [u8]),
}

impl Class<'_> {
    /// The mask of one block.
    fn of_block(self, block: &[u8; 64]) -> u64 {
        match self {
            Self::InRanges(ranges) => in_ranges(block, ranges),
            Self::BelowOrHighExcept(bound, except) => below_or_high_except(block, bound, except),
        }
    }
}

/// Append to `out` the masks of `data`, one `u64` per 64 bytes (bit `j` of
/// the `w`-th word for byte `64 * w + j`), of the bytes in `class`. The last
/// block may be short: its mask has bits only for its bytes.
pub fn masks(data: &[u8], class: Class<'_>, out: &mut Vec<u64>) {
    out.reserve(data.len().div_ceil(64));
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has AVX-512 BW (checked just above).
        unsafe { masks_avx512(data, class, out) };
        return;
    }
    masks_by_block(data, class, out);
}

/// [`masks`] one block at a time, a short last block padded with zeros.
fn masks_by_block(data: &[u8], class: Class<'_>, out: &mut Vec<u64>) {
    let mut blocks = data.chunks_exact(64);
    out.extend((&mut blocks).map(|block| class.of_block(block.try_into().expect("64 bytes"))));
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut padded = [0u8; 64];
        padded[..tail.len()].copy_from_slice(tail);
        // The padding is not data, whatever the class.
        out.push(class.of_block(&padded) & ((1 << tail.len()) - 1));
    }
}

/// [`masks`] with AVX-512 BW: a block per register, a short last block by
/// a masked load (which reads only the bytes it keeps). The number of
/// ranges or excepted bytes is a constant of each loop, so their vectors
/// stay in registers and the loop has no branch per range.
///
/// # Safety
/// The CPU must support AVX-512 BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn masks_avx512(data: &[u8], class: Class<'_>, out: &mut Vec<u64>) {
    match class {
        Class::InRanges(ranges) => {
            // The non-empty ranges, at most four (more go block by block).
            let mut kept = [(0, 0); 4];
            let mut count = 0;
            for &(first, last) in ranges.iter().filter(|(first, last)| first <= last) {
                if count == kept.len() {
                    return masks_by_block(data, class, out);
                }
                kept[count] = (first, last);
                count += 1;
            }
            let ranges = &kept[..count];
            // SAFETY (all four): as for this function.
            match count {
                0 => out.resize(out.len() + data.len().div_ceil(64), 0),
                1 => unsafe { in_ranges_avx512::<1>(data, ranges, out) },
                2 => unsafe { in_ranges_avx512::<2>(data, ranges, out) },
                3 => unsafe { in_ranges_avx512::<3>(data, ranges, out) },
                _ => unsafe { in_ranges_avx512::<4>(data, ranges, out) },
            }
        }
        Class::BelowOrHighExcept(bound, except) => match except.len() {
            // SAFETY (all three): as for this function.
            0 => unsafe { below_except_avx512::<0>(data, bound, except, out) },
            1 => unsafe { below_except_avx512::<1>(data, bound, except, out) },
            2 => unsafe { below_except_avx512::<2>(data, bound, except, out) },
            _ => masks_by_block(data, class, out),
        },
    }
}

/// [`masks_avx512`] for `N` non-empty ranges: per range, one subtraction
/// and one unsigned comparison.
///
/// # Safety
/// The CPU must support AVX-512 BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn in_ranges_avx512<const N: usize>(data: &[u8], ranges: &[(u8, u8)], out: &mut Vec<u64>) {
    use std::arch::x86_64::{_mm512_cmple_epu8_mask, _mm512_sub_epi8};
    let vectors: [_; N] = std::array::from_fn(|i| {
        let (first, last) = ranges[i];
        (splat(first), splat(last - first))
    });
    for_each_block(data, out, |v| {
        vectors.iter().fold(0, |mask, &(low, span)| {
            mask | _mm512_cmple_epu8_mask(_mm512_sub_epi8(v, low), span)
        })
    });
}

/// [`masks_avx512`] for the bytes below `bound` or from `0x80` up, except
/// the `N` bytes of `except`.
///
/// # Safety
/// The CPU must support AVX-512 BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn below_except_avx512<const N: usize>(
    data: &[u8],
    bound: u8,
    except: &[u8],
    out: &mut Vec<u64>,
) {
    use std::arch::x86_64::{_mm512_cmpeq_epi8_mask, _mm512_cmplt_epi8_mask};
    let bound = splat(bound);
    let except: [_; N] = std::array::from_fn(|i| splat(except[i]));
    // As signed bytes, 0x80 and up are negative, so below the bound.
    for_each_block(data, out, |v| {
        except
            .iter()
            .fold(_mm512_cmplt_epi8_mask(v, bound), |mask, &b| {
                mask & !_mm512_cmpeq_epi8_mask(v, b)
            })
    });
}

/// A vector of 64 copies of `b`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn splat(b: u8) -> std::arch::x86_64::__m512i {
    // A bit-for-bit reinterpretation of the byte as the `i8` lanes take it.
    #[allow(clippy::cast_possible_wrap)]
    std::arch::x86_64::_mm512_set1_epi8(b as i8)
}

/// Write to the end of `out` what `mask_of` gives for each 64-byte block of
/// `data`, the last one short or not (its lanes past the data are zero, and
/// their bits cleared). The words are written in place, not pushed one by
/// one: a push reads and writes the vector's length in memory each time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
#[inline]
fn for_each_block(
    data: &[u8],
    out: &mut Vec<u64>,
    mask_of: impl Fn(std::arch::x86_64::__m512i) -> u64,
) {
    use std::arch::x86_64::{_mm512_loadu_si512, _mm512_maskz_loadu_epi8};
    let first = out.len();
    out.resize(first + data.len().div_ceil(64), 0);
    let slots = &mut out[first..];
    let mut blocks = data.chunks_exact(64);
    for (slot, block) in slots.iter_mut().zip(&mut blocks) {
        // SAFETY: 64 bytes inside `data`; no alignment needed.
        *slot = mask_of(unsafe { _mm512_loadu_si512(block.as_ptr().cast()) });
    }
    let tail = blocks.remainder();
    if let Some(slot) = slots.last_mut().filter(|_| !tail.is_empty()) {
        let live = (1u64 << tail.len()) - 1;
        // SAFETY: the masked load touches only the `tail.len()` bytes of
        // `live`, all inside `data`; the other lanes are zero.
        let v = unsafe { _mm512_maskz_loadu_epi8(live, tail.as_ptr().cast()) };
        *slot = mask_of(v) & live;
    }
}

/// The shifts that, applied in turn as `x &= x >> step` (or `|=`), combine
/// each bit with the `span` bits above it: each step doubles the width
/// covered, the last only as far as needed. At most six, each 1 to 32, for
/// a span below 64.
#[derive(Debug, Default, Clone, Copy)]
pub struct Steps {
    steps: [u32; 6],
    len: usize,
}

impl Steps {
    /// The steps for `span` (below 64).
    pub fn covering(span: usize) -> Self {
        assert!(span < 64, "a span below 64 bits");
        let mut steps = Self::default();
        let mut covered = 0;
        while covered < span {
            let step = (covered + 1).min(span - covered);
            // Lossless: at most 32.
            #[allow(clippy::cast_possible_truncation)]
            {
                steps.steps[steps.len] = step as u32;
            }
            steps.len += 1;
            covered += step;
        }
        steps
    }
}

impl std::ops::Deref for Steps {
    type Target = [u32];

    fn deref(&self) -> &[u32] {
        &self.steps[..self.len]
    }
}

/// Call `found(w, starts)`, in ascending `w`, for each word `w` below
/// `masks.len() - 1` whose `starts` are not all zero: bit `p` of `starts`
/// is set when bits `p ..= p + span` (`span` below 64) of the word and the
/// next, taken as one 128-bit number, are all set. With AVX-512 F, eight
/// words per step; in text most words have no start, so the scalar work is
/// only for the few that do.
pub fn run_starts(masks: &[u64], span: usize, mut found: impl FnMut(usize, u64)) {
    let steps = Steps::covering(span);
    let mut w = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512 F (checked just above).
        w = unsafe { run_starts_avx512(masks, &steps, &mut found) };
    }
    for (w, pair) in masks.windows(2).enumerate().skip(w) {
        let (mut low, mut high) = (pair[0], pair[1]);
        for &step in steps.iter() {
            // Both shifts are below 64 (`step` is 1 to 32).
            low &= (low >> step) | (high << (64 - step));
            high &= high >> step;
        }
        if low != 0 {
            found(w, low);
        }
    }
}

/// Whether two set bits of `masks` (taken as one long bit string) have
/// at most `gap` (below 63) unset bits between them. As [`run_starts`],
/// eight words per step with AVX-512 F.
pub fn close_pair(masks: &[u64], gap: usize) -> bool {
    // Bit `p` of `near`: a set bit at `p + 1 ..= p + gap + 1`, by ORs
    // that double the width covered each time.
    let steps = Steps::covering(gap);
    let mut w = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512 F (checked just above).
        match unsafe { close_pair_avx512(masks, &steps) } {
            Ok(()) => return true,
            Err(next) => w = next,
        }
    }
    masks.windows(2).skip(w).any(|pair| {
        let (mut low, mut high) = ((pair[0] >> 1) | (pair[1] << 63), pair[1] >> 1);
        for &step in steps.iter() {
            // Both shifts are below 64 (`step` is 1 to 32).
            low |= (low >> step) | (high << (64 - step));
            high |= high >> step;
        }
        pair[0] & low != 0
    }) || masks.last().is_some_and(|&last| {
        // The last word has no next one: zeros follow it.
        let mut near = last >> 1;
        for &step in steps.iter() {
            near |= near >> step;
        }
        last & near != 0
    })
}

/// Each of `steps` as the two shift counts the vector shifts take (in the
/// low 64 bits of a vector): `step` and `64 - step`. Six slots, the unused
/// ones never read.
#[cfg(target_arch = "x86_64")]
fn shift_counts(steps: &Steps) -> [(std::arch::x86_64::__m128i, std::arch::x86_64::__m128i); 6] {
    use std::arch::x86_64::_mm_cvtsi32_si128;
    std::array::from_fn(|i| {
        let step = steps.get(i).copied().unwrap_or(1);
        // Lossless: 1 to 32.
        #[allow(clippy::cast_possible_wrap)]
        // SAFETY: SSE2 is part of every x86-64 CPU.
        unsafe {
            (
                _mm_cvtsi32_si128(step as i32),
                _mm_cvtsi32_si128(64 - step as i32),
            )
        }
    })
}

/// [`close_pair`] for the words in blocks of eight that have their next
/// word in `masks`: `Ok` when a pair was found, else the first word it did
/// not look at.
///
/// # Safety
/// The CPU must support AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn close_pair_avx512(masks: &[u64], steps: &Steps) -> Result<(), usize> {
    use std::arch::x86_64::{
        _mm512_loadu_si512, _mm512_or_si512, _mm512_sll_epi64, _mm512_slli_epi64, _mm512_srl_epi64,
        _mm512_srli_epi64, _mm512_ternarylogic_epi64, _mm512_test_epi64_mask,
    };
    let counts = shift_counts(steps);
    let counts = &counts[..steps.len()];
    let mut w = 0;
    while w + 9 <= masks.len() {
        // SAFETY: words `w .. w + 9` lie inside `masks` (the bound above).
        let (word, next) = unsafe {
            (
                _mm512_loadu_si512(masks.as_ptr().add(w).cast()),
                _mm512_loadu_si512(masks.as_ptr().add(w + 1).cast()),
            )
        };
        let mut low = _mm512_or_si512(_mm512_srli_epi64::<1>(word), _mm512_slli_epi64::<63>(next));
        let mut high = _mm512_srli_epi64::<1>(next);
        for &(right, left) in counts {
            // low | (low >> step) | (high << (64 - step)): 0xFE is a | b | c.
            low = _mm512_ternarylogic_epi64::<0xFE>(
                low,
                _mm512_srl_epi64(low, right),
                _mm512_sll_epi64(high, left),
            );
            high = _mm512_or_si512(high, _mm512_srl_epi64(high, right));
        }
        if _mm512_test_epi64_mask(word, low) != 0 {
            return Ok(());
        }
        w += 8;
    }
    Err(w)
}

/// [`run_starts`] for the words in blocks of eight that have their next
/// word in `masks`; returns the first word it did not look at.
///
/// # Safety
/// The CPU must support AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_starts_avx512(
    masks: &[u64],
    steps: &Steps,
    found: &mut impl FnMut(usize, u64),
) -> usize {
    use std::arch::x86_64::{
        _mm512_and_si512, _mm512_loadu_si512, _mm512_sll_epi64, _mm512_srl_epi64,
        _mm512_storeu_si512, _mm512_ternarylogic_epi64, _mm512_test_epi64_mask,
    };
    let counts = shift_counts(steps);
    let counts = &counts[..steps.len()];
    let mut w = 0;
    let mut lanes = [0u64; 8];
    while w + 9 <= masks.len() {
        // SAFETY: words `w .. w + 9` lie inside `masks` (the bound above).
        let (mut low, mut high) = unsafe {
            (
                _mm512_loadu_si512(masks.as_ptr().add(w).cast()),
                _mm512_loadu_si512(masks.as_ptr().add(w + 1).cast()),
            )
        };
        for &(right, left) in counts {
            // low & ((low >> step) | (high << (64 - step))): 0xE0 is a & (b | c).
            low = _mm512_ternarylogic_epi64::<0xE0>(
                low,
                _mm512_srl_epi64(low, right),
                _mm512_sll_epi64(high, left),
            );
            high = _mm512_and_si512(high, _mm512_srl_epi64(high, right));
        }
        let mut any = _mm512_test_epi64_mask(low, low);
        if any != 0 {
            // SAFETY: `lanes` holds 64 bytes.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), low) };
            while any != 0 {
                let lane = any.trailing_zeros() as usize;
                any &= any - 1;
                found(w + lane, lanes[lane]);
            }
        }
        w += 8;
    }
    w
}

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

/// What [`squeeze_spaces`] saw besides the copy it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Squeezed {
    /// Some white space was not a single space: ASCII white space other
    /// than the space, or two white space bytes in a row (else the copy
    /// equals the input).
    pub changed: bool,
    /// Some byte was `0xC2` or `0xE1` to `0xE3`, the lead bytes of the
    /// white space characters beyond ASCII (which the copy leaves as they
    /// are).
    pub wide_leads: bool,
}

/// Write to `out` (cleared first) `data` with every run of ASCII white
/// space (tab, line feed, vertical tab, form feed, carriage return, space)
/// replaced by one space, in one pass that also tells whether that changed
/// anything and whether a byte may start a wider white space character; or
/// return `None`, `out` empty, where the CPU lacks AVX-512 VBMI2 (the
/// caller then goes run by run). Per 64-byte block: the white space mask,
/// the first byte of each run kept, white space turned into spaces, the
/// kept bytes compressed to the front of a vector and the vector stored.
pub fn squeeze_spaces(data: &[u8], out: &mut Vec<u8>) -> Option<Squeezed> {
    out.clear();
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vbmi2")
        && std::is_x86_feature_detected!("popcnt")
    {
        // SAFETY: the CPU has AVX-512 F (implied by BW), BW, VBMI2 and POPCNT.
        return Some(unsafe { squeeze_spaces_avx512(data, out) });
    }
    let _ = data;
    None
}

/// [`squeeze_spaces`] with AVX-512.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VBMI2, and POPCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt")]
unsafe fn squeeze_spaces_avx512(data: &[u8], out: &mut Vec<u8>) -> Squeezed {
    use std::arch::x86_64::{
        __m512i, _mm512_cmpeq_epi8_mask, _mm512_cmple_epu8_mask, _mm512_loadu_si512,
        _mm512_mask_mov_epi8, _mm512_maskz_compress_epi8, _mm512_maskz_loadu_epi8,
        _mm512_storeu_si512, _mm512_sub_epi8,
    };
    // The output is never longer than the input; each step stores a whole
    // vector, of which only the kept bytes count, so 64 bytes more.
    out.reserve(data.len() + 64);
    let dst = out.as_mut_ptr();
    let (tab, tab_span, space) = (splat(b'\t'), splat(0x0D - b'\t'), splat(b' '));
    let (c2, e1, e_span) = (splat(0xC2), splat(0xE1), splat(0xE3 - 0xE1));
    let mut written = 0usize;
    // Whether the byte before the block was white space.
    let mut carry = 0u64;
    // Bytes dropped or turned into spaces, and wide lead bytes, so far.
    let (mut changed, mut leads) = (0u64, 0u64);
    let mut step = |v: __m512i, live: u64| {
        let other = _mm512_cmple_epu8_mask(_mm512_sub_epi8(v, tab), tab_span) & live;
        let white = other | (_mm512_cmpeq_epi8_mask(v, space) & live);
        let repeated = white & ((white << 1) | carry);
        carry = white >> 63;
        changed |= other | repeated;
        leads |= (_mm512_cmpeq_epi8_mask(v, c2)
            | _mm512_cmple_epu8_mask(_mm512_sub_epi8(v, e1), e_span))
            & live;
        let keep = live & !repeated;
        let squeezed = _mm512_mask_mov_epi8(v, white, space);
        // The kept bytes packed at the front of a vector (a compressed store
        // to memory is several times slower), stored whole. SAFETY: before
        // the store `written` is at most the bytes read before this block,
        // so the 64 bytes written end within `data.len() + 64`, the capacity
        // reserved above.
        let packed = _mm512_maskz_compress_epi8(keep, squeezed);
        unsafe { _mm512_storeu_si512(dst.add(written).cast(), packed) };
        written += keep.count_ones() as usize;
    };
    let mut blocks = data.chunks_exact(64);
    for block in &mut blocks {
        // SAFETY: 64 bytes inside `data`; no alignment needed.
        step(
            unsafe { _mm512_loadu_si512(block.as_ptr().cast()) },
            u64::MAX,
        );
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let live = (1u64 << tail.len()) - 1;
        // SAFETY: the masked load touches only the tail's bytes.
        step(
            unsafe { _mm512_maskz_loadu_epi8(live, tail.as_ptr().cast()) },
            live,
        );
    }
    // SAFETY: the first `written` bytes were just initialised by the stores,
    // and `written <= data.len() <= capacity`.
    unsafe { out.set_len(written) };
    Squeezed {
        changed: changed != 0,
        wide_leads: leads != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;

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
    }

    #[test]
    fn body_masks_agree_with_the_scalar_definition() {
        // Every length around the block edges, every byte value, classes
        // as the digit windows use them; on a CPU with AVX-512 BW this is
        // the vector path, else the block-by-block one.
        let data: Vec<u8> = (0..300u32)
            .map(|i| u8::try_from((i * 37 + i / 7) % 256).expect("a byte"))
            .collect();
        let ranges = [(b'0', b'9'), (b'A', b'Z'), (b' ', b' '), (9, 3)];
        for len in (0..=200).chain([255, 256, 257, 300]) {
            let data = &data[..len];
            let expected = |kept: &dyn Fn(u8) -> bool| -> Vec<u64> {
                data.chunks(64)
                    .map(|block| {
                        block
                            .iter()
                            .enumerate()
                            .fold(0, |mask, (j, &b)| mask | (u64::from(kept(b)) << j))
                    })
                    .collect()
            };
            // Every number of ranges the vector path has a loop for, with
            // an empty range among them.
            for count in 0..=ranges.len() {
                let ranges = &ranges[..count];
                let mut out = vec![7];
                masks(data, Class::InRanges(ranges), &mut out);
                let in_any = |b: u8| ranges.iter().any(|&(first, last)| first <= b && b <= last);
                assert_eq!(out[1..], expected(&in_any), "len {len}, {count} ranges");
                assert_eq!(out[0], 7, "appended");
            }
            let four = [(b'0', b'9'), (b'A', b'Z'), (b' ', b' '), (b'a', b'a')];
            let mut out = Vec::new();
            masks(data, Class::InRanges(&four), &mut out);
            let in_four = |b: u8| four.iter().any(|&(first, last)| first <= b && b <= last);
            assert_eq!(out, expected(&in_four), "len {len}");
            // More ranges than the vector path keeps in registers.
            let many = [(0, 1), (5, 5), (b'a', b'f'), (0x80, 0x90), (0xfe, 0xff)];
            let mut out = Vec::new();
            masks(data, Class::InRanges(&many), &mut out);
            let in_five = |b: u8| many.iter().any(|&(first, last)| first <= b && b <= last);
            assert_eq!(out, expected(&in_five), "len {len}");
            // None to three excepted bytes (three go block by block).
            let three = [b'"', b',', b'\x90'];
            for count in 0..=three.len() {
                let except = &three[..count];
                let mut out = Vec::new();
                masks(data, Class::BelowOrHighExcept(b'0', except), &mut out);
                let kept = |b: u8| !(b'0'..0x80).contains(&b) && !except.contains(&b);
                assert_eq!(out, expected(&kept), "len {len}, {count} excepted");
                let mut by_block = Vec::new();
                masks_by_block(data, Class::BelowOrHighExcept(b'0', except), &mut by_block);
                assert_eq!(by_block, out);
            }
        }
        assert_eq!(in_ranges(&[b'a'; 64], &[(b'0', b'9')]), 0);
    }

    #[test]
    fn run_starts_agree_with_the_bitwise_definition() {
        // Masks of every length around the blocks of eight words, from
        // sparse to dense, and every span the digit windows can ask for;
        // on a CPU with AVX-512 F this is mostly the vector path.
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut next = || rng.next_u64();
        for len in 1..=27 {
            for density in 0..4 {
                let masks: Vec<u64> = (0..len)
                    .map(|_| (0..density).fold(u64::MAX, |m, _| m & next()) | next() & next())
                    .collect();
                let bit = |i: usize| masks.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1);
                for span in 0..64 {
                    let mut got = Vec::new();
                    run_starts(&masks, span, |w, starts| got.push((w, starts)));
                    let expected: Vec<(usize, u64)> = (0..len - 1)
                        .map(|w| {
                            let starts = (0..64).fold(0u64, |acc, p| {
                                let all = (0..=span).all(|j| bit(64 * w + p + j));
                                acc | (u64::from(all) << p)
                            });
                            (w, starts)
                        })
                        .filter(|&(_, starts)| starts != 0)
                        .collect();
                    assert_eq!(got, expected, "{len} words, span {span}");
                }
            }
        }
    }

    #[test]
    fn close_pairs_agree_with_the_bitwise_definition() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let mut next = || rng.next_u64();
        for len in 0..=27 {
            for sparse in 3..9 {
                // About one bit in 2^sparse set.
                let masks: Vec<u64> = (0..len)
                    .map(|_| (0..sparse).fold(u64::MAX, |m, _| m & next()))
                    .collect();
                let set: Vec<usize> = (0..64 * len)
                    .filter(|&i| masks[i / 64] >> (i % 64) & 1 == 1)
                    .collect();
                for gap in 0..63 {
                    let expected = set.windows(2).any(|p| p[1] - p[0] - 1 <= gap);
                    assert_eq!(close_pair(&masks, gap), expected, "{len} words, gap {gap}");
                }
            }
        }
    }

    #[test]
    fn squeezed_spaces_agree_with_the_bytewise_definition() {
        let reference = |data: &[u8]| {
            let mut out = Vec::new();
            for &b in data {
                let white = b == b' ' || (b'\t'..=0x0D).contains(&b);
                if !white {
                    out.push(b);
                } else if out.last() != Some(&b' ') {
                    out.push(b' ');
                }
            }
            out
        };
        let pieces: [&[u8]; 9] = [
            b" ",
            b"  ",
            b"\t",
            b"\n",
            b"\x0B\x0C\r",
            b"ab",
            b"x",
            b"\xE2\x80",
            b" .",
        ];
        let mut rng = crate::test_rng::XorShift(0xB10C_5EED);
        let mut out = Vec::new();
        let mut checked = 0;
        for _ in 0..2000 {
            let len = rng.below(90);
            let body: Vec<u8> = (0..len)
                .flat_map(|_| pieces[rng.below(pieces.len())].iter().copied())
                .collect();
            if let Some(seen) = squeeze_spaces(&body, &mut out) {
                let want = reference(&body);
                assert_eq!(out, want, "{body:?}");
                assert_eq!(seen.changed, want != body, "{body:?}");
                assert_eq!(
                    seen.wide_leads,
                    body.windows(2).any(|w| w == b"\xE2\x80"),
                    "{body:?}"
                );
                checked += 1;
            }
        }
        if checked == 0 {
            eprintln!("skipped: this CPU has no AVX-512 VBMI2");
        }
    }
}
