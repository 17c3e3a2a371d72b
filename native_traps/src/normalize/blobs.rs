//! Base64 / base64url / hex runs that decode to mostly printable UTF-8.
//!
//! Runs of at least `min_blob_len` characters are decoded when the result is
//! mostly printable. Shorter base64 runs, down to `min_text_blob_len`, hold
//! the short values that matter most (an SSN or a phone number is 11 bytes,
//! 15 characters of base64) but also look like ordinary identifiers
//! (`getUserNameById`), so they must pass a strict test: canonical base64
//! (zero trailing bits, correct padding) that decodes to printable ASCII, at
//! least half of it letters and digits.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};

use super::classes::next_blob_run;
use super::offsets::OffsetMap;

const CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CONFIG);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CONFIG);
/// For short runs: the unused bits of the last character must be zero, as an
/// encoder writes them (a random identifier has them set three times in four).
const STRICT: GeneralPurposeConfig = CONFIG.with_decode_allow_trailing_bits(false);
const STANDARD_STRICT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, STRICT);
const URL_SAFE_STRICT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, STRICT);

/// Least share of printable characters in a decoded blob.
pub const MIN_PRINTABLE_SHARE: f64 = 0.9;

/// One candidate run in a view: `start..end` including any `=` padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blob {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Maximal runs of `[A-Za-z0-9+/_-]` (plus up to two trailing `=`) at least
/// `min_len` characters long. Linear in `src`, eight bytes at a time.
pub(crate) fn candidates(src: &[u8], min_len: usize) -> impl Iterator<Item = Blob> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let (start, body_end) = next_blob_run(src, i, min_len)?;
        i = body_end;
        let mut pad = 0;
        while pad < 2 && i < src.len() && src[i] == b'=' {
            i += 1;
            pad += 1;
        }
        Some(Blob { start, end: i })
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
    if !run.len().is_multiple_of(2) || !run.iter().all(u8::is_ascii_hexdigit) {
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

/// A run without its `=` padding.
fn blob_body(run: &[u8]) -> &[u8] {
    run.strip_suffix(b"==")
        .or_else(|| run.strip_suffix(b"="))
        .unwrap_or(run)
}

fn decode_base64(run: &[u8], strict: bool) -> Option<Vec<u8>> {
    let body = blob_body(run);
    // Base64 of text mixes cases; a single-case run is a word or identifier. (Base64 of
    // digits and spaces may be single-case, "NDI5IDI3IDM0ODE=": the strict test for short
    // runs keeps words out without this check.)
    if !strict
        && (!body.iter().any(u8::is_ascii_uppercase) || !body.iter().any(u8::is_ascii_lowercase))
    {
        return None;
    }
    let standard = body.iter().any(|&b| b == b'+' || b == b'/');
    let url = body.iter().any(|&b| b == b'-' || b == b'_');
    let engine = match (standard, url, strict) {
        (true, true, _) => return None,
        (_, false, false) => &STANDARD,
        (false, true, false) => &URL_SAFE,
        (_, false, true) => &STANDARD_STRICT,
        (false, true, true) => &URL_SAFE_STRICT,
    };
    if strict {
        // Whole quads only, and padding (if any) that completes the last one.
        let padded = run.len() != body.len();
        if body.len() % 4 == 1 || (padded && !run.len().is_multiple_of(4)) {
            return None;
        }
        return engine.decode(body).ok();
    }
    // A length of 1 mod 4 cannot be base64: drop the odd last character.
    let body = if body.len() % 4 == 1 {
        &body[..body.len() - 1]
    } else {
        body
    };
    engine.decode(body).ok()
}

/// Whether `bytes` reads as a short text value: printable ASCII (space
/// included), at least half of it letters and digits.
fn short_text(bytes: &[u8]) -> bool {
    let alnum = bytes.iter().filter(|b| b.is_ascii_alphanumeric()).count();
    !bytes.is_empty()
        && bytes.iter().all(|&b| (0x20..0x7F).contains(&b))
        && 2 * alnum >= bytes.len()
}

/// Blob length bounds: runs of `min_len` characters or more (without
/// padding) are decoded to mostly printable text; shorter ones down to
/// `min_text_len` only as strict base64 of a short text value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlobLens {
    pub(crate) min_len: usize,
    pub(crate) min_text_len: usize,
}

