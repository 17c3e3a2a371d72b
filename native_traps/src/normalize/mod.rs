//! Normalised *views* of a request body, each with a map back to the
//! original bytes, so evasions (escapes, encodings, invisible characters,
//! lookalike letters, leetspeak) meet the same rules as plain text and every
//! finding still points at the bytes that were sent.
//!
//! [`Views::build`] produces, in order and only when each one differs from
//! what is already there (a plain ASCII body yields just [`ViewKind::Raw`]):
//!
//! | view | from | what |
//! | --- | --- | --- |
//! | `Raw` | body | the body itself |
//! | `JsonStrings` | `Raw` | decoded strings (keys too) of a valid JSON document, one per line; only when some string holds an escape |
//! | `Unescaped` | `JsonStrings` or `Raw` | `\uXXXX` and `\xHH` escapes decoded wherever they stand (a body that is not JSON, or escapes typed literally into a JSON string) |
//! | `PercentDecoded` | `Unescaped`, `JsonStrings` or `Raw` | `%XX` decoded |
//! | `Canonical` | the newest of the above | invisible characters removed, NFKC per character, combining marks after a Latin letter dropped, confusables folded to ASCII |
//! | `Tags` | the text view | runs of Unicode tag characters decoded to the ASCII they shadow |
//! | `Leet` | `Canonical` or the text view | `0 1 3 4 5 7 9 @ $` folded to letters in every word with a letter and in short all-leet numbers; planned here ([`Views::leet`]) and built and scanned (injection rules only) when a keyword could occur in it (see `leet_gate.rs`) |
//! | `Decoded{depth}` | the text view, then the previous `Decoded` | base64 / base64url / hex runs that decode to mostly printable UTF-8, and shorter strict base64 of a printable ASCII value (an SSN), one per line |
//!
//! Each transform runs only after a cheap pre-check (a byte >= 0x80, a
//! backslash, a `%XX`, a long blob-looking run). All work is linear in the
//! body and bounded by [`NormalizeOptions`]; a bound that stops work is
//! named in [`Views::limits_hit`], never a panic.

mod blobs;
mod classes;
mod decompress;
mod json;
mod offsets;
mod scan;
mod text;

use std::fmt;

use classes::Precheck;

pub use blobs::{mostly_printable, MIN_PRINTABLE_SHARE};
pub use decompress::{
    decompress, DecompressLimits, DEFAULT_MAX_DECOMPRESSED, DEFAULT_MAX_RATIO, RATIO_FLOOR,
};
pub use offsets::{OffsetMap, Segment};
pub use scan::{
    leet_view_for, leet_view_needed, scan_views, ViewEntropyFinding, ViewFinding, ViewScan,
};
pub use text::{confusable, is_invisible};

/// Name put in [`Views::limits_hit`] when the decoded-bytes budget ran out.
pub const LIMIT_DECODED_BYTES: &str = "decoded_bytes";
/// Name put in [`Views::limits_hit`] when decodable blobs remain at `max_depth`.
pub const LIMIT_DEPTH: &str = "depth";
/// Name put in [`Views::limits_hit`] when a text view would grow past
/// [`MAX_EXPANSION`] times its source (NFKC can expand one character into 18).
pub const LIMIT_EXPANSION: &str = "expansion";

/// A text view may be at most this many times (plus 4 KiB) its source.
pub const MAX_EXPANSION: usize = 4;

/// Bounds for [`Views::build`] and decompression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalizeOptions {
    /// Levels of nested base64/hex decoding (default 2; 0 disables it).
    pub max_depth: usize,
    /// Total decoded blob bytes over all levels (default 1 MiB).
    pub max_decoded_bytes: usize,
    /// Shortest base64 / hex run decoded to any mostly printable text, in
    /// characters without padding (default 16).
    pub min_blob_len: usize,
    /// Shortest base64 run decoded when it is canonical base64 of a short
    /// printable ASCII value, such as an SSN or a phone number (default 12;
    /// at most `min_blob_len` takes effect).
    pub min_text_blob_len: usize,
    /// Decompression bounds (used by [`decompress()`], not by `build`).
    pub decompress: DecompressLimits,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        Self {
            max_depth: 2,
            max_decoded_bytes: 1 << 20,
            min_blob_len: 16,
            min_text_blob_len: 12,
            decompress: DecompressLimits::default(),
        }
    }
}

/// Which transform produced a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViewKind {
    /// The body as sent.
    Raw,
    /// Decoded JSON strings.
    JsonStrings,
    /// `\uXXXX` and `\xHH` escapes decoded wherever they stand in the text (a non-JSON body,
    /// or escapes typed literally into a JSON string).
    Unescaped,
    /// `%XX` decoded.
    PercentDecoded,
    /// Invisible characters removed, NFKC, confusables folded.
    Canonical,
    /// Leetspeak folded (for injection rules only).
    Leet,
    /// Text hidden in Unicode tag characters, decoded to ASCII.
    Tags,
    /// Base64 / hex blobs decoded, at nesting level `depth` (1-based).
    Decoded {
        /// Nesting level, 1 for blobs found in the text views.
        depth: u8,
    },
}

