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
//! * `G` (gap): the most bytes between two consecutive digits of a match.
//!
//! `L`, `A`, `Z` and `G` may be unbounded. A rule is *windowable* when
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
//! consecutive digits are at most `G` bytes apart (a single cluster when `G`
//! is unbounded). For every cluster with at least `k` digits,
//! [`DigitShape::windows`] keeps the interval
//!
//! ```text
//! [ max(pos[f] - A, pos[f+k-1] + 1 - L),  min(pos[l+1-k] + L, pos[l] + 1 + Z, len) )
//! ```
//!
//! (an unbounded quantity drops its term; subtraction saturates at 0), and
//! drops an interval that is empty (its digits are too far apart for the
//! length bound, so no match fits) and merges the intervals that overlap,
//! touch or lie at most [`MERGE_GAP`]
//! bytes apart into disjoint windows: a gap that small costs less to search
//! than one more search call, and a window that covers more is still a
//! window of the kind the proof below needs.
//!
//! # Why searching the windows finds exactly the full-text matches
//!
//! *Every match lies inside one window.* Take any match `[s, e)` of the
//! regex anywhere in the body (not only those a leftmost-first iteration
//! reports). The digits inside it are consecutive entries of `pos`, say
//! `pos[i..i+d)` with `d >= k`. Two consecutive ones have only bytes of the
//! match between them, at most `G`, so all `d` are in one cluster
//! `pos[f..=l]`: `f <= i` and `i + d - 1 <= l`, so `i + k - 1 <= l`. Then
//! `s >= pos[i] - A >= pos[f] - A` (at most `A` bytes before the first
//! digit), `s >= e - L >= pos[i+k-1] + 1 - L >= pos[f+k-1] + 1 - L`,
//! `e <= s + L <= pos[i] + L <= pos[l+1-k] + L` and
//! `e <= pos[i+d-1] + 1 + Z <= pos[l] + 1 + Z` (at most `Z` bytes after the
//! last digit): `[s, e)` lies inside the cluster's interval. A match is
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
//! The digits of a body are found once per scan ([`Digits`]), and so are
//! its clusters for each gap bound `G` that a candidate rule asks for; a
//! rule's windows then cost one step per cluster.

use std::ops::Range;