impl BlobLens {
    pub(crate) fn new(min_len: usize, min_text_len: usize) -> Self {
        Self {
            min_len,
            min_text_len: min_text_len.min(min_len),
        }
    }

    /// The shortest run considered at all.
    pub(crate) fn shortest(self) -> usize {
        self.min_text_len
    }
}

/// Decode a candidate run: hex first (an even run of hex digits), then
/// base64 / base64url; `Some` only when the result is mostly printable.
/// A run shorter than `lens.min_len` must be strict base64 of a short text
/// value (see the module docs).
pub(crate) fn decode(run: &[u8], lens: BlobLens) -> Option<Vec<u8>> {
    if blob_body(run).len() < lens.min_len {
        return decode_base64(run, true).filter(|b| short_text(b));
    }
    if let Some(bytes) = decode_hex(run) {
        if mostly_printable(&bytes) {
            return Some(bytes);
        }
    }
    decode_base64(run, false).filter(|b| mostly_printable(b))
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
    lens: BlobLens,
    budget: usize,
) -> Decoded {
    let mut out = Decoded {
        bytes: Vec::new(),
        map: OffsetMap::default(),
        budget_hit: false,
    };
    let mut prev_end = 0;
    for blob in candidates(src, lens.shortest()) {
        // Decoded size is at most 3/4 (base64) or 1/2 (hex) of the run.
        if out.bytes.len() + (blob.end - blob.start) * 3 / 4 + 1 > budget {
            out.budget_hit = true;
            break;
        }
        let Some(bytes) = decode(&src[blob.start..blob.end], lens) else {
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
pub(crate) fn has_decodable(src: &[u8], lens: BlobLens) -> bool {
    candidates(src, lens.shortest()).any(|b| decode(&src[b.start..b.end], lens).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LENS: BlobLens = BlobLens {
        min_len: 16,
        min_text_len: 12,
    };

    #[test]
    fn decodes_hex_and_base64() {
        assert_eq!(
            decode(b"68656c6c6f20776f726c6421", LENS).as_deref(),
            Some(&b"hello world!"[..])
        );
        assert_eq!(
            decode(b"aGVsbG8gd29ybGQh", LENS).as_deref(),
            Some(&b"hello world!"[..])
        );
        assert_eq!(
            decode(b"aGVsbG8gd29ybGQhIQ==", LENS).as_deref(),
            Some(&b"hello world!!"[..])
        );
        assert_eq!(decode(b"internationalization", LENS), None);
        assert_eq!(decode(b"12345678901234567890", LENS), None);
    }

    #[test]
    fn short_runs_only_as_strict_text() {
        // An SSN (11 bytes) is 15 characters of base64 plus one `=`.
        assert_eq!(
            decode(b"MzQ3IDQ2IDM2ODk=", LENS).as_deref(),
            Some(&b"347 46 3689"[..])
        );
        assert_eq!(
            decode(b"MzQ3IDQ2IDM2ODk", LENS).as_deref(),
            Some(&b"347 46 3689"[..])
        );
        // Single-case base64 of digits.
        assert_eq!(
            decode(b"NDI5IDI3IDM0ODE=", LENS).as_deref(),
            Some(&b"429 27 3481"[..])
        );
        // Nine digits: 12 characters.
        assert_eq!(
            decode(b"MTIzNDU2Nzg5", LENS).as_deref(),
            Some(&b"123456789"[..])
        );
        // Wrong padding, set trailing bits, a length of 1 mod 4.
        assert_eq!(decode(b"MzQ3IDQ2IDM2ODk==", LENS), None);
        assert_eq!(decode(b"MzQ3IDQ2IDM2ODl", LENS), None);
        assert_eq!(decode(b"MTIzNDU2Nzg5M", LENS), None);
        // Identifiers and words.
        for word in [
            "getUserNameById",
            "isValidEmail",
            "ReadTimeoutMs",
            "setMaxRetries",
            "HttpResponse",
            "TotalAmount",
            "implementation",
            "MAX_RETRY_COUNT",
            "user-profile-id",
            "3f2a9c7e1b4d",
            "123456789012",
        ] {
            assert_eq!(decode(word.as_bytes(), LENS), None, "{word}");
        }
        // Below the text minimum, nothing.
        assert!(candidates(b"YWJjZGVm", LENS.shortest()).next().is_none());
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
