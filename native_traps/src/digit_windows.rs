//! Digit windows: the parts of a body where a digit-shaped rule can match.
//!
//! Many rules (payment cards, IBANs, SSNs, phone numbers, IPv4 addresses)
//! have no rare keyword, so without help their regex would run over every
//! byte of every body. Their matches are short and hold digits, and a
//! static look at the pattern's HIR bounds how many, how far apart and how
//! much else a match holds. Over every string the pattern can match
//! (look-around ignored, which only adds strings), [`DigitShape::of`]
//! computes:
//!
//! * `k` = [`min_digits`]: the fewest ASCII digit bytes (`0-9`) in a match;
//! * `L`: the longest match in bytes (`regex-syntax`'s `maximum_len`);
//! * `A` (lead): the most bytes before the first digit of a match;
//! * `Z` (trail): the most bytes after the last digit of a match;
//! * `G` (gap): the most bytes between two consecutive digits of a match;
//! * the *gap bytes*: every byte that can lie between two consecutive
//!   digits of a match (a card number: space and dash);
//! * the *span bytes*: every byte a match can hold, digits included (an
//!   IBAN: capitals, digits and space);
//! * `M`: the shortest match in bytes (`minimum_len`);
//! * `I` (inner): the fewest bytes other than digits between the first and
//!   the last digit of a match (an IPv4 address: its three dots; an SSN:
//!   its two separators).
//!
//! The byte sets are over-approximations (a class with a character beyond
//! ASCII adds every byte from `0x80` up), which only makes the windows
//! larger. `L`, `A`, `Z` and `G` may be unbounded. A rule is *windowable* when
//! `k >= 1`, `A` or `L` is bounded and `Z` or `L` is bounded (so that both
//! ends of a window below are finite).
//!
//! A rule whose matches need no digit may still be windowable on colons
//! (an IPv6 address holds at least two, a few bytes apart): everything in
//! this module then reads "colon" for "digit" ([`Marker`]). Digits are
//! tried first.
//!
//! # The windows
//!
//! Let the body's ASCII digits sit at ascending positions `pos[0..n)`, and
//! split them into *clusters*: maximal runs `pos[f..=l]` in which
//! consecutive digits are at most `G` bytes apart (any distance when `G` is
//! unbounded) with only gap bytes between them. For every cluster with at
//! least `k` digits, [`DigitShape::windows`] keeps the interval
//!
//! ```text
//! [ max(pos[f] - A, pos[f+k-1] + 1 - L),  min(pos[l+1-k] + L, pos[l] + 1 + Z, len) )
//! ```
//!
//! (an unbounded quantity drops its term; subtraction saturates at 0),
//! narrowed, when the span bytes are not every byte, to the maximal run of
//! span bytes around the cluster (every byte from `pos[f]` to `pos[l]` is a
//! digit or a gap byte, so a span byte). It drops an interval shorter than
//! `M` (in particular an empty or reversed one: the cluster's digits are
//! too far apart for the length bound), skips a cluster with fewer than `I`
//! bytes other than digits from its first digit to its last, and merges
//! the intervals that overlap, touch or lie at most [`MERGE_GAP`] bytes
//! apart into disjoint windows: a gap that small costs less to search
//! than one more search call, and a window that covers more is still a
//! window of the kind the proof below needs.
//!
//! # Why searching the windows finds exactly the full-text matches
//!
//! *Every match lies inside one window.* Take any match `[s, e)` of the
//! regex anywhere in the body (not only those a leftmost-first iteration
//! reports). The digits inside it are consecutive entries of `pos`, say
//! `pos[i..i+d)` with `d >= k`. Two consecutive ones have only bytes of the
//! match between them, at most `G`, all gap bytes, so all `d` are in one cluster
//! `pos[f..=l]`: `f <= i` and `i + d - 1 <= l`, so `i + k - 1 <= l`. Then
//! `s >= pos[i] - A >= pos[f] - A` (at most `A` bytes before the first
//! digit), `s >= e - L >= pos[i+k-1] + 1 - L >= pos[f+k-1] + 1 - L`,
//! `e <= s + L <= pos[i] + L <= pos[l+1-k] + L` and
//! `e <= pos[i+d-1] + 1 + Z <= pos[l] + 1 + Z` (at most `Z` bytes after the
//! last digit): `[s, e)` lies inside the cluster's interval. Every byte of
//! the match is a span byte and the match holds `pos[i]`, so it lies inside
//! the run of span bytes around `pos[i]`, which is the run around the
//! cluster; and it is at least `M` long, so the narrowed interval is too.
//! From the match's first digit to its last lie at least `I` bytes other
//! than digits, all inside the cluster's span `pos[f]..=pos[l]`, so the
//! cluster is not skipped. A match is
//! never empty (it holds `k >= 1` digits), so it lies inside exactly one of
//! the disjoint windows: the one holding its start. In particular every
//! match that *starts* inside window `[a, b)` also ends by `b`, and no match
//! starts outside every window.
//!
//! *The iteration is the same.* The caller searches each window with the
//! whole body as haystack and the window as the search span
//! (`regex_automata::Input::span`), so look-around such as `\b` or `$` sees
//! the real neighbouring bytes and the candidate matches inside the span are
//! exactly the body's matches that lie inside it. A leftmost-first search
//! from `p` picks the smallest start `s >= p` at which some match begins,
//! then the preferred match among those beginning at `s`. Inside a window
//! `[a, b)` with `a <= p < b`: if the full-text search from `p` finds a match
//! starting before `b`, every match starting there ends by `b`, so the
//! windowed search sees the same starts and the same alternatives and picks
//! the same match; otherwise the windowed search finds nothing, and the
//! full-text search's next match starts in a later window, at or after that
//! window's start, with no match starting in between (in gaps none can).
//! By induction over the matches, iterating window after window (resuming
//! each search at the end of the previous match, as `find_iter` does)
//! reports exactly the matches of one leftmost-first iteration over the
//! whole body, in the same order.
//!
//! The digits of a body are found once per scan, as bit masks ([`Digits`]),
//! and most of the body is ruled out with masks before any digit is taken
//! one by one ([`Narrowing`]): a cluster of a rule that allows only
//! separator bytes between digits lies in a run of the *tight* mask at
//! least `k + I` long, and a match made of few kinds of bytes in a run of
//! them at least `M` long. Only inside such runs, and only in those that
//! hold at least `k` digits and `I` other bytes (a cluster lies in its
//! run), are the clusters built.

use std::ops::Range;

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::byte_mask;

/// Windows closer than this many bytes are searched as one: one search call
/// (about 90 ns) costs about as much as 32 bytes of the lazy DFA's scan.
pub const MERGE_GAP: usize = 32;

/// The byte that a windowable rule's matches are bounded around: called a
/// *digit* in the rest of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// An ASCII digit, `0-9`.
    Digit,
    /// A colon, `:`.
    Colon,
}

impl Marker {
    /// Both markers, in the order they are tried.
    pub const ALL: [Self; 2] = [Self::Digit, Self::Colon];

    /// The first and last byte of the marker's range.
    const fn range(self) -> (u8, u8) {
        match self {
            Self::Digit => (b'0', b'9'),
            Self::Colon => (b':', b':'),
        }
    }

    /// Whether `b` is a marker byte.
    pub const fn is(self, b: u8) -> bool {
        let (first, last) = self.range();
        b.wrapping_sub(first) <= last - first
    }

    /// The marker's index in [`Marker::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Self::Digit => 0,
            Self::Colon => 1,
        }
    }
}

/// What bounds the matches of a windowable rule (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitShape {
    /// Which bytes count as digits.
    pub marker: Marker,
    /// `k`: every match holds at least this many ASCII digits (`>= 1`).
    pub min_digits: usize,
    /// `L`: no match is longer than this many bytes (`None`: unbounded).
    pub max_len: Option<usize>,
    /// `A`: no match has more bytes before its first digit.
    pub lead: Option<usize>,
    /// `Z`: no match has more bytes after its last digit.
    pub trail: Option<usize>,
    /// `G`: no match has more bytes between two consecutive digits.
    pub gap: Option<usize>,
    /// The only bytes besides digits that can lie between two consecutive
    /// digits of a match.
    pub gap_bytes: ByteSet,
    /// The only bytes a match can hold (digits included).
    pub span_bytes: ByteSet,
    /// `M`: no match is shorter than this many bytes.
    pub min_len: usize,
    /// `I`: every match has at least this many bytes other than digits
    /// between its first and its last digit.
    pub min_inner: usize,
    /// How the clusters are looked for.
    pub narrowing: Narrowing,
}

