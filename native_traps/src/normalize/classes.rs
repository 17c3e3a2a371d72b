//! Byte classes and the one-pass pre-check that decides which transforms
//! can change a view at all, so clean traffic skips them.

/// `[A-Za-z0-9+/_-]`: may be part of a base64 / base64url / hex run.
pub(crate) const BLOB: u8 = 1;
/// `[A-Za-z]`.
pub(crate) const LETTER: u8 = 2;
/// `0 1 3 4 5 7 9 @ $`: folded by the leet view.
pub(crate) const LEET: u8 = 4;
/// `[A-Za-z0-9@$]`: part of a word for the leet view.
pub(crate) const WORD: u8 = 8;

pub(crate) const CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        // `i < 256`, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let b = i as u8;
        let mut c = 0;
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-') {
            c |= BLOB;
        }
        if b.is_ascii_alphabetic() {
            c |= LETTER;
        }
        if matches!(
            b,
            b'0' | b'1' | b'3' | b'4' | b'5' | b'7' | b'9' | b'@' | b'$'
        ) {
            c |= LEET;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'@' | b'$') {
            c |= WORD;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Which transforms could change a view (cheap checks, see [`Precheck::of`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Precheck {
    /// Some byte >= 0x80.
    pub(crate) non_ascii: bool,
    /// A `%` (a `%XX` escape is possible).
    pub(crate) percent: bool,
    /// A run of blob bytes at least `min_blob_len` long.
    pub(crate) long_run: bool,
}

impl Precheck {
    pub(crate) fn of(data: &[u8], min_blob_len: usize) -> Self {
        Self {
            non_ascii: !data.is_ascii(),
            percent: data.contains(&b'%'),
            long_run: has_blob_run(data, min_blob_len.max(1)),
        }
    }
}

/// Index of the first byte at or after `i` that is not ASCII (or `len`).
pub(crate) fn skip_ascii(data: &[u8], mut i: usize) -> usize {
    while i + 16 <= data.len() && data[i..i + 16].is_ascii() {
        i += 16;
    }
    while i < data.len() && data[i] < 0x80 {
        i += 1;
    }
    i
}

const HIGH: u64 = 0x8080_8080_8080_8080;

const fn splat(b: u8) -> u64 {
    // Widening cast; `u64::from` is not const.
    (b as u64) * 0x0101_0101_0101_0101
}

/// High bit of each byte of `t` (whose high bits are clear) set when the
/// byte is in `lo..=hi`. No carry crosses bytes: every sum stays < 0x100.
fn in_range(t: u64, lo: u8, hi: u8) -> u64 {
    let at_least_lo = t.wrapping_add(splat(0x80 - lo)) & HIGH;
    let above_hi = t.wrapping_add(splat(0x7F - hi)) & HIGH;
    at_least_lo & !above_hi
}

/// High bit of each byte of `x` set when the byte is `[A-Za-z0-9+/_-]`.
fn blob_lanes(x: u64) -> u64 {
    let t = x & !HIGH;
    // `| 0x20` lowercases A-Z and moves no other byte into a-z; `+ - /` are the odd
    // bytes of `+,-./` (bit 0 shifted up to each byte's high bit).
    let hit = in_range(t, b'0', b'9')
        | in_range(t | splat(0x20), b'a', b'z')
        | (in_range(t, b'+', b'/') & (t << 7))
        | in_range(t, b'_', b'_');
    hit & !x & HIGH
}

/// Whether `data` has at least `min_len` consecutive `[A-Za-z0-9+/_-]` bytes.
///
/// Eight bytes at a time (SWAR): a run of 8+ bytes is seen as the bytes
/// before the first non-blob byte of a word plus the run carried from the
/// previous words; shorter runs inside one word never reach `min_len >= 8`.
pub(crate) fn has_blob_run(data: &[u8], min_len: usize) -> bool {
    if min_len < 8 {
        return has_run_scalar(data, min_len);
    }
    let mut run = 0usize;
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut lanes = [0u8; 8];
        lanes.copy_from_slice(word);
        let non_blob = !blob_lanes(u64::from_le_bytes(lanes)) & HIGH;
        if non_blob == 0 {
            run += 8;
            if run >= min_len {
                return true;
            }
            continue;
        }
        // Blob bytes before the word's first non-blob byte (little endian:
        // byte k is bits 8k..8k+7), then those after its last one.
        if run + (non_blob.trailing_zeros() / 8) as usize >= min_len {
            return true;
        }
        run = (non_blob.leading_zeros() / 8) as usize;
    }
    for &b in words.remainder() {
        if CLASS[usize::from(b)] & BLOB == 0 {
            run = 0;
        } else {
            run += 1;
            if run >= min_len {
                return true;
            }
        }
    }
    false
}

/// The first maximal run of `[A-Za-z0-9+/_-]` bytes at least `min_len` long
/// that starts at or after `from`, as `start..end`.
///
/// Skips like Boyer-Moore: a run of `min_len` bytes starting at or after `i`
/// covers `i + min_len - 1`, so when that byte is not a blob byte the search
/// jumps past it; in prose (short words) most steps move about `min_len`.
pub(crate) fn next_blob_run(data: &[u8], from: usize, min_len: usize) -> Option<(usize, usize)> {
    let is_blob = |b: u8| CLASS[usize::from(b)] & BLOB != 0;
    let min_len = min_len.max(1);
    let mut i = from; // no run of `min_len` starts before `i`
    loop {
        let probe = i.checked_add(min_len - 1)?;
        if probe >= data.len() {
            return None;
        }
        if !is_blob(data[probe]) {
            i = probe + 1;
            continue;
        }
        // Back from the probe to the last non-blob byte at or after `i`.
        if let Some(k) = data[i..probe].iter().rposition(|&b| !is_blob(b)) {
            i += k + 1;
        } else {
            let mut end = probe + 1;
            while end < data.len() && is_blob(data[end]) {
                end += 1;
            }
            return Some((i, end));
        }
    }
}

/// High bit of each byte of `x` set when the byte is `0 1 3 4 5 7 9 @ $`.
fn leet_lanes(x: u64) -> u64 {
    let t = x & !HIGH;
    let hit = in_range(t, b'0', b'1')
        | in_range(t, b'3', b'5')
        | in_range(t, b'7', b'7')
        | in_range(t, b'9', b'9')
        | in_range(t, b'@', b'@')
        | in_range(t, b'$', b'$');
    hit & !x & HIGH
}

/// Index of the first leet byte (`0 1 3 4 5 7 9 @ $`) at or after `from`,
/// eight bytes at a time.
pub(crate) fn next_leet(data: &[u8], from: usize) -> Option<usize> {
    let tail = data.get(from..)?;
    let mut words = tail.chunks_exact(8);
    let mut at = from;
    for word in &mut words {
        let mut lanes = [0u8; 8];
        lanes.copy_from_slice(word);
        let hits = leet_lanes(u64::from_le_bytes(lanes));
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| CLASS[usize::from(b)] & LEET != 0)
        .map(|k| at + k)
}

fn has_run_scalar(data: &[u8], min_len: usize) -> bool {
    let mut run = 0usize;
    for &b in data {
        if CLASS[usize::from(b)] & BLOB == 0 {
            run = 0;
        } else {
            run += 1;
            if run >= min_len {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs() {
        for min in [1, 7, 8, 16, 17, 100, 101] {
            for s in [
                "ab cdefghijklmnopqr st".to_owned(),
                "ab cdefghijklmnopq st".to_owned(),
                format!("{} {}", "a".repeat(63), "b".repeat(100)),
                format!("{}{}", " ".repeat(60), "x".repeat(16)),
                format!("{}{}", " ".repeat(61), "+/_-09AZaz".repeat(3)),
                "x\u{e9}yz\u{ff}".repeat(30),
                String::new(),
            ] {
                assert_eq!(
                    has_blob_run(s.as_bytes(), min),
                    has_run_scalar(s.as_bytes(), min),
                    "{min} {s:?}"
                );
            }
        }
        for min in [1, 7, 8, 12, 16, 17] {
            for s in [
                "ab cdefghijklmnopqr st".to_owned(),
                format!("{} {}", "a".repeat(63), "b".repeat(100)),
                format!("{}{}", " ".repeat(61), "+/_-09AZaz".repeat(3)),
                "customer-8841 said hello to internationalization ok".to_owned(),
                "x\u{e9}yz\u{ff}".repeat(30),
                String::new(),
            ] {
                let data = s.as_bytes();
                let mut fast = Vec::new();
                let mut at = 0;
                while let Some((a, b)) = next_blob_run(data, at, min) {
                    fast.push((a, b));
                    at = b;
                }
                let mut slow = Vec::new();
                let mut k = 0;
                while k < data.len() {
                    let start = k;
                    while k < data.len() && CLASS[usize::from(data[k])] & BLOB != 0 {
                        k += 1;
                    }
                    if k - start >= min {
                        slow.push((start, k));
                    }
                    k += 1;
                }
                assert_eq!(fast, slow, "{min} {s:?}");
            }
        }
        let text = b"no leet here... then x@y and 1 more $ at 9 the 28 very end 7";
        let mut found = Vec::new();
        let mut i = 0;
        while let Some(k) = next_leet(text, i) {
            found.push(k);
            i = k + 1;
        }
        let expected: Vec<usize> = (0..text.len())
            .filter(|&k| CLASS[usize::from(text[k])] & LEET != 0)
            .collect();
        assert_eq!(found, expected);
        let all: Vec<u8> = (0..=255u8).collect();
        for i in 0..=255usize {
            let word = [all[i]; 8];
            let swar = blob_lanes(u64::from_le_bytes(word)) != 0;
            assert_eq!(swar, CLASS[i] & BLOB != 0, "{i:#x}");
            let swar = leet_lanes(u64::from_le_bytes(word)) != 0;
            assert_eq!(swar, CLASS[i] & LEET != 0, "{i:#x}");
        }
    }
}