use regex_syntax::hir::{Class, Hir, HirKind};

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
}

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
            lead: within(layout.lead, 1),
            trail: within(layout.trail, 1),
            gap: within(layout.gap, 2),
        };
        let start_bounded = shape.lead.is_some() || shape.max_len.is_some();
        let end_bounded = shape.trail.is_some() || shape.max_len.is_some();
        (min_digits >= 1 && start_bounded && end_bounded).then_some(shape)
    }

    /// Write to `out` (cleared first) the disjoint, ascending windows of the
    /// body described by `digits` outside which no match of the rule can
    /// lie, and say whether they are worth searching one by one.
    pub fn windows(&self, digits: &mut Digits, out: &mut Vec<Range<usize>>) -> Coverage {
        out.clear();
        let k = self.min_digits;
        let len = digits.len;
        let clusters = digits.clusters(self.gap);
        let pos = &digits.positions;
        // Cluster `c` is `pos[starts[c]..starts[c + 1]]`.
        for bounds in digits.clusters[clusters].1.windows(2) {
            let (f, l) = (bounds[0], bounds[1] - 1);
            if l + 1 < f + k {
                continue;
            }
            let start = match (self.lead, self.max_len) {
                (Some(lead), Some(max_len)) => pos[f]
                    .saturating_sub(lead)
                    .max((pos[f + k - 1] + 1).saturating_sub(max_len)),
                (Some(lead), None) => pos[f].saturating_sub(lead),
                (None, Some(max_len)) => (pos[f + k - 1] + 1).saturating_sub(max_len),
                (None, None) => unreachable!("a windowable shape bounds the start"),
            };
            let end = match (self.max_len, self.trail) {
                (Some(max_len), Some(trail)) => {
                    (pos[l + 1 - k].saturating_add(max_len)).min((pos[l] + 1).saturating_add(trail))
                }
                (Some(max_len), None) => pos[l + 1 - k].saturating_add(max_len),
                (None, Some(trail)) => (pos[l] + 1).saturating_add(trail),
                (None, None) => unreachable!("a windowable shape bounds the end"),
            }
            .min(len);
            // A cluster whose digits are too spread out for the length bound
            // gives an empty (or reversed) interval: no match fits there.
            if start >= end {
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

/// Where the digits sit in the strings a piece of a pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Longest string without a digit.
    plain: Most,
    /// Most bytes before the first digit, over the strings with a digit.
    lead: Most,
    /// Most bytes after the last digit, over the strings with a digit.
    trail: Most,
    /// Most bytes between two consecutive digits of one string.
    gap: Most,
}

impl Layout {
    /// The layout of the empty string.
    const EMPTY: Self = Self {
        plain: Most::At(0),
        lead: Most::Never,
        trail: Most::Never,
        gap: Most::Never,
    };

    /// Upper bounds for the strings `hir` matches (look-around ignored).
    fn of(hir: &Hir, marker: Marker) -> Self {
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => Self::EMPTY,
            HirKind::Literal(literal) => Self::of_bytes(&literal.0, marker),
            HirKind::Class(class) => {
                let digit = if has_ascii_digit(class, marker) {
                    Most::At(0)
                } else {
                    Most::Never
                };
                Self {
                    // A class matches one character; a non-ASCII one holds
                    // no ASCII digit byte (UTF-8 continuation bytes are
                    // >= 0x80).
                    plain: if only_ascii_digits(class, marker) {
                        Most::Never
                    } else {
                        class.maximum_len().map_or(Most::Never, Most::At)
                    },
                    lead: digit,
                    trail: digit,
                    gap: Most::Never,
                }
            }
            HirKind::Repetition(repetition) => {
                let sub = Self::of(&repetition.sub, marker);
                let max = repetition.max;
                if max == Some(0) {
                    return Self::EMPTY;
                }
                let fewer = |n: u32| max.map(|m| m.saturating_sub(n));
                let plain = match (repetition.min, sub.plain) {
                    (0, _) => Most::At(0).max(sub.plain.up_to(max)),
                    (_, Most::Never) => Most::Never,
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
                        Most::Never
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
                plain: Most::Never,
                lead: Most::At(first),
                trail: Most::At(bytes.len() - 1 - last),
                gap: digits
                    .windows(2)
                    .map(|pair| Most::At(pair[1] - pair[0] - 1))
                    .fold(Most::Never, Most::max),
            },
            _ => Self {
                plain: Most::At(bytes.len()),
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

/// The ASCII digits of one body and, on demand, their clusters.
#[derive(Debug)]
pub struct Digits {
    /// Positions of the digits, ascending.
    positions: Vec<usize>,
    /// Length of the body in bytes.
    len: usize,
    /// The clusters computed so far, by ascending gap bound (`None`,
    /// unbounded, last): for each, the index in `positions` of the first
    /// digit of every cluster, then `positions.len()`.
    clusters: Vec<(Option<usize>, Vec<usize>)>,
}

impl Digits {
    /// Find the digits (bytes of `marker`) of `data`.
    pub fn new(data: &[u8], marker: Marker) -> Self {
        let mut positions = Vec::with_capacity(data.len() / 16);
        let mut blocks = data.chunks_exact(64);
        for (b, block) in (&mut blocks).enumerate() {
            push_digits(
                marker,
                b * 64,
                block.try_into().expect("64 bytes"),
                &mut positions,
            );
        }
        let tail = blocks.remainder();
        if !tail.is_empty() {
            let mut padded = [0u8; 64];
            padded[..tail.len()].copy_from_slice(tail);
            push_digits(marker, data.len() - tail.len(), &padded, &mut positions);
        }
        Self {
            positions,
            len: data.len(),
            clusters: Vec::new(),
        }
    }

    /// The index in `self.clusters` of the clusters for gap bound `gap`,
    /// computed now if needed: from the clusters of the largest smaller
    /// bound already known (each of its clusters lies within one of the new
    /// ones, so only its starts can start a new one), else from the digits.
    fn clusters(&mut self, gap: Option<usize>) -> usize {
        // `None` (unbounded) orders after every bound.
        let key = |bound: Option<usize>| bound.map_or((1, 0), |g| (0, g));
        let at = self
            .clusters
            .partition_point(|(known, _)| key(*known) < key(gap));
        if self
            .clusters
            .get(at)
            .is_some_and(|(known, _)| *known == gap)
        {
            return at;
        }
        let pos = &self.positions;
        let n = pos.len();
        if n == 0 {
            self.clusters.insert(at, (gap, Vec::new()));
            return at;
        }
        // The starts of the finer clusters, without 0 and the end marker.
        let finer: Option<&[usize]> = at.checked_sub(1).map(|finer| {
            let starts = &self.clusters[finer].1;
            &starts[1..starts.len() - 1]
        });
        let mut starts = vec![0; n + 1];
        let mut count = 1;
        if let Some(gap) = gap {
            // Digit `i` starts a cluster when more than `gap` bytes lie
            // between it and digit `i - 1`. Written branch-free: the slot
            // is kept only when it does.
            let mut consider = |i: usize| {
                starts[count] = i;
                count += usize::from(pos[i] - pos[i - 1] - 1 > gap);
            };
            match finer {
                Some(candidates) => candidates.iter().copied().for_each(&mut consider),
                None => (1..n).for_each(&mut consider),
            }
        }
        starts[count] = n;
        starts.truncate(count + 1);
        starts.shrink_to_fit();
        self.clusters.insert(at, (gap, starts));
        at
    }
}

/// Push `base + j` for each digit (byte of `marker`) `block[j]`. The flags are computed
/// branch-free over fixed-size arrays, which the compiler vectorises; a
/// block without digits (most of them in prose) stops there. Else one
/// multiplication per 8 flag bytes (each 0 or 1) gathers them into 8 bits:
/// flag byte `j` lands on bit `56 + j`, and no two partial products meet, so
/// nothing carries.
#[inline]
fn push_digits(marker: Marker, base: usize, block: &[u8; 64], out: &mut Vec<usize>) {
    let mut flags = [0u8; 64];
    for (flag, &byte) in flags.iter_mut().zip(block) {
        *flag = u8::from(marker.is(byte));
    }
    if flags.iter().fold(0, |any, &flag| any | flag) == 0 {
        return;
    }
    let mut bits = flags
        .chunks_exact(8)
        .enumerate()
        .fold(0u64, |bits, (group, eight)| {
            let eight = u64::from_le_bytes(eight.try_into().expect("8 bytes"));
            bits | ((eight.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * group))
        });
    while bits != 0 {
        // Lossless: at most 63.
        out.push(base + bits.trailing_zeros() as usize);
        bits &= bits - 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(Digits::new(data, Marker::Colon).positions, expected);
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
                Digits::new(&data, Marker::Digit).positions,
                expected,
                "len {len}"
            );
        }
        let mut all = (0..=255u8).collect::<Vec<u8>>();
        all.extend_from_slice(b"0123456789/:\xd9\xa0");
        let expected: Vec<usize> = (0..all.len())
            .filter(|&i| all[i].is_ascii_digit())
            .collect();
        assert_eq!(Digits::new(&all, Marker::Digit).positions, expected);
    }

    #[test]
    fn clusters_split_where_digits_are_far_apart() {
        let mut digits = Digits::new(&body(100, &[10, 12, 13, 20, 80]), Marker::Digit);
        // Each cluster as the indices of its first and last digit.
        let spans = |digits: &mut Digits, gap| {
            let at = digits.clusters(gap);
            let starts = &digits.clusters[at].1;
            starts
                .windows(2)
                .map(|s| (s[0], s[1] - 1))
                .collect::<Vec<_>>()
        };
        assert_eq!(spans(&mut digits, Some(6)), [(0, 3), (4, 4)]);
        assert_eq!(
            spans(&mut digits, Some(0)),
            [(0, 0), (1, 2), (3, 3), (4, 4)]
        );
        assert_eq!(spans(&mut digits, None), [(0, 4)]);
        // Derived from the finer bound 0 now known.
        assert_eq!(spans(&mut digits, Some(1)), [(0, 2), (3, 3), (4, 4)]);
        let bounds: Vec<Option<usize>> = digits.clusters.iter().map(|(g, _)| *g).collect();
        assert_eq!(bounds, [Some(0), Some(1), Some(6), None]);
        assert!(Digits::new(b"none", Marker::Digit).clusters.is_empty());
        let mut empty = Digits::new(b"none", Marker::Digit);
        assert_eq!(spans(&mut empty, Some(3)), []);
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