/// How [`Digits`] narrows down where the clusters of a rule can lie before
/// it takes the digits one by one (see there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Narrowing {
    /// In the runs of the tight mask at least `k + I` long: the rule allows
    /// only tight separator bytes between digits, and `k` is at least
    /// [`TIGHT_RUN_MIN`].
    Tight,
    /// In the runs at least `M` long (`M` from [`SPAN_RUN_MIN`] to 64) of bytes in
    /// these ranges (unused slots `(1, 0)`, empty): the bytes a match can
    /// hold, when they are that simple.
    Span([(u8, u8); SPAN_RANGES]),
    /// Nowhere when no two digits have at most `G` bytes between them (`k`
    /// is at least 2 and `G` below 63), else in the whole body.
    Pairs,
    /// In the whole body.
    Whole,
}

impl Narrowing {
    /// The narrowing for a shape with these bounds.
    fn of(shape: &DigitShape) -> Self {
        let k = shape.min_digits;
        if shape.gap_bytes.is_subset(&TIGHT_BYTES) && k >= TIGHT_RUN_MIN {
            Self::Tight
        } else if let Some(ranges) = shape
            .span_bytes
            .ranges()
            .filter(|_| (SPAN_RUN_MIN..=LONG_RUN_MAX).contains(&shape.min_len))
        {
            Self::Span(ranges)
        } else if k >= 2 && shape.gap.is_some_and(|gap| gap < LONG_RUN_MAX - 1) {
            Self::Pairs
        } else {
            Self::Whole
        }
    }
}

/// The most byte ranges a span set may have for [`Digits`] to look for long
/// runs of its bytes first.
pub const SPAN_RANGES: usize = 4;

/// Whether [`DigitShape::windows`] produced windows worth searching one by
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// The windows (possibly none) cover at most half of the body: search
    /// each of them.
    Sparse,
    /// The windows cover more than half of the body: one search over the
    /// whole body costs less and finds the same matches.
    Dense,
}

impl DigitShape {
    /// The shape of a pattern given as its HIR, or `None` when the pattern
    /// is not windowable on any [`Marker`] (a match may hold none, or a
    /// window would have no finite end).
    pub fn of(hir: &Hir) -> Option<Self> {
        Marker::ALL
            .into_iter()
            .find_map(|marker| Self::with(hir, marker))
    }

    /// The shape of a pattern for one marker.
    fn with(hir: &Hir, marker: Marker) -> Option<Self> {
        let min_digits = min_digits(hir, marker);
        let layout = Layout::of(hir, marker);
        let max_len = hir.properties().maximum_len();
        // A match of at most `L` bytes with a digit has at most `L - 1`
        // bytes before or after it, and at most `L - 2` between two.
        let within = |most: Most, spare: usize| {
            let by_len = max_len.map(|len| len.saturating_sub(spare));
            match (most.bound(), by_len) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let shape = Self {
            marker,
            min_digits,
            max_len,
            lead: within(layout.lead.most, 1),
            trail: within(layout.trail.most, 1),
            gap: within(layout.gap.most, 2),
            gap_bytes: layout.gap.bytes,
            span_bytes: layout
                .lead
                .bytes
                .union(layout.gap.bytes)
                .union(layout.trail.bytes)
                .union(ByteSet::range(marker.range().0, marker.range().1)),
            min_len: hir.properties().minimum_len().unwrap_or(0),
            min_inner: Least::of(hir, marker).digits.map_or(0, |d| d.inner),
            narrowing: Narrowing::Whole,
        };
        let shape = Self {
            narrowing: Narrowing::of(&shape),
            ..shape
        };
        let start_bounded = shape.lead.is_some() || shape.max_len.is_some();
        let end_bounded = shape.trail.is_some() || shape.max_len.is_some();
        (min_digits >= 1 && start_bounded && end_bounded).then_some(shape)
    }

    /// For a rule narrowed to the tight mask: the shortest run of it that
    /// can hold one of its clusters, `k + I` bytes (`None` for other
    /// narrowings).
    pub fn tight_run_min(&self) -> Option<usize> {
        (self.narrowing == Narrowing::Tight).then(|| self.min_digits.saturating_add(self.min_inner))
    }

    /// Write to `out` (cleared first) the disjoint, ascending windows of the
    /// body described by `digits` outside which no match of the rule can
    /// lie, and say whether they are worth searching one by one.
    pub fn windows(&self, digits: &mut Digits<'_>, out: &mut Vec<Range<usize>>) -> Coverage {
        out.clear();
        let clusters = digits.clusters(self);
        let data = digits.data;
        let len = data.len();
        let confined = self.span_bytes != ByteSet::ALL;
        // The last run of span bytes walked, `(start, end)`: clusters come
        // in ascending order, so the next one either lies in it or in a
        // later run, and each byte of the body is walked at most once.
        let mut run: Option<(usize, usize)> = None;
        for &[first, kth, kth_last, last] in &digits.buf.clusters[clusters].1 {
            let mut start = match (self.lead, self.max_len) {
                (Some(lead), Some(max_len)) => first
                    .saturating_sub(lead)
                    .max((kth + 1).saturating_sub(max_len)),
                (Some(lead), None) => first.saturating_sub(lead),
                (None, Some(max_len)) => (kth + 1).saturating_sub(max_len),
                (None, None) => unreachable!("a windowable shape bounds the start"),
            };
            let mut end = match (self.max_len, self.trail) {
                (Some(max_len), Some(trail)) => {
                    (kth_last.saturating_add(max_len)).min((last + 1).saturating_add(trail))
                }
                (Some(max_len), None) => kth_last.saturating_add(max_len),
                (None, Some(trail)) => (last + 1).saturating_add(trail),
                (None, None) => unreachable!("a windowable shape bounds the end"),
            }
            .min(len);
            if confined {
                // A match lies in the run of `span_bytes` around its digits,
                // which holds the whole cluster (see the module docs).
                let (run_start, run_end) = match run {
                    Some((run_start, run_end)) if first < run_end => (run_start, run_end),
                    _ => {
                        let mut run_start = first;
                        while run_start > 0 && self.span_bytes.contains(data[run_start - 1]) {
                            run_start -= 1;
                        }
                        let mut run_end = last + 1;
                        while run_end < len && self.span_bytes.contains(data[run_end]) {
                            run_end += 1;
                        }
                        (run_start, run_end)
                    }
                };
                run = Some((run_start, run_end));
                start = start.max(run_start);
                end = end.min(run_end);
            }
            // A cluster whose digits are too spread out for the length bound
            // gives an empty (or reversed) interval, and a run too short
            // for the shortest match a short one: no match fits there.
            if start >= end || end - start < self.min_len {
                continue;
            }
            // Both bounds only grow from one cluster to the next, so only the
            // last window can take the new interval in.
            match out.last_mut() {
                Some(window) if start <= window.end + MERGE_GAP => window.end = window.end.max(end),
                _ => out.push(start..end),
            }
        }
        let covered: usize = out.iter().map(ExactSizeIterator::len).sum();
        if covered.saturating_mul(2) > len {
            Coverage::Dense
        } else {
            Coverage::Sparse
        }
    }
}

/// The minimum number of ASCII digit bytes (`0-9`) in any string that `hir`
/// matches. A lower bound, never more than the truth: a class counts only
/// when everything it matches is an ASCII digit (so Unicode `\d`, which also
/// matches other scripts' digits, counts 0); an alternation counts its
/// poorest branch; a repetition its minimum count of copies; look-around
/// and the empty string count 0.
pub fn min_digits(hir: &Hir, marker: Marker) -> usize {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 0,
        HirKind::Literal(literal) => literal.0.iter().filter(|&&b| marker.is(b)).count(),
        HirKind::Class(class) => usize::from(only_ascii_digits(class, marker)),
        HirKind::Repetition(repetition) => {
            let copies = usize::try_from(repetition.min).unwrap_or(usize::MAX);
            copies.saturating_mul(min_digits(&repetition.sub, marker))
        }
        HirKind::Capture(capture) => min_digits(&capture.sub, marker),
        HirKind::Concat(parts) => parts
            .iter()
            .fold(0, |sum, part| sum.saturating_add(min_digits(part, marker))),
        HirKind::Alternation(branches) => branches
            .iter()
            .map(|branch| min_digits(branch, marker))
            .min()
            .unwrap_or(0),
    }
}

/// Lower bounds on byte counts over the strings a piece of a pattern
/// matches (look-around ignored): the mirror image of [`Layout`]'s upper
/// bounds, for `I`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Least {
    /// The fewest bytes of a string without a digit (`None`: there is no
    /// such string).
    plain: Option<usize>,
    /// Over the strings with a digit (`None`: there is no such string).
    digits: Option<Around>,
}

/// See [`Least`]: each count is a lower bound over the strings with a
/// digit, taken separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Around {
    /// Bytes before the first digit.
    lead: usize,
    /// Bytes other than digits between the first and the last digit.
    inner: usize,
    /// Bytes after the last digit.
    trail: usize,
}

impl Around {
    /// The smaller of each count.
    fn min(self, other: Self) -> Self {
        Self {
            lead: self.lead.min(other.lead),
            inner: self.inner.min(other.inner),
            trail: self.trail.min(other.trail),
        }
    }
}

