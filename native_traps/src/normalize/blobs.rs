//! Base64 / base64url / hex runs that decode to mostly printable UTF-8.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};

use super::classes::{BLOB, CLASS};
use super::offsets::OffsetMap;

const CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CONFIG);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CONFIG);

/// Least share of printable characters in a decoded blob.
pub const MIN_PRINTABLE_SHARE: f64 = 0.9;

fn is_blob_byte(b: u8) -> bool {
    CLASS[usize::from(b)] & BLOB != 0
}

/// One candidate run in a view: `start..end` including any `=` padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blob {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Maximal runs of `[A-Za-z0-9+/_-]` (plus up to two trailing `=`) at least
/// `min_len` characters long. Linear in `src`.
pub(crate) fn candidates(src: &[u8], min_len: usize) -> impl Iterator<Item = Blob> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < src.len() {
            if !is_blob_byte(src[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < src.len() && is_blob_byte(src[i]) {
                i += 1;
            }
            let body_end = i;
            let mut pad = 0;
            while pad < 2 && i < src.len() && src[i] == b'=' {
                i += 1;
                pad += 1;
            }
            if body_end - start >= min_len {
                return Some(Blob { start, end: i });
            }
        }
        None
    })
}

/// Whether `bytes` is UTF-8 (a character cut at the very end is tolerated)
/// with at least [`MIN_PRINTABLE_SHARE`] printable characters.
pub fn mostly_printable(bytes: &[u8]) -> bool {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4 => {
            // Valid up to a truncated final character.
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    let (mut total, mut printable) = (0usize, 0usize);
    for c in text.chars() {
        total += 1;
        if (matches!(c, '\t' | '\n' | '\r') || !c.is_control()) && c != char::REPLACEMENT_CHARACTER
        {
            printable += 1;
        }
    }
    total > 0 && printable as f64 >= MIN_PRINTABLE_SHARE * total as f64
}

fn decode_hex(run: &[u8]) -> Option<Vec<u8>> {
    if run.len() % 2 != 0 || !run.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let nibble = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    run.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

fn decode_base64(run: &[u8]) -> Option<Vec<u8>> {
    let body = run
        .strip_suffix(b"==")
        .or_else(|| run.strip_suffix(b"="))
        .unwrap_or(run);
    // Base64 of text mixes cases; a single-case run is a word or identifier.
    if !body.iter().any(u8::is_ascii_uppercase) || !body.iter().any(u8::is_ascii_lowercase) {
        return None;
    }
    let standard = body.iter().any(|&b| b == b'+' || b == b'/');
    let url = body.iter().any(|&b| b == b'-' || b == b'_');
    let engine = match (standard, url) {
        (true, true) => return None,
        (_, false) => &STANDARD,
        (false, true) => &URL_SAFE,
    };
    // A length of 1 mod 4 cannot be base64: drop the odd last character.
    let body = if body.len() % 4 == 1 {
        &body[..body.len() - 1]
    } else {
        body
    };
    engine.decode(body).ok()
}

/// Decode a candidate run: hex first (an even run of hex digits), then
/// base64 / base64url; `Some` only when the result is mostly printable.
pub(crate) fn decode(run: &[u8]) -> Option<Vec<u8>> {
    if let Some(bytes) = decode_hex(run) {
        if mostly_printable(&bytes) {
            return Some(bytes);
        }
    }
    decode_base64(run).filter(|b| mostly_printable(b))
}

/// Outcome of [`decode_view`].
pub(crate) struct Decoded {
    /// Decoded blobs, each followed by `\n`; empty when none decoded.
    pub(crate) bytes: Vec<u8>,
    pub(crate) map: OffsetMap,
    /// The byte budget ran out before every blob was decoded.
    pub(crate) budget_hit: bool,
}

/// Bytes of text before a blob that are copied into the decoded view with it.
const BLOB_CONTEXT: usize = 40;

/// Decode every blob of `src` (a view mapped by `parent`) into one new
/// view, spending at most `budget` decoded bytes.
pub(crate) fn decode_view(
    src: &[u8],
    parent: &OffsetMap,
    min_len: usize,
    budget: usize,
) -> Decoded {
    let mut out = Decoded {
        bytes: Vec::new(),
        map: OffsetMap::default(),
        budget_hit: false,
    };
    let mut prev_end = 0;
    for blob in candidates(src, min_len) {
        // Decoded size is at most 3/4 (base64) or 1/2 (hex) of the run.
        if out.bytes.len() + (blob.end - blob.start) * 3 / 4 + 1 > budget {
            out.budget_hit = true;
            break;
        }
        let Some(bytes) = decode(&src[blob.start..blob.end]) else {
            continue;
        };
        let Some((a, b)) = parent.map_span(blob.start, blob.end) else {
            continue;
        };
        // The words just before the blob ("call me at", "SSN:") travel with it, so rules
        // that need a context word still see one; they map to their own source bytes.
        let mut ctx = blob.start.saturating_sub(BLOB_CONTEXT).max(prev_end);
        while ctx < blob.start && (src[ctx] & 0xC0) == 0x80 {
            ctx += 1;
        }
        if let Some(nl) = src[ctx..blob.start].iter().rposition(|&c| c == b'\n') {
            ctx += nl + 1;
        }
        prev_end = blob.end;
        if ctx < blob.start {
            out.map.push_from_parent(parent, ctx, blob.start);
            out.bytes.extend_from_slice(&src[ctx..blob.start]);
        }
        out.map.push_collapsed(bytes.len() + 1, a, b);
        out.bytes.extend_from_slice(&bytes);
        out.bytes.push(b'\n');
    }
    out
}

/// Whether `src` holds at least one blob that would decode.
pub(crate) fn has_decodable(src: &[u8], min_len: usize) -> bool {
    candidates(src, min_len).any(|b| decode(&src[b.start..b.end]).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_hex_and_base64() {
        assert_eq!(
            decode(b"68656c6c6f20776f726c6421").as_deref(),
            Some(&b"hello world!"[..])
        );
        assert_eq!(
            decode(b"aGVsbG8gd29ybGQh").as_deref(),
            Some(&b"hello world!"[..])
        );
        assert_eq!(
            decode(b"aGVsbG8gd29ybGQhIQ==").as_deref(),
            Some(&b"hello world!!"[..])
        );
        assert_eq!(decode(b"internationalization"), None);
        assert_eq!(decode(b"12345678901234567890"), None);
    }

    #[test]
    fn candidate_runs() {
        let src = b"x=aGVsbG8gd29ybGQhIQ==, short, 68656c6c6f20776f726c6421";
        let runs: Vec<_> = candidates(src, 16).map(|b| &src[b.start..b.end]).collect();
        assert_eq!(
            runs,
            [&b"aGVsbG8gd29ybGQhIQ=="[..], b"68656c6c6f20776f726c6421"]
        );
    }
}