impl ViewKind {
    /// `raw`, `json`, `percent`, `canonical`, `leet`, `decoded1`, `decoded2`, …
    pub fn name(self) -> String {
        match self {
            Self::Decoded { depth } => format!("decoded{depth}"),
            other => other.static_name().to_owned(),
        }
    }

    fn static_name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::JsonStrings => "json",
            Self::Unescaped => "unescaped",
            Self::PercentDecoded => "percent",
            Self::Canonical => "canonical",
            Self::Leet => "leet",
            Self::Tags => "tags",
            Self::Decoded { .. } => "decoded",
        }
    }
}

impl fmt::Display for ViewKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decoded { depth } => write!(f, "decoded{depth}"),
            other => f.write_str(other.static_name()),
        }
    }
}

/// One view: its bytes and the map back to the original body.
#[derive(Debug, Clone)]
pub struct View {
    /// Transform that produced it.
    pub kind: ViewKind,
    /// The view's bytes (not necessarily UTF-8).
    pub bytes: Vec<u8>,
    /// Offsets back to the original body.
    pub map: OffsetMap,
}

impl View {
    /// Original-body span of the view span `start..end`.
    pub fn map_span(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        self.map.map_span(start, end)
    }
}

/// Every view of one body. The raw view borrows the body (no copy).
#[derive(Debug, Clone)]
pub struct Views<'a> {
    /// The original body.
    pub raw: &'a [u8],
    /// Derived views, in the order they were built (Raw not included).
    pub derived: Vec<View>,
    /// Names of the bounds that stopped work (`decoded_bytes`, `depth`, `expansion`).
    pub limits_hit: Vec<&'static str>,
    /// The leet view, when some word has a leet byte to fold: built on
    /// demand ([`Views::leet_view`]), since most bodies need not scan it.
    pub leet: Option<LeetPlan>,
}

/// What the leet view of a body would fold.
#[derive(Debug, Clone)]
pub struct LeetPlan {
    /// The view it folds: an index into [`Views::derived`], `None` for Raw.
    pub source: Option<usize>,
    /// The byte ranges of that view's words that fold.
    pub words: Vec<(usize, usize)>,
}

impl<'a> Views<'a> {
    /// Build the views of `body` (see the module docs).
    pub fn build(body: &'a [u8], opts: &NormalizeOptions) -> Self {
        let mut views = Self {
            raw: body,
            derived: Vec::new(),
            limits_hit: Vec::new(),
            leet: None,
        };
        let raw_map = OffsetMap::identity(body.len());
        let expansion_cap = |len: usize| len.saturating_mul(MAX_EXPANSION).saturating_add(4096);
        let lens = blobs::BlobLens::new(opts.min_blob_len, opts.min_text_blob_len);

        // 1. JSON strings, when the document has escapes to decode.
        if memchr_backslash(body) {
            if let Some(j) = json::extract_strings(body, &raw_map) {
                if j.had_escape {
                    views.push(ViewKind::JsonStrings, j.bytes, j.map);
                }
            }
        }
        // 1b. Escapes left in the text (not JSON, or escaped twice).
        {
            let (src, map) = views.source(views.last_index(), &raw_map);
            if memchr_backslash(src) {
                if let Some((bytes, map)) = json::unescape_loose(src, map) {
                    views.push(ViewKind::Unescaped, bytes, map);
                }
            }
        }
        // The text view the next transforms start from.
        let mut text_idx: Option<usize> = views.last_index();
        let mut pre = Precheck::of(views.source(text_idx, &raw_map).0, lens.shortest());

        // 2. Percent-decoding.
        if pre.percent {
            let (src, map) = views.source(text_idx, &raw_map);
            if text::has_percent_escape(src) {
                if let Some((bytes, map)) = text::percent_decode(src, map) {
                    views.push(ViewKind::PercentDecoded, bytes, map);
                    text_idx = views.last_index();
                    pre = Precheck::of(views.source(text_idx, &raw_map).0, lens.shortest());
                }
            }
        }

        // 3. Canonical text.
        let mut canon_idx = None;
        if pre.non_ascii {
            let (src, map) = views.source(text_idx, &raw_map);
            {
                if let Some((bytes, map)) = text::canonical(src, map) {
                    if bytes.len() > expansion_cap(src.len()) {
                        views.limit(LIMIT_EXPANSION);
                    } else {
                        views.push(ViewKind::Canonical, bytes, map);
                        canon_idx = views.last_index();
                    }
                }
            }
        }

        // 3b. Text smuggled in tag characters (the canonical view drops them).
        if pre.non_ascii {
            let (src, map) = views.source(text_idx, &raw_map);
            if let Some((bytes, map)) = text::tag_text(src, map) {
                views.push(ViewKind::Tags, bytes, map);
            }
        }

        // 4. Leetspeak, on the canonical text when there is one: only
        // planned here, built when the scan needs it (see `leet_gate.rs`).
        {
            let source = canon_idx.or(text_idx);
            let words = text::leet_words(views.source(source, &raw_map).0);
            if !words.is_empty() {
                views.leet = Some(LeetPlan { source, words });
            }
        }

        // 5. Blobs, recursively.
        let mut budget = opts.max_decoded_bytes;
        let mut from = text_idx;
        let max_depth = if pre.long_run { opts.max_depth } else { 0 };
        for depth in 1..=max_depth {
            let (src, map) = views.source(from, &raw_map);
            let decoded = blobs::decode_view(src, map, lens, budget);
            if decoded.budget_hit {
                views.limit(LIMIT_DECODED_BYTES);
            }
            if decoded.bytes.is_empty() {
                break;
            }
            budget = budget.saturating_sub(decoded.bytes.len());
            let depth = u8::try_from(depth).unwrap_or(u8::MAX);
            views.push(ViewKind::Decoded { depth }, decoded.bytes, decoded.map);
            from = views.last_index();
            if usize::from(depth) == opts.max_depth {
                let (src, _) = views.source(from, &raw_map);
                if blobs::has_decodable(src, lens) {
                    views.limit(LIMIT_DEPTH);
                }
            }
        }
        views
    }