/// The smaller of two optional bounds; `None` (no string) gives way.
fn least(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Least {
    /// Only the empty string.
    const EMPTY: Self = Self {
        plain: Some(0),
        digits: None,
    };

    /// Lower bounds for the strings `hir` matches.
    fn of(hir: &Hir, marker: Marker) -> Self {
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => Self::EMPTY,
            HirKind::Literal(literal) => {
                let bytes = &literal.0;
                match (
                    bytes.iter().position(|&b| marker.is(b)),
                    bytes.iter().rposition(|&b| marker.is(b)),
                ) {
                    (Some(first), Some(last)) => Self {
                        plain: None,
                        digits: Some(Around {
                            lead: first,
                            inner: bytes[first..=last]
                                .iter()
                                .filter(|&&b| !marker.is(b))
                                .count(),
                            trail: bytes.len() - 1 - last,
                        }),
                    },
                    _ => Self {
                        plain: Some(bytes.len()),
                        digits: None,
                    },
                }
            }
            HirKind::Class(class) => Self {
                // One character: a digit, or one of at least this many
                // bytes.
                plain: (!only_ascii_digits(class, marker))
                    .then(|| class.minimum_len())
                    .flatten(),
                digits: has_ascii_digit(class, marker).then_some(Around {
                    lead: 0,
                    inner: 0,
                    trail: 0,
                }),
            },
            HirKind::Repetition(repetition) if repetition.max == Some(0) => Self::EMPTY,
            HirKind::Repetition(repetition) => {
                let sub = Self::of(&repetition.sub, marker);
                let min = usize::try_from(repetition.min).unwrap_or(usize::MAX);
                let plain = if min == 0 {
                    Some(0)
                } else {
                    sub.plain.map(|p| p.saturating_mul(min))
                };
                // A string with a digit has a copy with one, whose own
                // counts are part of it; when every copy holds a digit,
                // each of the `min` copies adds its inner bytes, and each
                // boundary between two a trail and a lead.
                let digits = sub.digits.map(|d| match sub.plain {
                    None if min >= 2 => Around {
                        inner: d.inner.saturating_mul(min).saturating_add(
                            (d.trail.saturating_add(d.lead)).saturating_mul(min - 1),
                        ),
                        ..d
                    },
                    _ => d,
                });
                Self { plain, digits }
            }
            HirKind::Capture(capture) => Self::of(&capture.sub, marker),
            HirKind::Concat(parts) => parts.iter().fold(Self::EMPTY, |before, part| {
                before.then(Self::of(part, marker))
            }),
            HirKind::Alternation(branches) => branches
                .iter()
                .map(|branch| Self::of(branch, marker))
                .reduce(Self::or)
                .unwrap_or(Self {
                    plain: None,
                    digits: None,
                }),
        }
    }

    /// A string of `self` followed by one of `after`.
    fn then(self, after: Self) -> Self {
        let sum = |a: Option<usize>, b: Option<usize>| Some(a?.saturating_add(b?));
        let plain = sum(self.plain, after.plain);
        // The digits are in the first piece only, the second only, or both.
        let first = self.digits.zip(after.plain).map(|(d, p)| Around {
            trail: d.trail.saturating_add(p),
            ..d
        });
        let second = self.plain.zip(after.digits).map(|(p, d)| Around {
            lead: p.saturating_add(d.lead),
            ..d
        });
        let both = self.digits.zip(after.digits).map(|(a, b)| Around {
            lead: a.lead,
            inner: a
                .inner
                .saturating_add(a.trail)
                .saturating_add(b.lead)
                .saturating_add(b.inner),
            trail: b.trail,
        });
        let digits = [first, second, both]
            .into_iter()
            .flatten()
            .reduce(Around::min);
        Self { plain, digits }
    }

    /// A string of `self` or one of `other`.
    fn or(self, other: Self) -> Self {
        Self {
            plain: least(self.plain, other.plain),
            digits: match (self.digits, other.digits) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// Whether every byte or character `class` can match is an ASCII digit. An
/// empty class (it matches nothing) qualifies; counting it as one digit
/// still under-counts the branch it sits in, which cannot match at all.
fn only_ascii_digits(class: &Class, marker: Marker) -> bool {
    let (first, last) = marker.range();
    match class {
        Class::Unicode(unicode) => unicode
            .ranges()
            .iter()
            .all(|r| r.start() >= char::from(first) && r.end() <= char::from(last)),
        Class::Bytes(bytes) => bytes
            .ranges()
            .iter()
            .all(|r| r.start() >= first && r.end() <= last),
    }
}

/// Whether `class` can match an ASCII digit.
fn has_ascii_digit(class: &Class, marker: Marker) -> bool {
    let (first, last) = marker.range();
    match class {
        Class::Unicode(unicode) => unicode
            .ranges()
            .iter()
            .any(|r| r.start() <= char::from(last) && r.end() >= char::from(first)),
        Class::Bytes(bytes) => bytes
            .ranges()
            .iter()
            .any(|r| r.start() <= last && r.end() >= first),
    }
}

/// The largest value of a byte count over a set of strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Most {
    /// The set is empty (the identity of [`Most::max`]).
    Never,
    /// At most this many bytes.
    At(usize),
    /// No finite bound.
    Unbounded,
}

impl Most {
    fn max(self, other: Self) -> Self {
        match (self, other) {
            (Self::Never, x) | (x, Self::Never) => x,
            (Self::Unbounded, _) | (_, Self::Unbounded) => Self::Unbounded,
            (Self::At(a), Self::At(b)) => Self::At(a.max(b)),
        }
    }

    /// The count for two pieces taken together: `Never` when either piece
    /// never occurs.
    fn plus(self, other: Self) -> Self {
        match (self, other) {
            (Self::Never, _) | (_, Self::Never) => Self::Never,
            (Self::At(a), Self::At(b)) => a.checked_add(b).map_or(Self::Unbounded, Self::At),
            _ => Self::Unbounded,
        }
    }

    /// The count for up to `copies` pieces of this kind in a row (`None`:
    /// any number); zero pieces count 0.
    fn up_to(self, copies: Option<u32>) -> Self {
        match (self, copies) {
            (Self::Never | Self::At(0), _) | (_, Some(0)) => Self::At(0),
            (Self::At(a), Some(n)) => usize::try_from(n)
                .ok()
                .and_then(|n| a.checked_mul(n))
                .map_or(Self::Unbounded, Self::At),
            _ => Self::Unbounded,
        }
    }

    /// As a bound for [`DigitShape`]: `None` when unbounded. `Never` (no
    /// string of that kind) becomes 0, which bounds the empty set too.
    fn bound(self) -> Option<usize> {
        match self {
            Self::Never => Some(0),
            Self::At(n) => Some(n),
            Self::Unbounded => None,
        }
    }
}

/// A set of byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteSet([u64; 4]);

impl ByteSet {
    /// No byte.
    pub const EMPTY: Self = Self([0; 4]);
    /// Every byte.
    pub const ALL: Self = Self([u64::MAX; 4]);

    /// The bytes `first..=last`.
    fn range(first: u8, last: u8) -> Self {
        let mut set = Self::EMPTY;
        for b in first..=last {
            set.0[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        set
    }

    /// The bytes of `bytes`.
    fn of_slice(bytes: &[u8]) -> Self {
        bytes
            .iter()
            .fold(Self::EMPTY, |set, &b| set.union(Self::range(b, b)))
    }

    /// The bytes that the UTF-8 or byte strings `class` matches can hold.
    /// A character beyond ASCII adds every byte from `0x80` up (a superset
    /// of its encoding).
    fn of_class(class: &Class) -> Self {
        match class {
            Class::Bytes(bytes) => bytes.ranges().iter().fold(Self::EMPTY, |set, r| {
                set.union(Self::range(r.start(), r.end()))
            }),
            Class::Unicode(unicode) => unicode.ranges().iter().fold(Self::EMPTY, |set, r| {
                let ascii = match (u8::try_from(r.start()), u8::try_from(r.end())) {
                    (Ok(first), Ok(last)) if last < 0x80 => Self::range(first, last),
                    (Ok(first), _) if first < 0x80 => {
                        Self::range(first, 0x7f).union(Self::range(0x80, 0xff))
                    }
                    _ => Self::range(0x80, 0xff),
                };
                set.union(ascii)
            }),
        }
    }

    /// Whether every byte of the set is in `other`.
    pub const fn is_subset(&self, other: &Self) -> bool {
        let (a, b) = (self.0, other.0);
        a[0] & !b[0] == 0 && a[1] & !b[1] == 0 && a[2] & !b[2] == 0 && a[3] & !b[3] == 0
    }

    /// The set as at most [`SPAN_RANGES`] ranges `(first, last)` (unused
    /// slots `(1, 0)`), or `None` when it has more (or is every byte).
    fn ranges(&self) -> Option<[(u8, u8); SPAN_RANGES]> {
        if *self == Self::ALL {
            return None;
        }
        let mut ranges = [(1, 0); SPAN_RANGES];
        let mut count = 0;
        let mut b = 0usize;
        while b < 256 {
            // Lossless: below 256.
            #[allow(clippy::cast_possible_truncation)]
            let first = b as u8;
            if !self.contains(first) {
                b += 1;
                continue;
            }
            let mut last = first;
            while last < 255 && self.contains(last + 1) {
                last += 1;
            }
            if count == SPAN_RANGES {
                return None;
            }
            ranges[count] = (first, last);
            count += 1;
            b = usize::from(last) + 1;
        }
        Some(ranges)
    }

    /// Whether `b` is in the set.
    #[inline]
    pub const fn contains(&self, b: u8) -> bool {
        self.0[(b >> 6) as usize] & (1 << (b & 63)) != 0
    }

    /// The bytes in either set.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        let (a, b) = (self.0, other.0);
        Self([a[0] | b[0], a[1] | b[1], a[2] | b[2], a[3] | b[3]])
    }

    /// The set without the bytes of `marker`.
    #[must_use]
    fn without(mut self, marker: Marker) -> Self {
        let (first, last) = marker.range();
        for b in first..=last {
            self.0[usize::from(b >> 6)] &= !(1 << (b & 63));
        }
        self
    }
}

/// A byte count bound over a set of strings ([`Most`]) and the bytes those
/// strings can hold: the count says how far apart, the set what may lie in
/// between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stretch {
    most: Most,
    bytes: ByteSet,
}

impl Stretch {
    /// No string.
    const NEVER: Self = Self {
        most: Most::Never,
        bytes: ByteSet::EMPTY,
    };
    /// Only the empty string.
    const NONE: Self = Self {
        most: Most::At(0),
        bytes: ByteSet::EMPTY,
    };

    /// Strings of exactly `bytes`.
    fn of(bytes: &[u8]) -> Self {
        Self {
            most: Most::At(bytes.len()),
            bytes: ByteSet::of_slice(bytes),
        }
    }

    /// Either set of strings.
    fn max(self, other: Self) -> Self {
        Self {
            most: self.most.max(other.most),
            bytes: self.bytes.union(other.bytes),
        }
    }

    /// One string of each set, one after the other.
    fn plus(self, other: Self) -> Self {
        match self.most.plus(other.most) {
            Most::Never => Self::NEVER,
            most => Self {
                most,
                bytes: self.bytes.union(other.bytes),
            },
        }
    }

    /// Up to `copies` strings of the set in a row.
    fn up_to(self, copies: Option<u32>) -> Self {
        match self.most.up_to(copies) {
            Most::At(0) => Self::NONE,
            most => Self {
                most,
                bytes: self.bytes,
            },
        }
    }
}

/// Where the digits sit in the strings a piece of a pattern matches, and
/// which other bytes can sit there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// The strings without a digit.
    plain: Stretch,
    /// What comes before the first digit, over the strings with a digit.
    lead: Stretch,
    /// What comes after the last digit, over the strings with a digit.
    trail: Stretch,
    /// What comes between two consecutive digits of one string.
    gap: Stretch,
}

impl Layout {
    /// The layout of the empty string.
    const EMPTY: Self = Self {
        plain: Stretch::NONE,
        lead: Stretch::NEVER,
        trail: Stretch::NEVER,
        gap: Stretch::NEVER,
    };

    /// Upper bounds for the strings `hir` matches (look-around ignored).
    fn of(hir: &Hir, marker: Marker) -> Self {
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => Self::EMPTY,
            HirKind::Literal(literal) => Self::of_bytes(&literal.0, marker),
            HirKind::Class(class) => {
                let digit = if has_ascii_digit(class, marker) {
                    Stretch::NONE
                } else {
                    Stretch::NEVER
                };
                Self {
                    // A class matches one character; a non-ASCII one holds
                    // no ASCII digit byte (UTF-8 continuation bytes are
                    // >= 0x80).
                    plain: if only_ascii_digits(class, marker) {
                        Stretch::NEVER
                    } else {
                        class.maximum_len().map_or(Stretch::NEVER, |len| Stretch {
                            most: Most::At(len),
                            bytes: ByteSet::of_class(class).without(marker),
                        })
                    },
                    lead: digit,
                    trail: digit,
                    gap: Stretch::NEVER,
                }
            }
            HirKind::Repetition(repetition) => {
                let sub = Self::of(&repetition.sub, marker);
                let max = repetition.max;
                if max == Some(0) {
                    return Self::EMPTY;
                }
                let fewer = |n: u32| max.map(|m| m.saturating_sub(n));
                let plain = match (repetition.min, sub.plain.most) {
                    (0, _) => Stretch::NONE.max(sub.plain.up_to(max)),
                    (_, Most::Never) => Stretch::NEVER,
                    _ => sub.plain.up_to(max),
                };
                // The first (last) digit is in some copy, after (before) up
                // to `max - 1` copies without one; two consecutive digits in
                // different copies have up to `max - 2` such copies between.
                Self {
                    plain,
                    lead: sub.plain.up_to(fewer(1)).plus(sub.lead),
                    trail: sub.trail.plus(sub.plain.up_to(fewer(1))),
                    gap: sub.gap.max(if max == Some(1) {
                        Stretch::NEVER
                    } else {
                        sub.trail.plus(sub.plain.up_to(fewer(2))).plus(sub.lead)
                    }),
                }
            }
            HirKind::Capture(capture) => Self::of(&capture.sub, marker),
            HirKind::Concat(parts) => parts.iter().fold(Self::EMPTY, |before, part| {
                before.then(Self::of(part, marker))
            }),
            HirKind::Alternation(branches) => branches
                .iter()
                .map(|branch| Self::of(branch, marker))
                .reduce(Self::or)
                .unwrap_or(Self::EMPTY),
        }
    }

    fn of_bytes(bytes: &[u8], marker: Marker) -> Self {
        let digits: Vec<usize> = (0..bytes.len()).filter(|&i| marker.is(bytes[i])).collect();
        match (digits.first(), digits.last()) {
            (Some(&first), Some(&last)) => Self {
                plain: Stretch::NEVER,
                lead: Stretch::of(&bytes[..first]),
                trail: Stretch::of(&bytes[last + 1..]),
                gap: digits
                    .windows(2)
                    .map(|pair| Stretch::of(&bytes[pair[0] + 1..pair[1]]))
                    .fold(Stretch::NEVER, Stretch::max),
            },
            _ => Self {
                plain: Stretch::of(bytes),
                ..Self::EMPTY
            },
        }
    }

    /// The layout of a string of `self` followed by one of `after`.
    fn then(self, after: Self) -> Self {
        Self {
            plain: self.plain.plus(after.plain),
            lead: self.lead.max(self.plain.plus(after.lead)),
            trail: after.trail.max(self.trail.plus(after.plain)),
            gap: self.gap.max(after.gap).max(self.trail.plus(after.lead)),
        }
    }

    /// The layout of a string of `self` or one of `other`.
    fn or(self, other: Self) -> Self {
        Self {
            plain: self.plain.max(other.plain),
            lead: self.lead.max(other.lead),
            trail: self.trail.max(other.trail),
            gap: self.gap.max(other.gap),
        }
    }
}