    fn push(&mut self, kind: ViewKind, bytes: Vec<u8>, map: OffsetMap) {
        self.derived.push(View { kind, bytes, map });
    }

    fn limit(&mut self, name: &'static str) {
        if !self.limits_hit.contains(&name) {
            self.limits_hit.push(name);
        }
    }

    fn last_index(&self) -> Option<usize> {
        self.derived.len().checked_sub(1)
    }

    fn source<'s>(
        &'s self,
        idx: Option<usize>,
        raw_map: &'s OffsetMap,
    ) -> (&'s [u8], &'s OffsetMap) {
        match idx {
            Some(i) => (&self.derived[i].bytes, &self.derived[i].map),
            None => (self.raw, raw_map),
        }
    }

    /// The bytes of the derived view `index`, or Raw for `None`.
    pub fn bytes(&self, index: Option<usize>) -> &[u8] {
        index.map_or(self.raw, |i| &self.derived[i].bytes)
    }

    /// The leet view of the plan, if there is one (the source's offset map
    /// serves it too: the fold is byte for byte).
    pub fn leet_view(&self) -> Option<View> {
        let plan = self.leet.as_ref()?;
        let bytes = text::leet_apply(self.bytes(plan.source), &plan.words);
        let map = match plan.source {
            Some(i) => self.derived[i].map.clone(),
            None => OffsetMap::identity(self.raw.len()),
        };
        Some(View {
            kind: ViewKind::Leet,
            bytes,
            map,
        })
    }

    /// Every view as `(kind, bytes)`, Raw first.
    pub fn iter(&self) -> impl Iterator<Item = (ViewKind, &[u8])> + '_ {
        std::iter::once((ViewKind::Raw, self.raw))
            .chain(self.derived.iter().map(|v| (v.kind, v.bytes.as_slice())))
    }

    /// Number of views, Raw included.
    pub fn len(&self) -> usize {
        1 + self.derived.len()
    }

    /// Always false: there is at least the Raw view.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The derived view of `kind`, if built (`None` for `Raw`: use [`Views::raw`]).
    pub fn get(&self, kind: ViewKind) -> Option<&View> {
        self.derived.iter().find(|v| v.kind == kind)
    }

    /// Original span of `start..end` in the view of `kind`.
    pub fn map_span(&self, kind: ViewKind, start: usize, end: usize) -> Option<(usize, usize)> {
        if kind == ViewKind::Raw {
            return (start < end && end <= self.raw.len()).then_some((start, end));
        }
        self.get(kind)?.map_span(start, end)
    }
}

fn memchr_backslash(data: &[u8]) -> bool {
    data.contains(&b'\\')
}

/// Why a body could not be decompressed.
#[derive(Debug, Clone, PartialEq)]
pub enum NormalizeError {
    /// The `Content-Encoding` is not one of gzip, deflate, br, identity.
    UnknownEncoding(String),
    /// The data is not valid for its encoding.
    Corrupt {
        /// The (lowercased) encoding.
        encoding: String,
        /// The decoder's explanation.
        reason: String,
    },
    /// The output would exceed the absolute cap.
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The output would exceed `max_ratio` times the input.
    Ratio {
        /// The ratio cap.
        max_ratio: f64,
    },
}

impl NormalizeError {
    /// The bound's name (`decompressed_bytes`, `ratio`) or `corrupt` / `encoding`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::UnknownEncoding(_) => "encoding",
            Self::Corrupt { .. } => "corrupt",
            Self::TooLarge { .. } => "decompressed_bytes",
            Self::Ratio { .. } => "ratio",
        }
    }
}

impl fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownEncoding(e) => write!(f, "unsupported content encoding {e:?}"),
            Self::Corrupt { encoding, reason } => {
                write!(f, "corrupt {encoding} data: {reason}")
            }
            Self::TooLarge { limit } => {
                write!(f, "decompressed body exceeds {limit} bytes")
            }
            Self::Ratio { max_ratio } => {
                write!(f, "decompression ratio exceeds {max_ratio}x")
            }
        }
    }
}

impl std::error::Error for NormalizeError {}