/// The separator bytes of tight regions: every byte below `'0'` (ASCII
/// control characters, white space and `!#$%&'()*+-./`) and from `0x80` up
/// (UTF-8 beyond ASCII, such as Unicode spaces), except
/// [`TIGHT_EXCEPT`]. Letters, the neighbours of digits in hashes and
/// identifiers, are left out; so are the quote and the comma, which
/// separate the numbers of JSON and CSV.
const TIGHT_BELOW: u8 = b'0';

/// See [`TIGHT_BELOW`].
const TIGHT_EXCEPT: [u8; 2] = [b'"', b','];

/// The separator bytes of [`TIGHT_BELOW`] as a set.
const TIGHT_BYTES: ByteSet = ByteSet([
    ((1 << TIGHT_BELOW) - 1) & !(1 << TIGHT_EXCEPT[0]) & !(1 << TIGHT_EXCEPT[1]),
    0,
    u64::MAX,
    u64::MAX,
]);

/// The longest run [`long_runs_into`] looks for: a window of that many bytes
/// from a start in one 64-byte word must fit in that word and the next.
const LONG_RUN_MAX: usize = 64;

/// The shortest runs of the tight mask that are kept: a rule with fewer
/// digits in a match looks at the whole body.
const TIGHT_RUN_MIN: usize = 4;

/// The shortest span runs worth looking for: shorter ones are too common
/// in text to narrow a search down.
const SPAN_RUN_MIN: usize = 8;

/// Write to `masks` (cleared first) the masks of `data`, one `u64` per 64
/// bytes (bit `j` of word `w` for byte `64 * w + j`), of the bytes in
/// `class`, then one zero word.
fn masks_into(data: &[u8], class: byte_mask::Class<'_>, masks: &mut Vec<u64>) {
    masks.clear();
    byte_mask::masks(data, class, masks);
    masks.push(0);
}

/// [`long_runs_into`] as a new vector.
#[cfg(test)]
fn long_runs(masks: &[u64], min_len: usize) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    long_runs_into(masks, min_len, &mut runs);
    runs
}

/// Write to `runs` (cleared first) the maximal runs of set bits of `masks`
/// (as from [`masks_into`]) that are at least `min_len` (1 to
/// [`LONG_RUN_MAX`]) long, as `(start, end)`.
///
/// A run of `min_len` starts at bit `p` of a word when bits `p..p +
/// min_len` of that word and the next are all set, which a few shifts and
/// ands over the two words tell for all 64 starts at once, and for eight
/// words at once with AVX-512 ([`byte_mask::run_starts`]). Only the words
/// with such a start are looked at bit by bit.
fn long_runs_into(masks: &[u64], min_len: usize, runs: &mut Vec<(usize, usize)>) {
    debug_assert!((1..=LONG_RUN_MAX).contains(&min_len));
    runs.clear();
    byte_mask::run_starts(masks, min_len - 1, |w, mut starts| {
        // Starts inside a run found from an earlier word add nothing.
        if let Some(&(_, end)) = runs.last() {
            starts &= after(end, w);
        }
        while starts != 0 {
            let at = 64 * w + starts.trailing_zeros() as usize;
            let (start, end) = run_around(masks, at);
            runs.push((start, end));
            starts &= after(end, w);
        }
    });
}

/// The maximal run of set bits of `masks` (which ends with a zero word)
/// around the set bit `at`, as `(start, end)`.
fn run_around(masks: &[u64], at: usize) -> (usize, usize) {
    let mut w = at >> 6;
    let mut unset = !masks[w] & after(at, w);
    while unset == 0 {
        w += 1;
        unset = !masks[w];
    }
    let end = 64 * w + unset.trailing_zeros() as usize;
    let mut w = at >> 6;
    let mut unset = !masks[w] & !after(at, w);
    while unset == 0 && w > 0 {
        w -= 1;
        unset = !masks[w];
    }
    let start = if unset == 0 {
        0
    } else {
        64 * w + 64 - unset.leading_zeros() as usize
    };
    (start, end)
}

/// The bits of word `w` at positions `end` and later.
#[inline]
fn after(end: usize, w: usize) -> u64 {
    match end.checked_sub(64 * w) {
        Some(inside @ 0..64) => !((1 << inside) - 1),
        Some(_) => 0,
        None => u64::MAX,
    }
}

/// For every set bit of `from`, the set bits of `through` from there on
/// up to the first unset one, and the bit after it, as `from` itself
/// (bitstream "MatchStar": one addition carries each start through its
/// run), for one word of a sequence: `carry` comes from the word before and
/// goes to the next.
#[inline]
fn match_star(from: u64, through: u64, carry: &mut u64) -> u64 {
    let (sum, over) = (from & through).overflowing_add(through);
    let (sum, over_carry) = sum.overflowing_add(*carry);
    *carry = u64::from(over | over_carry);
    (sum ^ through) | from
}

/// A cluster of digits, by the positions of the four digits that bound
/// its windows: the first, the `k`-th, the `k`-th from last, the last.
type Cluster = [usize; 4];

/// What the clusters of a rule depend on: `G`, the bytes allowed between two
/// digits, `k` and `I` (clusters with fewer digits, or fewer other bytes
/// between their first and last digit, are left out), the narrowing and
/// `M`.
type ClusterKey = (Option<usize>, ByteSet, usize, usize, Narrowing, usize);

/// The digits (bytes of a [`Marker`]) of one body and, on demand, the
/// clusters of each rule.
///
/// Finding a rule's clusters digit by digit costs a few nanoseconds per
/// digit, and code, JSON and hashes hold a digit every twenty bytes or
/// less, so most of a body is first ruled out with masks, 64 bytes at a
/// time:
///
/// * a rule whose gap bytes are all separator bytes ([`TIGHT_BELOW`])
///   (card, SSN and phone numbers, IPv4 addresses) has every cluster inside
///   a run of the *tight* mask: digits, and runs of separator bytes that
///   follow a digit. A cluster of `k` digits with `I` other bytes between
///   them needs such a run of at least `k + I` bytes; in hashes, UUIDs and
///   identifiers letters cut the runs short;
/// * a rule whose matches hold few kinds of bytes (an IBAN: capitals,
///   digits, spaces) has every match inside a run of those bytes at least
///   `M` long;
/// * a rule that needs two digits with at most `G` bytes between them
///   (IPv6, on colons) has no cluster where no two are that close;
/// * any other rule looks at the whole body (see [`Narrowing`]).
///
/// Only inside those runs are the digits taken one by one.
#[derive(Debug)]
pub struct Digits<'a> {
    /// The body.
    data: &'a [u8],
    /// The shortest runs of the tight mask that are kept (see
    /// [`Digits::with_tight_min`]).
    tight_min: usize,
    /// Whether `buf.tight` holds the runs of the tight mask yet.
    tight_known: bool,
    /// The masks, runs, clusters and scratch space.
    buf: DigitBuffers,
}

/// The heap buffers of a [`Digits`], empty, to build the next one with
/// ([`Digits::with_buffers`]): scans on one thread reuse them instead of
/// allocating a dozen vectors per body.
#[derive(Debug, Default)]
pub struct DigitBuffers {
    /// The marker bytes, as from [`masks_into`].
    masks: Vec<u64>,
    /// The runs of the tight mask at least `tight_min` long, once computed.
    tight: Vec<(usize, usize)>,
    /// The clusters computed so far.
    clusters: Vec<(ClusterKey, Vec<Cluster>)>,
    /// Scratch space for the positions of the digits of one region.
    positions: Vec<usize>,
    /// Scratch space for the masks and runs a computation needs only
    /// while it runs, and emptied cluster lists to fill again.
    spare_masks: [Vec<u64>; 2],
    spare_runs: Vec<(usize, usize)>,
    spare_clusters: Vec<Vec<Cluster>>,
}

impl DigitBuffers {
    /// The heap memory the buffers hold, in bytes.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let clusters: usize = self
            .clusters
            .iter()
            .map(|(_, list)| list.capacity())
            .sum::<usize>()
            + self.spare_clusters.iter().map(Vec::capacity).sum::<usize>();
        (self.masks.capacity() + self.spare_masks.iter().map(Vec::capacity).sum::<usize>())
            * size_of::<u64>()
            + (self.tight.capacity() + self.spare_runs.capacity()) * size_of::<(usize, usize)>()
            + self.clusters.capacity() * size_of::<(ClusterKey, Vec<Cluster>)>()
            + self.spare_clusters.capacity() * size_of::<Vec<Cluster>>()
            + clusters * size_of::<Cluster>()
            + self.positions.capacity() * size_of::<usize>()
    }
}

impl<'a> Digits<'a> {
    /// Find the digits (bytes of `marker`) of `data`.
    #[cfg(test)]
    pub fn new(data: &'a [u8], marker: Marker) -> Self {
        Self::with_buffers(data, marker, DigitBuffers::default())
    }

    /// Find the digits (bytes of `marker`) of `data`, in the buffers of an
    /// earlier [`Digits`] (see [`Digits::into_buffers`]).
    pub fn with_buffers(data: &'a [u8], marker: Marker, mut buf: DigitBuffers) -> Self {
        let (first, last) = marker.range();
        masks_into(
            data,
            byte_mask::Class::InRanges(&[(first, last)]),
            &mut buf.masks,
        );
        Self {
            data,
            tight_min: TIGHT_RUN_MIN,
            tight_known: false,
            buf,
        }
    }

    /// The buffers, emptied, for the next [`Digits::with_buffers`].
    pub fn into_buffers(self) -> DigitBuffers {
        let mut buf = self.buf;
        buf.masks.clear();
        buf.tight.clear();
        buf.positions.clear();
        buf.spare_runs.clear();
        let lists = buf.clusters.drain(..).map(|(_, mut list)| {
            list.clear();
            list
        });
        buf.spare_clusters.extend(lists);
        buf
    }

    /// Keep only the runs of the tight mask at least `min` long (clamped to
    /// [`TIGHT_RUN_MIN`] ..= [`LONG_RUN_MAX`]): what the rules that will
    /// look at these digits need at least ([`DigitShape::tight_run_min`]),
    /// so that shorter runs are never walked. Call before the first
    /// [`DigitShape::windows`].
    #[must_use]
    pub fn with_tight_min(self, min: usize) -> Self {
        debug_assert!(!self.tight_known);
        Self {
            tight_min: min.clamp(TIGHT_RUN_MIN, LONG_RUN_MAX),
            ..self
        }
    }

    /// The runs of the tight mask at least `tight_min` long: digits, and
    /// the runs of tight separator bytes right after a digit.
    fn tight_runs(&mut self) -> &[(usize, usize)] {
        if !self.tight_known {
            let [separators, tight] = &mut self.buf.spare_masks;
            masks_into(
                self.data,
                byte_mask::Class::BelowOrHighExcept(TIGHT_BELOW, &TIGHT_EXCEPT),
                separators,
            );
            // Per word, in one pass: the bytes right after a digit (`next`),
            // carried through runs of separators (`match_star`), kept where
            // they are separators, plus the digits.
            let (mut shifted, mut carry) = (0, 0);
            tight.clear();
            tight.extend(self.buf.masks.iter().zip(separators.iter()).map(
                |(&digit, &separator)| {
                    let next = (digit << 1) | shifted;
                    shifted = digit >> 63;
                    let reach = match_star(next, separator, &mut carry);
                    digit | (reach & separator)
                },
            ));
            long_runs_into(tight, self.tight_min, &mut self.buf.tight);
            self.tight_known = true;
        }
        &self.buf.tight
    }

    /// Whether two digits have at most `gap` (below 63) bytes between them.
    fn close_pairs(&self, gap: usize) -> bool {
        byte_mask::close_pair(&self.buf.masks, gap)
    }

    /// The number of digits in `start..end`.
    fn count(&self, start: usize, end: usize) -> usize {
        if start >= end {
            return 0;
        }
        (start >> 6..=(end - 1) >> 6)
            .map(|w| (self.buf.masks[w] & after(start, w) & !after(end, w)).count_ones() as usize)
            .sum()
    }

    /// The positions of the digits in `start..end`, ascending.
    fn positions(&self, start: usize, end: usize, out: &mut Vec<usize>) {
        out.clear();
        if start >= end {
            return;
        }
        for w in start >> 6..=(end - 1) >> 6 {
            let mut bits = self.buf.masks[w] & after(start, w) & !after(end, w);
            while bits != 0 {
                // Lossless: at most 63.
                out.push(64 * w + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
    }

    /// The index in `self.buf.clusters` of the clusters of `shape` (those with
    /// at least `k` digits, consecutive ones at most `G` bytes apart with
    /// only its gap bytes between), computed now if needed.
    fn clusters(&mut self, shape: &DigitShape) -> usize {
        let (gap, between, k) = (shape.gap, shape.gap_bytes, shape.min_digits);
        let inner = shape.min_inner;
        let key = (gap, between, k, inner, shape.narrowing, shape.min_len);
        if let Some(at) = self
            .buf
            .clusters
            .iter()
            .position(|(known, _)| *known == key)
        {
            return at;
        }
        let mut pos = std::mem::take(&mut self.buf.positions);
        let mut span_runs = std::mem::take(&mut self.buf.spare_runs);
        let whole;
        let regions: &[(usize, usize)] = if self.buf.masks.iter().all(|&m| m == 0) {
            &[]
        } else {
            match shape.narrowing {
                Narrowing::Tight => {
                    self.tight_runs();
                    &self.buf.tight
                }
                Narrowing::Span(ranges) => {
                    let span = &mut self.buf.spare_masks[0];
                    masks_into(self.data, byte_mask::Class::InRanges(&ranges), span);
                    long_runs_into(span, shape.min_len, &mut span_runs);
                    &span_runs
                }
                Narrowing::Pairs if !self.close_pairs(gap.unwrap_or(0)) => &[],
                Narrowing::Pairs | Narrowing::Whole => {
                    whole = [(0, self.data.len())];
                    &whole
                }
            }
        };
        let shortest = shape.tight_run_min().unwrap_or(0);
        let mut found = self.buf.spare_clusters.pop().unwrap_or_default();
        for &(start, end) in regions {
            // A cluster lies in its region: a tight run shorter than
            // `k + I` bytes (the tight runs are kept from the shortest any
            // rule of the scan needs), or a region with fewer than `k`
            // digits or fewer than `I` other bytes, holds none that is kept.
            if end - start < shortest {
                continue;
            }
            let digits = self.count(start, end);
            if digits < k || end - start - digits < inner {
                continue;
            }
            self.positions(start, end, &mut pos);
            let mut first = 0;
            for i in 1..=pos.len() {
                let joined = i < pos.len() && {
                    let (last, next) = (pos[i - 1], pos[i]);
                    gap.is_none_or(|gap| next - last - 1 <= gap)
                        && self.data[last + 1..next]
                            .iter()
                            .all(|&b| between.contains(b))
                };
                if !joined {
                    // `i - first` digits from `pos[first]` to `pos[i - 1]`.
                    let others = pos[i - 1] + 1 - pos[first] - (i - first);
                    if i - first >= k && others >= inner {
                        found.push([pos[first], pos[first + k - 1], pos[i - k], pos[i - 1]]);
                    }
                    first = i;
                }
            }
        }
        self.buf.spare_runs = span_runs;
        self.buf.positions = pos;
        self.buf.clusters.push((key, found));
        self.buf.clusters.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;
    use regex_automata::util::syntax::{self, Config};

    fn parse(pattern: &str, case_insensitive: bool) -> Hir {
        let config = Config::new().case_insensitive(case_insensitive).utf8(false);
        syntax::parse_with(pattern, &config).unwrap()
    }

    fn k_and_l(pattern: &str) -> (usize, Option<usize>) {
        let hir = parse(pattern, false);
        (
            min_digits(&hir, Marker::Digit),
            hir.properties().maximum_len(),
        )
    }

    #[test]
    fn min_digits_and_max_len_of_sample_patterns() {
        assert_eq!(k_and_l("abc"), (0, Some(3)));
        assert_eq!(k_and_l("a1b22"), (3, Some(5)));
        assert_eq!(k_and_l("[0-9]{3}-[0-9]{2}"), (5, Some(6)));
        assert_eq!(k_and_l("[2-9][0-9]?"), (1, Some(2)));
        // Alternation: the poorest branch.
        assert_eq!(k_and_l("[0-9]{4}|x[0-9]"), (1, Some(4)));
        assert_eq!(k_and_l("12|ab"), (0, Some(2)));
        // Repetition: the minimum number of copies.
        assert_eq!(k_and_l("(?:[0-9]-){2,5}"), (2, Some(10)));
        assert_eq!(k_and_l("(?:[0-9]-)*"), (0, None));
        assert_eq!(k_and_l("[0-9]+"), (1, None));
        // A class with anything besides ASCII digits counts nothing.
        assert_eq!(k_and_l("[0-9a]{3}"), (0, Some(3)));
        assert_eq!(k_and_l("(?-u:[^a-z])"), (0, Some(1)));
        // Unicode `\d` also matches e.g. Arabic-Indic digits (2 bytes each);
        // ASCII `\d` and `[[:digit:]]` are exactly 0-9.
        assert_eq!(k_and_l(r"\d{3}"), (0, Some(12)));
        assert_eq!(k_and_l(r"(?-u:\d){3}"), (3, Some(3)));
        assert_eq!(k_and_l(r"[[:digit:]]{2}"), (2, Some(2)));
        // Look-around and captures.
        assert_eq!(k_and_l(r"(?-u:\b)(?P<n>[0-9]{2})$"), (2, Some(2)));
        // Case folding leaves digits alone.
        let hir = parse("ab[0-9]{2}c", true);
        assert_eq!(min_digits(&hir, Marker::Digit), 2);
        assert_eq!(hir.properties().maximum_len(), Some(5));
        // `\s` in Unicode mode matches up to 3 bytes (U+3000).
        assert_eq!(k_and_l(r"[0-9]\s{1,2}[0-9]"), (2, Some(8)));
    }

    fn shape(pattern: &str) -> Option<(usize, Option<usize>, [Option<usize>; 3])> {
        let s = DigitShape::of(&parse(pattern, false))?;
        Some((s.min_digits, s.max_len, [s.lead, s.trail, s.gap]))
    }

    #[test]
    fn colons_bound_a_rule_without_digits() {
        let ipv6 = DigitShape::of(&parse(
            r"(?-u:\b)(?P<secret>[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?-u:\b)",
            false,
        ))
        .unwrap();
        assert_eq!(ipv6.marker, Marker::Colon);
        assert_eq!(
            (
                ipv6.min_digits,
                ipv6.max_len,
                ipv6.lead,
                ipv6.trail,
                ipv6.gap
            ),
            (2, Some(39), Some(4), Some(4), Some(4))
        );
        // Digits are tried first; a pattern with neither stays unwindowed.
        assert_eq!(
            DigitShape::of(&parse("[0-9]{3}:[0-9]{2}", false)).map(|s| s.marker),
            Some(Marker::Digit)
        );
        assert_eq!(DigitShape::of(&parse("[a-f]{1,4}", false)), None);
        assert_eq!(DigitShape::of(&parse("[a-f:]{1,4}", false)), None);
        // Colons are found as digits are.
        let data = b"fe80::1 and 10:30:00, a:b";
        let expected: Vec<usize> = (0..data.len()).filter(|&i| data[i] == b':').collect();
        assert_eq!(positions(&Digits::new(data, Marker::Colon)), expected);
        assert!(Marker::ALL.iter().all(|m| Marker::ALL[m.index()] == *m));
    }

    #[test]
    fn lead_trail_and_gap_of_sample_patterns() {
        assert_eq!(
            shape("ab12c"),
            Some((2, Some(5), [Some(2), Some(1), Some(0)]))
        );
        assert_eq!(
            shape("[0-9]{3}-[0-9]{4}"),
            Some((7, Some(8), [Some(0), Some(0), Some(1)]))
        );
        // Unbounded around the digits, yet windowable: `L` bounds both ends.
        assert_eq!(
            shape("[a-z]{0,5}[0-9]{2}x?"),
            Some((2, Some(8), [Some(5), Some(1), Some(0)]))
        );
        // Unbounded length, yet windowable: `A`, `Z` and `G` are bounded.
        assert_eq!(
            shape(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3,}"),
            Some((4, None, [Some(0), Some(0), Some(1)]))
        );
        // Digit-free copies of a repetition widen the gap and the trail: up
        // to 3 `x` between two digits, up to 4 after the last ...
        assert_eq!(
            shape("[0-9](?:x|[0-9]){1,4}"),
            Some((1, Some(5), [Some(0), Some(4), Some(3)]))
        );
        // ... and without a bound on the copies nothing bounds a window's end.
        assert_eq!(shape("[0-9](?:x|[0-9])+"), None);
        // Alternation: the largest of the branches.
        assert_eq!(
            shape("x[0-9]|[0-9]yy"),
            Some((1, Some(3), [Some(1), Some(2), Some(0)]))
        );
        // A class with digits and more: a digit, or a non-digit byte.
        assert_eq!(
            shape("[0-9][0-9a]{2}[0-9]"),
            Some((2, Some(4), [Some(0), Some(0), Some(2)]))
        );
        // `\d` (Unicode) holds no required ASCII digit.
        assert_eq!(shape(r"\d{3}"), None);
        // No digit at all, or both ends unbounded.
        assert_eq!(shape("[a-z]{3}"), None);
        assert_eq!(shape("[a-z]+[0-9]{3}"), None);
        assert_eq!(shape("[0-9]{3}[a-z]+"), None);
        // Multibyte non-digits count their bytes.
        assert_eq!(
            shape("é[0-9]"),
            Some((1, Some(3), [Some(2), Some(0), Some(0)]))
        );
        // Each bound is the largest over the branches; optional copies
        // only add gaps.
        assert_eq!(
            shape("[0-9]x{0,9}|[0-9]{4}"),
            Some((1, Some(10), [Some(0), Some(9), Some(0)]))
        );
        assert_eq!(
            shape("[0-9](?:x{0,5}[0-9]){0,2}"),
            Some((1, Some(13), [Some(0), Some(0), Some(5)]))
        );
    }

    fn inner(pattern: &str) -> Option<usize> {
        DigitShape::of(&parse(pattern, false)).map(|s| s.min_inner)
    }

    #[test]
    fn inner_counts_the_fewest_other_bytes_between_first_and_last_digit() {
        // The dots of an IPv4 address; separators that may be left out
        // count nothing.
        assert_eq!(inner(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3,}"), Some(3));
        assert_eq!(inner("[0-9]{3}[ -]?[0-9]{2}"), Some(0));
        assert_eq!(inner("[0-9]{3}-[0-9]{2}-[0-9]{4}"), Some(2));
        // Bytes before the first digit or after the last are not inside.
        assert_eq!(inner("abc[0-9]{2}xyz"), Some(0));
        assert_eq!(inner(r"\([0-9]{3}\) ?[0-9]{3}-[0-9]{4}"), Some(2));
        // Alternation: the poorest branch; a branch without a digit adds
        // its bytes only between digits.
        assert_eq!(inner("[0-9]x[0-9]|[0-9]yy[0-9]"), Some(1));
        assert_eq!(inner("[0-9](?:ab|c)[0-9]"), Some(1));
        assert_eq!(inner("[0-9]+(?:ab)?x"), Some(0));
        // Copies that each hold a digit: inner bytes and the bytes between
        // copies add up; one copy may be the only one with a digit.
        assert_eq!(inner("(?:[0-9]-){3}"), Some(2));
        assert_eq!(inner("(?:x[0-9]y){2,4}"), Some(2));
        assert_eq!(inner("(?:x|[0-9]){4}[0-9]"), Some(0));
        assert_eq!(inner("[0-9](?:z{0}[0-9]){2}"), Some(0));
        // A class that can hold a digit may be one; multibyte characters
        // count their bytes.
        assert_eq!(inner("[0-9][0-9a]{2}[0-9]"), Some(0));
        assert_eq!(inner("[0-9]é[0-9]"), Some(2));
        assert_eq!(inner("[0-9]{2}"), Some(0));
    }

    /// A random pattern over digits, dots, spaces and `a`: literals,
    /// classes, concatenations, alternations and bounded repetitions.
    fn random_pattern(rng: &mut XorShift, depth: u32) -> String {
        const ATOMS: [&str; 8] = ["[0-9]", "1", r"\.", "a", " ", "[a1]", "[. ]", "1a"];
        let mut next = |n: u64| rng.next_u64() % n;
        let choice = if depth == 0 { 0 } else { next(4) };
        match choice {
            0 => ATOMS[usize::try_from(next(8)).unwrap()].to_owned(),
            1 => (0..=next(2))
                .map(|_| random_pattern(rng, depth - 1))
                .collect(),
            2 => format!(
                "(?:{}|{})",
                random_pattern(rng, depth - 1),
                random_pattern(rng, depth - 1)
            ),
            _ => {
                let min = next(3);
                let max = min + next(3);
                format!("(?:{}){{{min},{max}}}", random_pattern(rng, depth - 1))
            }
        }
    }

    #[test]
    fn every_bound_of_a_shape_holds_for_every_short_match() {
        // Every string of up to six bytes over `1. a` that a random pattern
        // matches in full must respect each bound its shape claims.
        let alphabet = b"1. a";
        let mut strings: Vec<Vec<u8>> = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..6 {
            last = last
                .iter()
                .flat_map(|s: &Vec<u8>| {
                    alphabet.iter().map(move |&b| [s.as_slice(), &[b]].concat())
                })
                .collect();
            strings.extend(last.iter().cloned());
        }
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let (mut checked, mut with_inner) = (0, 0);
        for _ in 0..400 {
            // A digit in the middle, so that most patterns have a shape.
            let pattern = format!(
                "{}1{}",
                random_pattern(&mut rng, 2),
                random_pattern(&mut rng, 2)
            );
            let Some(shape) = DigitShape::of(&parse(&pattern, false)) else {
                continue;
            };
            if shape.marker != Marker::Digit {
                continue;
            }
            let whole = regex::bytes::Regex::new(&format!("^(?:{pattern})$")).unwrap();
            for s in strings.iter().filter(|s| whole.is_match(s)) {
                let digits: Vec<usize> = (0..s.len()).filter(|&i| s[i].is_ascii_digit()).collect();
                let (first, last) = (digits[0], digits[digits.len() - 1]);
                let context = format!("{pattern:?} on {:?}", String::from_utf8_lossy(s));
                assert!(digits.len() >= shape.min_digits, "k: {context}");
                assert!(shape.max_len.is_none_or(|l| s.len() <= l), "L: {context}");
                assert!(s.len() >= shape.min_len, "M: {context}");
                assert!(shape.lead.is_none_or(|a| first <= a), "A: {context}");
                assert!(
                    shape.trail.is_none_or(|z| s.len() - 1 - last <= z),
                    "Z: {context}"
                );
                for pair in digits.windows(2) {
                    let between = &s[pair[0] + 1..pair[1]];
                    assert!(shape.gap.is_none_or(|g| between.len() <= g), "G: {context}");
                    assert!(
                        between.iter().all(|&b| shape.gap_bytes.contains(b)),
                        "{context}"
                    );
                }
                assert!(s.iter().all(|&b| shape.span_bytes.contains(b)), "{context}");
                let inner = last + 1 - first - digits.len();
                assert!(inner >= shape.min_inner, "I: {context}");
                checked += 1;
                with_inner += usize::from(shape.min_inner > 0);
            }
        }
        // The patterns gave many matches, some under a positive `I`.
        assert!(checked > 2000 && with_inner > 100, "{checked} {with_inner}");
    }

    #[test]
    fn clusters_with_too_few_other_bytes_inside_are_skipped() {
        // IPv4-like: four digits with three dots between them at least.
        let pattern = r"(?-u:\b)[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?-u:\b)";
        let shape = DigitShape::of(&parse(pattern, false)).unwrap();
        assert_eq!((shape.narrowing, shape.min_inner), (Narrowing::Tight, 3));
        let text = b"year 2024, pi 3.14159265, build 1.2.3 and host 10.0.0.1 ok";
        let host = 47..55;
        assert_eq!(&text[host.clone()], b"10.0.0.1");
        assert_eq!(
            windows_of(text, shape),
            (Coverage::Sparse, vec![(host.start, host.end)])
        );
        // Without the bound the other numbers give windows too (merged
        // into one, they are that close), from pi on: the year alone is
        // shorter than any match.
        let loose = DigitShape {
            min_inner: 0,
            ..shape
        };
        assert_eq!(windows_of(text, loose).1, vec![(14, host.end)]);
    }

    #[test]
    fn positions_are_the_ascii_digits() {
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 200] {
            let data: Vec<u8> = (0..len)
                .map(|i| {
                    if i % 7 == 3 || i % 64 == 63 {
                        b'5'
                    } else {
                        b'x'
                    }
                })
                .collect();
            let expected: Vec<usize> = (0..len).filter(|&i| data[i] == b'5').collect();
            assert_eq!(
                positions(&Digits::new(&data, Marker::Digit)),
                expected,
                "len {len}"
            );
        }
        let mut all = (0..=255u8).collect::<Vec<u8>>();
        all.extend_from_slice(b"0123456789/:\xd9\xa0");
        let expected: Vec<usize> = (0..all.len())
            .filter(|&i| all[i].is_ascii_digit())
            .collect();
        assert_eq!(positions(&Digits::new(&all, Marker::Digit)), expected);
    }

    #[test]
    fn match_star_carries_each_start_through_its_run() {
        // Runs at bits 1-6 and 9-10; starts at 3 and 5 (one run) and 9:
        // bits 3-6 and 9-10, and the bit after each run (7, 11).
        let mut carry = 0;
        assert_eq!(match_star(0x228, 0x67E, &mut carry), 0xEF8);
        assert_eq!(carry, 0);
        // A run across two words: bits 60-63, then 0-2 of the next word.
        assert_eq!(match_star(1 << 61, 0xF << 60, &mut carry), 0xE << 60);
        assert_eq!(carry, 1);
        assert_eq!(match_star(0, 0b111, &mut carry), 0b1111);
        assert_eq!(carry, 0);
    }

    #[test]
    fn long_runs_find_every_run_at_least_that_long() {
        // Bits 2-5, 60-66 (across words) and 100-101, then the zero word.
        let mut masks = vec![0u64; 3];
        for bit in (2..6).chain(60..67).chain(100..102) {
            masks[bit / 64] |= 1 << (bit % 64);
        }
        assert_eq!(long_runs(&masks, 1), [(2, 6), (60, 67), (100, 102)]);
        assert_eq!(long_runs(&masks, 4), [(2, 6), (60, 67)]);
        assert_eq!(long_runs(&masks, 5), [(60, 67)]);
        assert_eq!(long_runs(&masks, 8), []);
    }

    #[test]
    fn clusters_split_where_digits_are_far_apart() {
        let data = body(100, &[10, 12, 13, 20, 80]);
        let mut digits = Digits::new(&data, Marker::Digit);
        // Each cluster as the positions of its first and last digit.
        let spans = |digits: &mut Digits, gap| {
            let at = digits.clusters(&bounds(1, None, [None, None, gap]));
            digits.buf.clusters[at]
                .1
                .iter()
                .map(|c| (c[0], c[3]))
                .collect::<Vec<_>>()
        };
        assert_eq!(spans(&mut digits, Some(6)), [(10, 20), (80, 80)]);
        assert_eq!(
            spans(&mut digits, Some(0)),
            [(10, 10), (12, 13), (20, 20), (80, 80)]
        );
        assert_eq!(spans(&mut digits, None), [(10, 80)]);
        assert_eq!(spans(&mut digits, Some(1)), [(10, 13), (20, 20), (80, 80)]);
        // Each is computed once.
        assert_eq!(spans(&mut digits, Some(6)), [(10, 20), (80, 80)]);
        assert_eq!(digits.buf.clusters.len(), 4);
        assert!(Digits::new(b"none", Marker::Digit).buf.clusters.is_empty());
        let mut empty = Digits::new(b"none", Marker::Digit);
        assert_eq!(spans(&mut empty, Some(3)), []);
    }

    /// Every position `Digits` holds.
    fn positions(digits: &Digits) -> Vec<usize> {
        let mut out = vec![7];
        digits.positions(0, digits.data.len(), &mut out);
        out
    }

    /// A shape with the given `k`, `L` and bounds `[A, Z, G]`.
    fn bounds(
        min_digits: usize,
        max_len: Option<usize>,
        [lead, trail, gap]: [Option<usize>; 3],
    ) -> DigitShape {
        DigitShape {
            marker: Marker::Digit,
            min_digits,
            max_len,
            lead,
            trail,
            gap,
            gap_bytes: ByteSet::ALL,
            span_bytes: ByteSet::ALL,
            min_len: 0,
            min_inner: 0,
            narrowing: Narrowing::Whole,
        }
    }

    /// The coverage and the windows as `(start, end)`, computed into a
    /// vector that held something before.
    fn windows_of(data: &[u8], shape: DigitShape) -> (Coverage, Vec<(usize, usize)>) {
        let mut out = Vec::from([3..4, 5..6]);
        let coverage = shape.windows(&mut Digits::new(data, shape.marker), &mut out);
        (coverage, out.iter().map(|w| (w.start, w.end)).collect())
    }

    /// `len` dots with the digit `5` at each of `digits`.
    fn body(len: usize, digits: &[usize]) -> Vec<u8> {
        let mut data = vec![b'.'; len];
        for &at in digits {
            data[at] = b'5';
        }
        data
    }

    #[test]
    fn length_bound_limits_windows() {
        let only_l = |k, l| bounds(k, Some(l), [None; 3]);
        let data = body(100, &[30, 31]);
        // k = 2, L = 4: [32 - 4, 30 + 4).
        assert_eq!(
            windows_of(&data, only_l(2, 4)),
            (Coverage::Sparse, vec![(28, 34)])
        );
        // Three digits never occur.
        assert_eq!(windows_of(&data, only_l(3, 4)), (Coverage::Sparse, vec![]));
        // Clipped at both ends.
        assert_eq!(windows_of(b"5x5", only_l(2, 3)).1, vec![(0, 3)]);
        assert_eq!(windows_of(b"5xxxxxxxxxx", only_l(1, 2)).1, vec![(0, 2)]);
    }

    #[test]
    fn lead_trail_and_gap_limit_windows() {
        // Clusters (G = 1): {10, 12, 13} and {80}; k = 2 keeps the first.
        let data = body(100, &[10, 12, 13, 80]);
        let shape = bounds(2, None, [Some(3), Some(2), Some(1)]);
        assert_eq!(windows_of(&data, shape).1, vec![(7, 16)]);
        // k = 1 keeps both; they are more than MERGE_GAP apart.
        let shape = bounds(1, None, [Some(3), Some(2), Some(1)]);
        assert_eq!(windows_of(&data, shape).1, vec![(7, 16), (77, 83)]);
        // With L too: [max(10 - 3, 12 + 1 - 5), min(12 + 5, 13 + 1 + 2)).
        let shape = bounds(2, Some(5), [Some(3), Some(2), Some(1)]);
        assert_eq!(windows_of(&data, shape).1, vec![(8, 16)]);
        // G = 0: 12 and 13 form the only cluster with two digits.
        let shape = bounds(2, None, [Some(0), Some(0), Some(0)]);
        assert_eq!(windows_of(&data, shape).1, vec![(12, 14)]);
        // Unbounded gap: one cluster, from 10 to 80.
        let shape = bounds(4, None, [Some(1), Some(1), None]);
        assert_eq!(windows_of(&data, shape).1, vec![(9, 82)]);
    }

    #[test]
    fn windows_merge_across_small_gaps_only() {
        let shape = bounds(1, Some(3), [None, None, Some(0)]);
        // [8, 13) and [13 + MERGE_GAP, ...) merge; one more byte apart does
        // not.
        let near = 10 + 5 + MERGE_GAP;
        let data = body(200, &[10, near]);
        assert_eq!(windows_of(&data, shape).1, vec![(8, near + 3)]);
        let data = body(200, &[10, near + 1]);
        assert_eq!(
            windows_of(&data, shape).1,
            vec![(8, 13), (near - 1, near + 4)]
        );
    }

    #[test]
    fn dense_digits_give_up_on_windows() {
        let data = b"1234567890 and some words after the digits";
        assert_eq!(
            windows_of(data, bounds(1, Some(30), [None; 3])).0,
            Coverage::Dense
        );
        assert_eq!(
            windows_of(data, bounds(1, Some(5), [None; 3])).0,
            Coverage::Sparse
        );
    }
}
