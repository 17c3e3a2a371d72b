//! Which rule keywords occur in an input: a Teddy-style SIMD filter for
//! x86-64 CPUs with AVX-512 VBMI (Intel Ice Lake and later, AMD Zen 4 and
//! later). Elsewhere [`KeywordTeddy::new`] returns `None` and
//! [`crate::RegexTrap`] keeps its scalar filters.
//!
//! Each keyword gets an *anchor*: the whole keyword when it has at most
//! eight bytes, else the eight consecutive bytes of it least likely in
//! ordinary text (or, when the cost estimate below prefers it for the
//! keyword set, at most four bytes). Likelihood comes from a letter-bigram
//! model of English (`text_model.rs`) and a short list of the words that
//! fill chat traffic, and keywords that would share an anchor are pushed
//! apart, since every sharer is compared when the anchor occurs. Anchors are spread over
//! buckets, and each bucket holds anchors of one *class* only: short (one to
//! four bytes), middle (five to seven) or long (eight). A bucket that mixed
//! them would accept any byte in the places its short members leave open, so
//! its long members' later bytes would stop filtering (measured: 128 flags
//! per 4 KiB of chat prose with mixed buckets, 4 with classes apart). The
//! number of bucket groups of each class, and the anchor width (four or
//! eight), are those with the least estimated cost per input byte: table
//! lookups plus flagged positions, whose rate a forward walk of the bigram
//! model estimates for each bucket (see `KeywordTeddy::plan`). Input
//! bytes are folded to six bits, as in the scalar filter (bits 0-4 and bit
//! 6: the two ASCII cases of a letter meet, so the filter is
//! case-insensitive; other collisions only cost false alarms). For each
//! group of eight buckets and each anchor position `k` there is a 64-entry
//! byte table: bit `b` of entry `x` is set when an anchor of bucket `b` of
//! the group can have a byte folding to `x` at position `k`. One `vpermb`
//! looks up 64 input bytes at once, so 64 start positions are tested per
//! step with one lookup per position and group (four for a short group,
//! seven for a middle one, eight for a long one) and three-input logic ops
//! (`vpternlogq`) to AND and OR them: a position is flagged when, in some
//! bucket, every byte from it is accepted. Only then are the input's next
//! bytes looked up in an index of the anchors, and the keywords whose
//! anchor they are compared with the input, exactly and ASCII
//! case-insensitively; each keyword is reported at its first occurrence,
//! and at later ones only while the caller asks for them
//! ([`Then::Again`]). (`vpermb` takes a 64-entry table; the two-table
//! `vpermt2b` with 128 entries, which would spare the fold, measured 1.8x
//! slower here.)
//!
//! The answer is exact, as the scalar filter's: a keyword is reported if and
//! only if it occurs in the input. An occurrence puts its anchor at some
//! position, every byte of the anchor is accepted there by the keyword's
//! bucket, every position of the input is tested (the last block is copied
//! into a zero-padded buffer), and the final comparison removes every false
//! alarm. The unit tests compare it with Aho-Corasick on random keyword sets
//! (on a CPU without VBMI they have nothing to run and say so).
//!
//! This module and `byte_mask.rs` (SSE2 and AVX-512) hold the crate's only
//! `unsafe` code; here it is the AVX-512 intrinsics
//! and unaligned vector loads. Every load reads 64 bytes that lie inside
//! the slice it comes from (the bounds are checked before the loop), and the
//! intrinsics run only after the CPU was seen to support them (see ADR 0012).
#![allow(unsafe_code)]

use crate::keyword_filter::{commonness, fold, folded_weights, Then};
use crate::text_model;

/// Longest anchor in bytes, and the positions a long group looks up.
const ANCHOR: usize = 8;
/// Positions a short group looks up: anchors of up to four bytes.
const SHORT: usize = 4;
/// Positions a middle group looks up: anchors of five to seven bytes (an
/// eighth lookup would accept every byte, since no anchor has one).
const MIDDLE: usize = ANCHOR - 1;
/// Anchor bytes the index is keyed on (fewer for shorter anchors).
const KEY: usize = 4;
/// Start positions tested per step.
const BLOCK: usize = 64;
/// Most groups of one class tried (see [`group_count`]).
const MAX_GROUPS: usize = 8;
/// Estimated cost of one table lookup per block, and of one flagged
/// position (index lookups, comparisons and mispredicted branches), in
/// cycles. Measured on the bench corpus: 104 lookups per block ran at
/// 0.75 ns per byte, and each flag cost about 32 ns.
const LOOKUP_CYCLES: f64 = 1.4;
const FLAG_CYCLES: f64 = 100.0;
/// How much more often than [`TextOdds::flag_rate`] says real text flags a
/// position: the bigram model knows which letters follow which, not which
/// words follow which (measured about 2x on the bench corpus for the
/// eight-byte classes).
const RATE_BIAS: f64 = 2.0;

/// The three kinds of anchor, each in buckets of its own (see the module
/// docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// One to four bytes: groups of four lookups.
    Short,
    /// Five to seven bytes: groups of seven lookups.
    Middle,
    /// Eight bytes.
    Long,
}

impl Class {
    const ALL: [Class; 3] = [Class::Short, Class::Middle, Class::Long];

    fn of(anchor_len: usize) -> Self {
        match anchor_len {
            0..=SHORT => Self::Short,
            ANCHOR => Self::Long,
            _ => Self::Middle,
        }
    }
}

/// The groups for `anchors` (all of one class, `LANES` lookups per group):
/// the count from one to [`MAX_GROUPS`] with the least estimated cost per
/// input byte, lookups plus flagged positions (by [`TextOdds::flag_rate`]), and
/// the estimated share of flagged positions. More groups mean smaller
/// buckets, so fewer unions of accepted bytes that ordinary text fills, at
/// the price of more lookups. With no anchors, no groups.
fn group_count<const LANES: usize>(
    anchors: &[&[u8]],
    odds: &TextOdds,
    noted: Option<&Noted>,
) -> (Vec<Group<LANES>>, f64) {
    if anchors.is_empty() {
        return (Vec::new(), 0.0);
    }
    let sample = noted.map(|n| Sample::new(n, LANES));
    let mut best: Option<(f64, Vec<Group<LANES>>, f64)> = None;
    for count in 1..=MAX_GROUPS {
        let (groups, seen_rate) = assign_buckets::<LANES>(anchors, count, sample.as_ref());
        let rate = RATE_BIAS * odds.flag_rate(&groups) + seen_rate;
        #[allow(clippy::cast_precision_loss)] // small counts
        let cost = (count * LANES) as f64 * LOOKUP_CYCLES / BLOCK as f64 + rate * FLAG_CYCLES;
        if best.as_ref().is_some_and(|(b, ..)| *b <= cost) {
            break;
        }
        best = Some((cost, groups, rate));
    }
    let (_, groups, rate) = best.expect("at least one count tried");
    (groups, rate)
}

/// The bigram model of [`text_model`] as probabilities, and how each
/// folded byte value shares out over its symbols, derived once per filter
/// build for [`TextOdds::flag_rate`].
struct TextOdds {
    /// Probability of each symbol on its own.
    first: [f64; text_model::SYMBOLS],
    /// `next[s][t]`: probability of symbol `t` right after `s`.
    next: [[f64; text_model::SYMBOLS]; text_model::SYMBOLS],
    /// `share[x][s]`: the share of symbol `s` made of bytes that fold to
    /// `x`, by the bytes' [`commonness`] (a digit, white space and other
    /// bytes are each one symbol of many bytes).
    share: [[f64; text_model::SYMBOLS]; 64],
}

impl TextOdds {
    fn new() -> Self {
        use text_model::{symbol, BIGRAM, SYMBOLS, UNIGRAM};
        let normal = |row: &[u8; SYMBOLS]| -> [f64; SYMBOLS] {
            let p = row.map(|cost| (-f64::from(cost) / 4.0).exp2());
            let total: f64 = p.iter().sum();
            p.map(|x| x / total)
        };
        let weight = |b: u8| f64::from(1u32 << commonness(b));
        let mut symbol_weight = [0.0; SYMBOLS];
        for b in 0..=u8::MAX {
            symbol_weight[symbol(b)] += weight(b);
        }
        let mut share = [[0.0; SYMBOLS]; 64];
        for b in 0..=u8::MAX {
            share[usize::from(fold(b))][symbol(b)] += weight(b) / symbol_weight[symbol(b)];
        }
        Self {
            first: normal(&UNIGRAM),
            next: BIGRAM.map(|row| normal(&row)),
            share,
        }
    }

    /// The estimated share of positions of English text where some bucket
    /// of `groups` accepts every byte: for each bucket, the chance that a
    /// run of `LANES` symbols passes it, walked forward one symbol at a
    /// time with the bigram probabilities (so that `t` after `s` counts as
    /// often as it is, not as often as `t` alone).
    fn flag_rate<const LANES: usize>(&self, groups: &[Group<LANES>]) -> f64 {
        use text_model::SYMBOLS;
        let mut total = 0.0;
        for group in groups {
            for bucket in 0..8 {
                // accepts[k][s]: the share of symbol `s` that lane `k` accepts.
                let mut accepts = [[0.0; SYMBOLS]; LANES];
                for (lane, table) in accepts.iter_mut().zip(group) {
                    for (x, share) in self.share.iter().enumerate() {
                        if table[x] & (1 << bucket) != 0 {
                            for (a, s) in lane.iter_mut().zip(share) {
                                *a += s;
                            }
                        }
                    }
                }
                let mut reach: [f64; SYMBOLS] =
                    std::array::from_fn(|s| self.first[s] * accepts[0][s]);
                for lane in &accepts[1..] {
                    reach = std::array::from_fn(|t| {
                        (0..SYMBOLS)
                            .map(|s| reach[s] * self.next[s][t])
                            .sum::<f64>()
                            * lane[t]
                    });
                }
                total += reach.iter().sum::<f64>();
            }
        }
        total
    }
}

/// The lookup tables of one group of eight buckets: `table[k][x]` has bit
/// `b` set when bucket `b` accepts a byte folding to `x` at anchor position
/// `k`.
type Group<const LANES: usize> = [Table; LANES];

/// One 64-entry lookup table, on a cache line of its own. Unaligned, every
/// table load of the scan would straddle two cache lines: where the heap
/// happened to put the tables 16 bytes past a line, the filter's SIMD loop
/// ran 1.3x slower (measured on the bench corpus, same keywords, same
/// input, only the heap layout changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
struct Table([u8; 64]);

impl std::ops::Deref for Table {
    type Target = [u8; 64];

    fn deref(&self) -> &[u8; 64] {
        &self.0
    }
}

impl std::ops::DerefMut for Table {
    fn deref_mut(&mut self) -> &mut [u8; 64] {
        &mut self.0
    }
}

/// One way to build the filter for a keyword set: each keyword's anchor
/// (offset and bytes), the bucket groups (short, then middle and long), the
/// estimated share of flagged positions and the estimated cost per input
/// byte in cycles.
struct Plan<'k> {
    width: usize,
    anchors: Vec<(usize, &'k [u8])>,
    short_groups: Vec<Group<SHORT>>,
    middle_groups: Vec<Group<MIDDLE>>,
    long_groups: Vec<Group<ANCHOR>>,
    flag_rate: f64,
    cost: f64,
}

/// One keyword as the final comparison sees it.
#[derive(Debug, Clone, Copy)]
struct Member {
    /// Keyword id.
    keyword: u32,
    /// Where its bytes start in [`KeywordTeddy::keyword_bytes`].
    offset: u32,
    /// Length in bytes.
    len: u32,
    /// Offset of the anchor inside the keyword.
    anchor_at: u32,
    /// The anchor's bytes (ASCII-lowercased), little-endian, zero-padded.
    anchor: u64,
    /// The bits of a little-endian input word that the anchor covers.
    anchor_mask: u64,
}

/// Slots of the anchor index (a power of two).
const INDEX_BITS: u32 = 12;

/// The slot in [`Index`] of an anchor or of the input word where one may
/// start: a hash of the first `len` bytes (two to four). Anchors of four
/// bytes or more, nearly all of them, are keyed on four, so they share a
/// slot only by chance or by a common start, and a flagged position
/// compares few of them.
fn slot(word: u64, len: usize) -> usize {
    let mask = u32::MAX >> (8 * (KEY - len));
    #[allow(clippy::cast_possible_truncation)] // the low four bytes
    let low = word as u32;
    ((low & mask).wrapping_mul(0x9E37_79B1) >> (32 - INDEX_BITS)) as usize
}

/// Keywords by anchor: the members whose anchor hashes to slot `i` (see
/// [`slot`]) are `members[starts[i]..starts[i + 1]]`.
#[derive(Debug)]
struct Index {
    starts: Vec<u32>,
    members: Vec<Member>,
}

impl Index {
    fn new(by_slot: Vec<Vec<Member>>) -> Self {
        let mut starts = Vec::with_capacity(by_slot.len() + 1);
        let mut members = Vec::new();
        for list in by_slot {
            starts.push(u32::try_from(members.len()).expect("fewer than 2^32 keywords"));
            members.extend(list);
        }
        starts.push(u32::try_from(members.len()).expect("fewer than 2^32 keywords"));
        Self { starts, members }
    }

    fn at(&self, slot: usize) -> &[Member] {
        &self.members[self.starts[slot] as usize..self.starts[slot + 1] as usize]
    }
}

/// Eight bytes as a little-endian word with each ASCII capital lowered,
/// all at once: a byte is a capital when its low seven bits are at least
/// `A` (adding 0x3F carries into bit 7) but not above `Z` (adding 0x25 does
/// not), and its own bit 7 is clear.
const fn lower8(x: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = x & !HIGH;
    let from_a = low7 + 0x3F3F_3F3F_3F3F_3F3F;
    let past_z = low7 + 0x2525_2525_2525_2525;
    let capital = (from_a ^ past_z) & !x & HIGH;
    x | (capital >> 2)
}

/// Bytes `at..at + 8` of `data` as a little-endian word, ASCII-lowercased,
/// zero past the end.
fn lowered_word(data: &[u8], at: usize) -> u64 {
    let mut word = [0u8; ANCHOR];
    if let Some(bytes) = data.get(at..at + ANCHOR) {
        word.copy_from_slice(bytes);
    } else if let Some(rest) = data.get(at..) {
        word[..rest.len()].copy_from_slice(rest);
    }
    lower8(u64::from_le_bytes(word))
}

/// What one scan has already reported, so that a body repeating a keyword's
/// anchor (`aaaa...` against a keyword of `a`s, flagged at every byte)
/// costs a comparison of eight bytes per position, not a keyword comparison
/// (a keyword the caller asked to see again, [`Then::Again`], is compared
/// at each occurrence until the caller is done with it).
#[derive(Debug, Default)]
struct Seen {
    /// One bit per keyword id, the first [`SEEN_INLINE`] on the stack (no
    /// allocation per scan for the built-in packs), the others on the heap
    /// from the first report of one.
    ids: [u64; SEEN_INLINE / 64],
    more: Vec<u64>,
    /// The last eight input bytes (lowercased) whose every keyword was
    /// already reported: the same eight bytes again have nothing left to
    /// find.
    spent_word: Option<u64>,
}

/// Keyword ids whose bit [`Seen`] keeps inline.
const SEEN_INLINE: usize = 1024;

impl Seen {
    fn has(&self, id: usize) -> bool {
        let word = match id.checked_sub(SEEN_INLINE) {
            None => self.ids.get(id / 64),
            Some(beyond) => self.more.get(beyond / 64),
        };
        word.is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    fn add(&mut self, id: usize, keyword_count: usize) {
        let word = match id.checked_sub(SEEN_INLINE) {
            None => &mut self.ids[id / 64],
            Some(beyond) => {
                if self.more.is_empty() {
                    self.more
                        .resize((keyword_count - SEEN_INLINE).div_ceil(64), 0);
                }
                &mut self.more[beyond / 64]
            }
        };
        *word |= 1 << (id % 64);
    }
}

/// The keyword set of one [`crate::RegexTrap`], ready for the SIMD scan.
#[derive(Debug)]
pub struct KeywordTeddy {
    /// The groups of short anchors (see [`Group`]).
    short_groups: Vec<Group<SHORT>>,
    /// The groups of middle anchors that need all seven lookups.
    middle_groups: Vec<Group<MIDDLE>>,
    /// The groups of middle anchors whose last one or two lookups would
    /// accept every byte for every bucket in use (all their anchors have
    /// six or five bytes), without those lookups (see [`trimmed`]).
    six_groups: Vec<Group<6>>,
    five_groups: Vec<Group<5>>,
    /// The groups of long anchors.
    long_groups: Vec<Group<ANCHOR>>,
    /// Keywords whose anchor has four bytes or more, by the hash of the
    /// first four.
    full: Index,
    /// Keywords whose anchor has two or three bytes (short keywords), by the
    /// hash of the first two, and a bit per byte value that starts one.
    short: Index,
    short_first: [u64; 4],
    /// Keywords of one byte (their anchor is the keyword), and a bit per
    /// byte value that starts one.
    singles: Vec<Member>,
    single_first: [u64; 4],
    /// See [`KeywordTeddy::flag_rate`].
    flag_rate: f64,
    /// The anchor width chosen (four or eight): a tuned rebuild keeps it.
    width: usize,
    /// Every keyword, ASCII-lowercased, one after another.
    keyword_bytes: Vec<u8>,
    keyword_count: usize,
}

/// Whether this CPU can run the filter (checked once per build, cheap).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vbmi")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Estimated rarity of a window, in quarter bits: the bigram model of
/// [`crate::text_model`] (it knows that word starts such as `cont` or
/// `syst` are common although each letter is ordinary) plus the per-byte
/// [`commonness`] of the scalar filter (which knows that `\\` or `|` are
/// rare, where the model has one symbol for all punctuation).
fn window_cost(window: &[u8]) -> u32 {
    let bytes: u32 = window.iter().map(|&b| 4 * (9 - commonness(b))).sum();
    // Inside a common word, or common words' ends and starts around a space
    // (`u we` in `you were`).
    let common = window
        .split(|&b| b == b' ')
        .filter(|part| !part.is_empty())
        .all(|part| {
            COMMON_WORDS
                .iter()
                .any(|w| w.windows(part.len()).any(|x| x == part))
        });
    (text_model::cost(window) + bytes).saturating_sub(if common { COMMON_PENALTY } else { 0 })
}

/// Words that fill most of the text the filter sees: the keys and roles of
/// JSON chat bodies, and the most frequent words of English prose. A window
/// inside one of them occurs far more often than its letters suggest.
const COMMON_WORDS: [&[u8]; 40] = [
    b"system",
    b"content",
    b"messages",
    b"role",
    b"user",
    b"assistant",
    b"model",
    b"tool",
    b"function",
    b"response",
    b"request",
    b"you",
    b"your",
    b"were",
    b"with",
    b"that",
    b"this",
    b"have",
    b"from",
    b"they",
    b"what",
    b"will",
    b"would",
    b"there",
    b"their",
    b"about",
    b"which",
    b"when",
    b"could",
    b"other",
    b"should",
    b"please",
    b"thanks",
    b"help",
    b"write",
    b"the",
    b"and",
    b"for",
    b"are",
    b"not",
];

/// Quarter bits taken off a window inside a [`COMMON_WORDS`] entry: enough
/// that any other window of the keyword wins.
const COMMON_PENALTY: u32 = 64;

/// Each keyword's anchor (keywords ASCII-lowercased): the whole keyword
/// when it has at most `width` bytes, else the `width` consecutive bytes
/// least likely in text by [`window_cost`], with its offset. Every keyword
/// whose anchor occurs is compared, so an anchor that several keywords
/// share (`you ` in `you were told`, `you were sent`, ...) costs one
/// comparison per sharer: a second round
/// moves each keyword to the window that is best once that is charged
/// (one bit per doubling of the sharers). Ties go to the last window.
fn choose_anchors(keywords: &[Vec<u8>], width: usize) -> Vec<(usize, &[u8])> {
    fn window(k: &[u8], j: usize, width: usize) -> &[u8] {
        &k[j..k.len().min(j + width)]
    }
    // Keywords of `width` bytes or fewer have one window: themselves.
    let windows = |k: &[u8]| 0..=k.len().saturating_sub(width);
    let mut chosen: Vec<usize> = keywords
        .iter()
        .map(|k| {
            windows(k)
                .max_by_key(|&j| window_cost(window(k, j, width)))
                .unwrap_or(0)
        })
        .collect();
    let mut users: std::collections::HashMap<&[u8], u32> = std::collections::HashMap::new();
    for (k, &j) in keywords.iter().zip(&chosen) {
        *users.entry(window(k, j, width)).or_default() += 1;
    }
    for (k, j_now) in keywords.iter().zip(chosen.iter_mut()) {
        let current = window(k, *j_now, width);
        *users.get_mut(current).expect("counted above") -= 1;
        let charged = |j: usize| {
            let w = window(k, j, width);
            let others = users.get(w).copied().unwrap_or(0);
            // One bit (4 quarter bits) per doubling of the keywords compared.
            i64::from(window_cost(w)) - 4 * i64::from((others + 1).ilog2())
        };
        *j_now = windows(k).max_by_key(|&j| charged(j)).unwrap_or(0);
        *users.entry(window(k, *j_now, width)).or_default() += 1;
    }
    keywords
        .iter()
        .zip(chosen)
        .map(|(k, j)| (j, window(k, j, width)))
        .collect()
}

/// Buckets whose growth on the tuning sample [`assign_buckets`] measures
/// for each anchor: the ones the per-byte estimate likes best.
const SHORTLIST: usize = 8;

/// What a filter saw in the traffic it scanned, to build a better one (see
/// `filter_tuning.rs`): input words (eight bytes, lowercased, little-endian)
/// at positions it flagged where no anchor was, and the number of bytes
/// scanned meanwhile.
#[derive(Default, Clone)]
pub struct Tuning {
    pub words: Vec<u64>,
    pub scanned: u64,
}

/// The words are pieces of traffic: zeroed before their memory is freed.
impl Drop for Tuning {
    fn drop(&mut self) {
        zero(&mut self.words);
    }
}

/// Overwrite `words` (pieces of traffic) before their memory is freed or
/// reused.
pub(crate) fn zero(words: &mut [u64]) {
    words.fill(0);
    std::hint::black_box(&*words);
}

/// Counts only: the words are pieces of traffic.
impl std::fmt::Debug for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tuning")
            .field("words", &self.words.len())
            .field("scanned", &self.scanned)
            .finish()
    }
}

/// Input words at flagged positions where no anchor was (false alarms of
/// the SIMD step), noted during one scan for a [`Tuning`], up to a limit,
/// and how far into the input the noting went.
pub struct Misses {
    pub words: Vec<u64>,
    limit: usize,
    /// Where noting ended short of the input's end: the position of the
    /// word that reached the limit, or where the scan was told to stop.
    noted_to: Option<usize>,
}

/// Counts only: the words are pieces of traffic.
impl std::fmt::Debug for Misses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Misses")
            .field("words", &self.words.len())
            .field("limit", &self.limit)
            .field("noted_to", &self.noted_to)
            .finish()
    }
}

impl Drop for Misses {
    fn drop(&mut self) {
        zero(&mut self.words);
    }
}

impl Misses {
    /// Note at most `limit` words (0: note none).
    pub fn new(limit: usize) -> Self {
        Self {
            // Room for a small limit up front: no reallocation leaves a
            // copy of the words behind.
            words: Vec::with_capacity(limit.min(256)),
            limit,
            noted_to: None,
        }
    }

    /// The bytes of an input of `len` bytes whose false alarms were all
    /// noted: `len` unless the limit was reached or the scan stopped early.
    pub fn covered(&self, len: usize) -> usize {
        self.noted_to.map_or(len, |at| at.min(len))
    }

    fn note(&mut self, word: u64, at: usize) {
        if self.words.len() < self.limit {
            self.words.push(word);
            if self.words.len() == self.limit {
                self.noted_to = Some(at + 1);
            }
        }
    }

    fn stopped(&mut self, at: usize) {
        self.noted_to.get_or_insert(at);
    }
}

/// A [`Tuning`] as the bucket choice reads it: the distinct words, sorted,
/// with how often each was noted (traffic repeats itself, so a few hundred
/// distinct words stand for thousands of notes), and the bytes scanned.
struct Noted {
    words: Vec<u64>,
    counts: Vec<u32>,
    scanned: f64,
}

impl Noted {
    /// `None` when nothing was noted or scanned.
    fn new(tuning: &Tuning) -> Option<Self> {
        if tuning.words.is_empty() || tuning.scanned == 0 {
            return None;
        }
        let mut sorted = tuning.words.clone();
        sorted.sort_unstable();
        let mut words: Vec<u64> = Vec::new();
        let mut counts: Vec<u32> = Vec::new();
        for &w in &sorted {
            match (words.last(), counts.last_mut()) {
                (Some(&last), Some(count)) if last == w => *count += 1,
                _ => {
                    words.push(w);
                    counts.push(1);
                }
            }
        }
        zero(&mut sorted);
        #[allow(clippy::cast_precision_loss)] // byte counts far below 2^52
        let scanned = tuning.scanned as f64;
        Some(Self {
            words,
            counts,
            scanned,
        })
    }
}

impl Drop for Noted {
    fn drop(&mut self) {
        zero(&mut self.words);
    }
}

/// The [`Noted`] words as bit sets for the first `lanes` anchor positions:
/// bit `i` of `set(k, x)` is set when byte `k` of word `i` folds to `x`.
struct Sample<'n> {
    noted: &'n Noted,
    words: usize,
    /// Valid bits of the last word of each set (the bits past the sample
    /// are no word).
    last: u64,
    bits: Vec<u64>,
}

impl<'n> Sample<'n> {
    fn new(noted: &'n Noted, lanes: usize) -> Self {
        let words = noted.words.len().div_ceil(64);
        let mut bits = vec![0u64; lanes * 64 * words];
        for (i, w) in noted.words.iter().enumerate() {
            for (k, &b) in w.to_le_bytes().iter().take(lanes).enumerate() {
                bits[(k * 64 + usize::from(fold(b))) * words + i / 64] |= 1 << (i % 64);
            }
        }
        let last = match noted.words.len() % 64 {
            0 => u64::MAX,
            rest => (1 << rest) - 1,
        };
        Self {
            noted,
            words,
            last,
            bits,
        }
    }

    fn set(&self, k: usize, x: usize) -> &[u64] {
        &self.bits[(k * 64 + x) * self.words..][..self.words]
    }
}

/// The bit sets spell the words out: zeroed too.
impl Drop for Sample<'_> {
    fn drop(&mut self) {
        zero(&mut self.bits);
    }
}

/// The buckets for `anchors` (all of one [`Class`]), as `groups` groups of
/// lookup tables for the first `LANES` anchor positions, and the share of
/// scanned positions that the `sample` of noted words says they would
/// flag (0 without one). Greedy: the anchors most likely to be flagged on their own
/// go first, each into the bucket whose estimated flag rate (product over
/// the positions of the accepted bytes' weight) grows least. With a
/// sample, among the [`SHORTLIST`] buckets that estimate likes best, the one
/// whose estimate plus the sampled words it would newly accept (per byte
/// scanned) grows least: text full of `support` and `developer` then stops
/// meeting a bucket that accepts `s`, `u`, `p`... in its places.
fn assign_buckets<const LANES: usize>(
    anchors: &[&[u8]],
    groups: usize,
    sample: Option<&Sample<'_>>,
) -> (Vec<Group<LANES>>, f64) {
    let weight = folded_weights();
    let own_rate = |anchor: &[u8]| -> f64 {
        (0..LANES)
            .map(|k| anchor.get(k).map_or(1.0, |&b| weight[usize::from(fold(b))]))
            .product()
    };
    let buckets = 8 * groups;
    let mut order: Vec<&[u8]> = anchors.to_vec();
    order.sort_by(|x, y| own_rate(y).total_cmp(&own_rate(x)));
    let mut accepted = vec![[[false; 64]; LANES]; buckets];
    let mut rate = vec![[0.0f64; LANES]; buckets];
    let scanned = sample.map_or(1.0, |s| s.noted.scanned);
    let words = sample.map_or(0, |s| s.words);
    // Per bucket: the sampled words each lane accepts, and how many words
    // every lane accepts.
    let mut lanes_accept = vec![vec![0u64; LANES * words]; buckets];
    let mut sampled = vec![0u64; buckets];
    for anchor in order {
        let grown = |bucket: usize| -> f64 {
            let with: f64 = (0..LANES)
                .map(|k| match anchor.get(k) {
                    None => 1.0,
                    Some(&b) => {
                        let x = usize::from(fold(b));
                        rate[bucket][k]
                            + if accepted[bucket][k][x] {
                                0.0
                            } else {
                                weight[x]
                            }
                    }
                })
                .product();
            with - rate[bucket].iter().product::<f64>()
        };
        let bucket = match sample {
            None => (0..buckets)
                .min_by(|&x, &y| grown(x).total_cmp(&grown(y)))
                .unwrap_or(0),
            Some(sample) => {
                let mut by_bytes: Vec<(f64, usize)> = (0..buckets).map(|b| (grown(b), b)).collect();
                let shortlist = SHORTLIST.min(buckets);
                if shortlist < buckets {
                    by_bytes.select_nth_unstable_by(shortlist - 1, |x, y| x.0.total_cmp(&y.0));
                }
                let (_, bucket, count) = by_bytes[..shortlist]
                    .iter()
                    .map(|&(grown, b)| {
                        let count = accepted_words::<LANES>(sample, &lanes_accept[b], anchor);
                        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
                        let more = (count - sampled[b]) as f64 / scanned;
                        (grown + more, b, count)
                    })
                    .min_by(|x, y| x.0.total_cmp(&y.0))
                    .expect("at least one bucket");
                sampled[bucket] = count;
                bucket
            }
        };
        if let Some(sample) = sample {
            for k in 0..LANES {
                let lane = &mut lanes_accept[bucket][k * words..][..words];
                match anchor.get(k) {
                    None => lane.fill(u64::MAX),
                    Some(&b) => {
                        for (l, s) in lane.iter_mut().zip(sample.set(k, usize::from(fold(b)))) {
                            *l |= s;
                        }
                    }
                }
            }
        }
        for k in 0..LANES {
            match anchor.get(k) {
                None => {
                    accepted[bucket][k] = [true; 64];
                    rate[bucket][k] = 1.0;
                }
                Some(&b) => {
                    let x = usize::from(fold(b));
                    if !accepted[bucket][k][x] {
                        accepted[bucket][k][x] = true;
                        rate[bucket][k] += weight[x];
                    }
                }
            }
        }
    }

    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let seen_rate = sampled.iter().sum::<u64>() as f64 / scanned;
    (tables(&accepted), seen_rate)
}

/// The lookup tables of buckets that accept `accepted[bucket][k][x]`:
/// eight buckets per group.
fn tables<const LANES: usize>(accepted: &[[[bool; 64]; LANES]]) -> Vec<Group<LANES>> {
    let mut tables = vec![[Table([0; 64]); LANES]; accepted.len().div_ceil(8)];
    for (bucket, lanes) in accepted.iter().enumerate() {
        for (k, lane) in lanes.iter().enumerate() {
            for (x, &on) in lane.iter().enumerate() {
                if on {
                    tables[bucket / 8][k][x] |= 1 << (bucket % 8);
                }
            }
        }
    }
    tables
}

/// How many noted words of `sample` a bucket accepts in every lane once
/// `anchor` joins it (`lanes` holds what each lane accepts now; a lane past
/// the anchor accepts every word).
fn accepted_words<const LANES: usize>(sample: &Sample, lanes: &[u64], anchor: &[u8]) -> u64 {
    let words = sample.words;
    let mut count = 0;
    for j in 0..words {
        let mut all = if j + 1 == words {
            sample.last
        } else {
            u64::MAX
        };
        for k in 0..LANES {
            all &= match anchor.get(k) {
                None => u64::MAX,
                Some(&b) => lanes[k * words + j] | sample.set(k, usize::from(fold(b)))[j],
            };
        }
        while all != 0 {
            count += u64::from(sample.noted.counts[j * 64 + all.trailing_zeros() as usize]);
            all &= all - 1;
        }
    }
    count
}

/// `group` without its lookups from `KEEP` on, when each of those accepts
/// every byte for every bucket that is in use (has a member): an AND with
/// them changes nothing. The greedy fills middle groups mostly by anchor
/// length, so groups of five-byte anchors are common (on the built-in
/// packs, four of six middle groups; none needed the seventh lookup).
fn trimmed<const LANES: usize, const KEEP: usize>(group: &Group<LANES>) -> Option<Group<KEEP>> {
    let in_use = group[0].iter().fold(0u8, |acc, &bits| acc | bits);
    group[KEEP..]
        .iter()
        .all(|table| table.iter().all(|&bits| bits & in_use == in_use))
        .then(|| std::array::from_fn(|k| group[k]))
}

impl KeywordTeddy {
    /// Build the filter for `keywords` (each non-empty), or `None` when the
    /// CPU lacks AVX-512 VBMI. Keyword ids in
    /// [`KeywordTeddy::for_each_present`] are indices into this slice.
    ///
    /// # Panics
    /// If a keyword is empty or the keywords exceed 4 GiB in total.
    pub fn new<K: AsRef<[u8]>>(keywords: &[K]) -> Option<Self> {
        supported().then(|| Self::build(keywords))
    }

    /// The plan for anchors of at most `width` bytes (see [`Plan`]). Long
    /// anchors flag less but take twice the lookups and input loads; for
    /// keywords whose four rarest bytes are rare already (most secret
    /// prefixes) four-byte anchors cost less.
    fn plan<'k>(
        keywords: &'k [Vec<u8>],
        width: usize,
        odds: &TextOdds,
        noted: Option<&Noted>,
    ) -> Plan<'k> {
        let anchors = choose_anchors(keywords, width);
        let of_class = |class: Class| -> Vec<&[u8]> {
            anchors
                .iter()
                .map(|&(_, a)| a)
                .filter(|a| Class::of(a.len()) == class)
                .collect()
        };
        let [short, middle, long] = Class::ALL.map(of_class);
        let (short_groups, short_rate) = group_count::<SHORT>(&short, odds, noted);
        let (middle_groups, middle_rate) = group_count::<MIDDLE>(&middle, odds, noted);
        let (long_groups, long_rate) = group_count::<ANCHOR>(&long, odds, noted);
        let flag_rate = short_rate + middle_rate + long_rate;
        // Input loads (each with its fold) cost about one lookup each.
        let inputs = if middle_groups.is_empty() && long_groups.is_empty() {
            SHORT
        } else {
            ANCHOR
        };
        let lookups = inputs
            + SHORT * short_groups.len()
            + MIDDLE * middle_groups.len()
            + ANCHOR * long_groups.len();
        #[allow(clippy::cast_precision_loss)] // small counts
        let cost = lookups as f64 * LOOKUP_CYCLES / BLOCK as f64 + flag_rate * FLAG_CYCLES;
        Plan {
            width,
            anchors,
            short_groups,
            middle_groups,
            long_groups,
            flag_rate,
            cost,
        }
    }

    fn build<K: AsRef<[u8]>>(keywords: &[K]) -> Self {
        Self::build_with(keywords, &[SHORT, ANCHOR], None)
    }

    /// This filter again for the same `keywords`, with the same anchor
    /// width, its buckets chosen with what it and earlier builds saw (see
    /// [`Tuning`]). The answer is as exact as ever: tuning only moves which
    /// positions are flagged for comparison.
    #[must_use]
    pub fn tuned(&self, tuning: &Tuning) -> Self {
        Self::build_with(&self.keywords(), &[self.width], Some(tuning))
    }

    /// The keywords (lowercased) in id order, read back from the index:
    /// each has exactly one member.
    fn keywords(&self) -> Vec<&[u8]> {
        let mut members: Vec<&Member> = (self.full.members.iter())
            .chain(&self.short.members)
            .chain(&self.singles)
            .collect();
        members.sort_unstable_by_key(|m| m.keyword);
        members
            .iter()
            .map(|m| &self.keyword_bytes[m.offset as usize..(m.offset + m.len) as usize])
            .collect()
    }

    /// [`Self::build`] choosing among anchor widths `widths` only.
    fn build_with<K: AsRef<[u8]>>(
        keywords: &[K],
        widths: &[usize],
        tuning: Option<&Tuning>,
    ) -> Self {
        let folded: Vec<Vec<u8>> = keywords
            .iter()
            .map(|k| k.as_ref().to_ascii_lowercase())
            .collect();
        assert!(
            folded.iter().all(|k| !k.is_empty()),
            "keywords must not be empty"
        );
        let odds = TextOdds::new();
        let noted = tuning.and_then(Noted::new);
        let Plan {
            width,
            anchors,
            short_groups,
            middle_groups,
            long_groups,
            flag_rate,
            ..
        } = widths
            .iter()
            .map(|&width| Self::plan(&folded, width, &odds, noted.as_ref()))
            .min_by(|a, b| a.cost.total_cmp(&b.cost))
            .expect("at least one width");
        let mut keyword_bytes = Vec::new();
        let mut full: Vec<Vec<Member>> = vec![Vec::new(); 1 << INDEX_BITS];
        let mut short: Vec<Vec<Member>> = vec![Vec::new(); 1 << INDEX_BITS];
        let mut short_first = [0u64; 4];
        let mut singles = Vec::new();
        let mut single_first = [0u64; 4];
        for (id, k) in folded.iter().enumerate() {
            let (at, bytes) = anchors[id];
            let mut word = [0u8; ANCHOR];
            word[..bytes.len()].copy_from_slice(bytes);
            let member = Member {
                keyword: u32::try_from(id).expect("fewer than 2^32 keywords"),
                offset: u32::try_from(keyword_bytes.len()).expect("keywords under 4 GiB"),
                len: u32::try_from(k.len()).expect("keywords under 4 GiB"),
                anchor_at: u32::try_from(at).expect("keywords under 4 GiB"),
                anchor: u64::from_le_bytes(word),
                anchor_mask: u64::MAX >> (8 * (ANCHOR - bytes.len())),
            };
            keyword_bytes.extend_from_slice(k);
            let first = usize::from(bytes[0]);
            match bytes.len() {
                1 => {
                    single_first[first / 64] |= 1 << (first % 64);
                    singles.push(member);
                }
                KEY.. => full[slot(member.anchor, KEY)].push(member),
                _ => {
                    short_first[first / 64] |= 1 << (first % 64);
                    short[slot(member.anchor, 2)].push(member);
                }
            }
        }
        let (mut five_groups, mut six_groups, mut seven) = (Vec::new(), Vec::new(), Vec::new());
        for group in middle_groups {
            if let Some(five) = trimmed::<MIDDLE, 5>(&group) {
                five_groups.push(five);
            } else if let Some(six) = trimmed::<MIDDLE, 6>(&group) {
                six_groups.push(six);
            } else {
                seven.push(group);
            }
        }
        Self {
            short_groups,
            middle_groups: seven,
            six_groups,
            five_groups,
            long_groups,
            full: Index::new(full),
            short: Index::new(short),
            short_first,
            singles,
            single_first,
            flag_rate,
            width,
            keyword_bytes,
            keyword_count: folded.len(),
        }
    }

    /// Estimated share of input positions that are flagged (from a rough
    /// model of byte frequencies in text, not a measurement).
    pub fn flag_rate(&self) -> f64 {
        self.flag_rate
    }

    /// For tests: positions of `data` that the SIMD step flagged where no
    /// anchor was (what tuning can remove), plus the occurrences reported.
    /// Not every flagged position: an anchor without its keyword, and a
    /// repeat of the last spent word, count for nothing here.
    #[cfg(test)]
    pub(crate) fn flags(&self, data: &[u8]) -> usize {
        let mut misses = Misses::new(usize::MAX);
        let mut anchored = 0usize;
        self.for_each_occurrence_noting(
            data,
            |_, _| {
                anchored += 1;
                Then::Again
            },
            &mut misses,
        );
        misses.words.len() + anchored
    }

    /// Number of keywords.
    pub fn len(&self) -> usize {
        self.keyword_count
    }

    /// Whether there are no keywords.
    pub fn is_empty(&self) -> bool {
        self.keyword_count == 0
    }

    /// Call `found(keyword_id)` once for each keyword that occurs in
    /// `data`. `found` returns `false` to stop the scan early.
    pub fn for_each_present(&self, data: &[u8], mut found: impl FnMut(usize) -> bool) {
        self.for_each_occurrence(
            data,
            |id, _| if found(id) { Then::Next } else { Then::Stop },
        );
    }

    /// Call `found(keyword_id, start)` for occurrences of keywords in `data`,
    /// `start` the occurrence's first byte: for each keyword its first
    /// occurrence, and its next ones while `found` says [`Then::Again`],
    /// until `found` says [`Then::Stop`].
    pub fn for_each_occurrence(&self, data: &[u8], found: impl FnMut(usize, usize) -> Then) {
        self.for_each_occurrence_noting(data, found, &mut Misses::new(0));
    }

    /// [`Self::for_each_occurrence`], noting in `misses` the input words at
    /// flagged positions where no keyword's anchor was.
    pub fn for_each_occurrence_noting(
        &self,
        data: &[u8],
        mut found: impl FnMut(usize, usize) -> Then,
        misses: &mut Misses,
    ) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a `KeywordTeddy` exists only after `supported()` saw
        // AVX-512 F, BW and VBMI on this CPU (see `new`).
        unsafe {
            self.scan_avx512(data, &mut found, misses);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (data, &mut found, misses);
            unreachable!("KeywordTeddy::new returns None off x86-64");
        }
    }

    /// For each flagged position of one block (bit `p` of `positions`:
    /// position `base + p` of `data`): look the input's next bytes up in the
    /// anchor index and compare the keywords whose anchor they are with the
    /// input. `false` when `found` asked to stop. A keyword is reported
    /// once per scan unless `found` asked for its next occurrences too (see
    /// [`Seen`]).
    fn confirm(
        &self,
        data: &[u8],
        base: usize,
        mut positions: u64,
        seen: &mut Seen,
        found: &mut impl FnMut(usize, usize) -> Then,
        misses: &mut Misses,
    ) -> bool {
        while positions != 0 {
            let at = base + positions.trailing_zeros() as usize;
            positions &= positions - 1;
            let word = lowered_word(data, at);
            if seen.spent_word == Some(word) {
                continue;
            }
            let mut spent = true;
            let mut anchored = false;
            let first = usize::from(word.to_le_bytes()[0]);
            let starts = |bits: &[u64; 4]| bits[first / 64] & (1 << (first % 64)) != 0;
            let singles: &[Member] = if starts(&self.single_first) {
                &self.singles
            } else {
                &[]
            };
            let short = if starts(&self.short_first) {
                self.short.at(slot(word, 2))
            } else {
                &[]
            };
            let full = self.full.at(slot(word, KEY));
            for m in singles.iter().chain(short).chain(full) {
                if word & m.anchor_mask != m.anchor {
                    continue;
                }
                anchored = true;
                let id = m.keyword as usize;
                if seen.has(id) {
                    continue;
                }
                let Some((start, window)) = at
                    .checked_sub(m.anchor_at as usize)
                    .and_then(|start| Some((start, data.get(start..start + m.len as usize)?)))
                else {
                    spent = false;
                    continue;
                };
                let keyword = &self.keyword_bytes[m.offset as usize..(m.offset + m.len) as usize];
                if !window.eq_ignore_ascii_case(keyword) {
                    spent = false;
                    continue;
                }
                match found(id, start) {
                    Then::Next => seen.add(id, self.keyword_count),
                    Then::Again => spent = false,
                    Then::Stop => return false,
                }
            }
            if !anchored {
                misses.note(word, at);
            }
            if spent {
                seen.spent_word = Some(word);
            }
        }
        true
    }

    /// The SIMD scan: whole blocks straight from `data`, the rest from a
    /// zero-padded copy.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VBMI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    unsafe fn scan_avx512(
        &self,
        data: &[u8],
        found: &mut impl FnMut(usize, usize) -> Then,
        misses: &mut Misses,
    ) {
        if self.middle_groups.is_empty()
            && self.six_groups.is_empty()
            && self.five_groups.is_empty()
            && self.long_groups.is_empty()
        {
            // SAFETY: as for this function.
            unsafe { self.scan_inputs::<SHORT>(data, found, misses) }
        } else {
            // SAFETY: as for this function.
            unsafe { self.scan_inputs::<ANCHOR>(data, found, misses) }
        }
    }

    /// [`Self::scan_avx512`] loading `INPUTS` shifted copies of each block
    /// (four when every anchor is short).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VBMI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    unsafe fn scan_inputs<const INPUTS: usize>(
        &self,
        data: &[u8],
        found: &mut impl FnMut(usize, usize) -> Then,
        misses: &mut Misses,
    ) {
        let mut seen = Seen::default();
        let mut base = 0;
        // A block at `base` reads data[base + k .. base + k + 64] for k < 8.
        while base + BLOCK + ANCHOR - 1 <= data.len() {
            // SAFETY: the bound above keeps all eight loads inside `data`.
            let positions = unsafe { self.block::<INPUTS>(data.as_ptr().add(base), u64::MAX) };
            if positions != 0 && !self.confirm(data, base, positions, &mut seen, found, misses) {
                misses.stopped(base + BLOCK);
                return;
            }
            base += BLOCK;
        }
        let rest = data.len() - base;
        if rest == 0 {
            return;
        }
        // At most BLOCK + ANCHOR - 2 bytes are left: copy them after which
        // the buffer is zero (an anchor shorter than eight bytes accepts any
        // byte past its end; its comparison then fails for lack of input).
        let mut padded = [0u8; 2 * BLOCK + ANCHOR];
        padded[..rest].copy_from_slice(&data[base..]);
        let mut offset = 0;
        while offset < rest {
            let live = (rest - offset).min(BLOCK);
            let mask = if live == BLOCK {
                u64::MAX
            } else {
                (1u64 << live) - 1
            };
            // SAFETY: offset < 2 * BLOCK - ANCHOR + 2, so the eight loads of
            // 64 bytes end inside `padded` (2 * BLOCK + ANCHOR bytes).
            let positions = unsafe { self.block::<INPUTS>(padded.as_ptr().add(offset), mask) };
            if positions != 0
                && !self.confirm(data, base + offset, positions, &mut seen, found, misses)
            {
                misses.stopped(base + offset + BLOCK);
                return;
            }
            offset += BLOCK;
        }
    }

    /// Test the 64 start positions at `ptr` (only those in `mask`): the
    /// flagged ones, as bits.
    ///
    /// # Safety
    /// `ptr .. ptr + BLOCK + ANCHOR - 1` must be readable, and the CPU must
    /// support AVX-512 F, BW and VBMI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    #[inline]
    unsafe fn block<const INPUTS: usize>(&self, ptr: *const u8, mask: u64) -> u64 {
        use std::arch::x86_64::{
            __m512i, _mm512_loadu_si512, _mm512_or_si512, _mm512_permutexvar_epi8,
            _mm512_set1_epi8, _mm512_setzero_si512, _mm512_srli_epi16, _mm512_ternarylogic_epi64,
            _mm512_test_epi8_mask,
        };
        // fold(b) = (b & 0x1F) | ((b >> 1) & 0x20), as a bitwise select of
        // `b` and `b >> 1` under the mask 0x1F; `vpermb` ignores bits 6-7.
        let low5 = _mm512_set1_epi8(0x1F);
        let fold =
            |v: __m512i| _mm512_ternarylogic_epi64::<0xCA>(low5, v, _mm512_srli_epi16::<1>(v));
        // SAFETY (input loads): the caller guarantees BLOCK + ANCHOR - 1
        // readable bytes at `ptr`.
        // Only the first `INPUTS` are loaded; with four, there are no long
        // groups to read the others.
        let input: [__m512i; ANCHOR] = std::array::from_fn(|k| {
            if k < INPUTS {
                fold(unsafe { _mm512_loadu_si512(ptr.add(k).cast()) })
            } else {
                _mm512_setzero_si512()
            }
        });
        let lookup = |table: &[u8; 64], k: usize| {
            // SAFETY: a table is 64 bytes: one load.
            let table = unsafe { _mm512_loadu_si512(table.as_ptr().cast()) };
            _mm512_permutexvar_epi8(input[k], table)
        };
        // A byte of `any` keeps a bucket's bit when every lookup of its
        // group accepted it (0x80: a & b & c; 0xF8: a | (b & c)).
        let mut any = _mm512_setzero_si512();
        for group in &self.short_groups {
            let three = _mm512_ternarylogic_epi64::<0x80>(
                lookup(&group[0], 0),
                lookup(&group[1], 1),
                lookup(&group[2], 2),
            );
            any = _mm512_ternarylogic_epi64::<0xF8>(any, three, lookup(&group[3], 3));
        }
        // The AND of the first five lookups of a middle or long group.
        let first_five = |group: &[Table]| {
            let three = _mm512_ternarylogic_epi64::<0x80>(
                lookup(&group[0], 0),
                lookup(&group[1], 1),
                lookup(&group[2], 2),
            );
            _mm512_ternarylogic_epi64::<0x80>(three, lookup(&group[3], 3), lookup(&group[4], 4))
        };
        for group in &self.five_groups {
            any = _mm512_or_si512(any, first_five(group));
        }
        for group in &self.six_groups {
            let five = first_five(group);
            any = _mm512_ternarylogic_epi64::<0xF8>(any, five, lookup(&group[5], 5));
        }
        for group in &self.middle_groups {
            let five = first_five(group);
            any = _mm512_or_si512(
                any,
                _mm512_ternarylogic_epi64::<0x80>(five, lookup(&group[5], 5), lookup(&group[6], 6)),
            );
        }
        for group in &self.long_groups {
            let five = first_five(group);
            let seven =
                _mm512_ternarylogic_epi64::<0x80>(five, lookup(&group[5], 5), lookup(&group[6], 6));
            any = _mm512_ternarylogic_epi64::<0xF8>(any, seven, lookup(&group[7], 7));
        }
        _mm512_test_epi8_mask(any, any) & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyword_filter::test_support::{
        automaton, occurrences, occurring, reported, reported_occurrences,
    };
    use crate::test_rng::XorShift;

    fn present(filter: &KeywordTeddy, data: &[u8]) -> Vec<usize> {
        reported(|found| filter.for_each_present(data, found))
    }

    fn expected(keywords: &[Vec<u8>], data: &[u8]) -> Vec<usize> {
        occurring(&automaton(keywords), data)
    }

    fn skip_without_vbmi() -> bool {
        if supported() {
            return false;
        }
        eprintln!("skipped: this CPU has no AVX-512 VBMI, so KeywordTeddy is never built here");
        true
    }

    /// The filter with anchors of at most four bytes, and with anchors of
    /// up to eight, whichever the cost model would choose; then both again,
    /// tuned with a sample of words that hold the keywords' own bytes (so
    /// that tuning moves anchors between buckets).
    fn both_plans<K: AsRef<[u8]>>(keywords: &[K]) -> [KeywordTeddy; 4] {
        let mut words = Vec::new();
        for (i, k) in keywords.iter().enumerate() {
            let mut word = [b' '; ANCHOR];
            for (j, w) in word.iter_mut().enumerate() {
                let bytes = k.as_ref();
                *w = bytes[(i + j) % bytes.len()];
            }
            words.extend(std::iter::repeat_n(u64::from_le_bytes(word), 1 + i % 5));
        }
        let tuning = Tuning {
            words,
            scanned: 10_000,
        };
        [
            (SHORT, None),
            (ANCHOR, None),
            (SHORT, Some(&tuning)),
            (ANCHOR, Some(&tuning)),
        ]
        .map(|(width, tuning)| KeywordTeddy::build_with(keywords, &[width], tuning))
    }

    #[test]
    fn sample_counts_each_noted_word_once_per_note() {
        // 70 distinct words (not a multiple of 64), some noted many times.
        let mut rng = XorShift(0xC0FF_EE11);
        let distinct: Vec<u64> = (0..70)
            .map(|_| u64::from_le_bytes(std::array::from_fn(|_| b"abcdeXYZ_-"[rng.below(10)])))
            .collect();
        let mut words = Vec::new();
        for (i, &w) in distinct.iter().enumerate() {
            words.extend(std::iter::repeat_n(w, 1 + i % 4));
        }
        let total = words.len() as u64;
        let tuning = Tuning { words, scanned: 1 };
        let noted = Noted::new(&tuning).expect("words noted");
        assert_eq!(noted.words.len(), 70);
        let sample = Sample::new(&noted, ANCHOR);
        let none_yet = vec![0u64; ANCHOR * sample.words];
        // An empty anchor accepts every word: all notes, and no padding bit.
        assert_eq!(accepted_words::<ANCHOR>(&sample, &none_yet, b""), total);
        for anchor in [&b"ab"[..], b"XYZ", b"a_c-e", b"abcdeXYZ"] {
            let want: u64 = tuning
                .words
                .iter()
                .filter(|w| {
                    let bytes = w.to_le_bytes();
                    anchor.iter().zip(bytes).all(|(&a, b)| fold(a) == fold(b))
                })
                .count() as u64;
            assert_eq!(accepted_words::<ANCHOR>(&sample, &none_yet, anchor), want);
        }
    }

    #[test]
    fn keywords_read_back_in_id_order() {
        if !supported() {
            return;
        }
        let keywords = ["X", "ab", "Tel", "ghp_", "Developer Mode", "x", "sk_live_"];
        let filter = KeywordTeddy::new(&keywords).expect("supported");
        let lowered: Vec<Vec<u8>> = keywords
            .iter()
            .map(|k| k.to_ascii_lowercase().into())
            .collect();
        assert_eq!(filter.keywords(), lowered);
    }

    #[test]
    fn misses_say_how_far_noting_went() {
        let mut misses = Misses::new(2);
        misses.note(1, 10);
        assert_eq!(misses.covered(100), 100);
        misses.note(2, 20);
        misses.note(3, 30);
        assert_eq!(misses.words, [1, 2]);
        assert_eq!(misses.covered(100), 21);
        let mut stopped = Misses::new(64);
        stopped.stopped(128);
        assert_eq!(stopped.covered(4096), 128);
        assert_eq!(stopped.covered(100), 100);
    }

    #[test]
    fn seen_keeps_every_id_inline_or_beyond() {
        let count = SEEN_INLINE + 200;
        let mut seen = Seen::default();
        let ids = [
            0,
            63,
            64,
            SEEN_INLINE - 1,
            SEEN_INLINE,
            SEEN_INLINE + 65,
            count - 1,
        ];
        for &id in &ids {
            assert!(!seen.has(id));
            seen.add(id, count);
            assert!(seen.has(id));
        }
        let set = (0..count).filter(|&id| seen.has(id)).collect::<Vec<_>>();
        assert_eq!(set, ids);
    }

    #[test]
    fn every_lookup_table_starts_a_cache_line() {
        // Built without scanning, so on any CPU.
        let keywords = [
            "password",
            "ignore previous",
            "ab",
            "x",
            "sk_live_",
            "tool_call",
            "secret",
            "apikey",
        ];
        for filter in
            [SHORT, ANCHOR].map(|width| KeywordTeddy::build_with(&keywords, &[width], None))
        {
            let short = filter.short_groups.iter().flatten();
            let middle = filter.middle_groups.iter().flatten();
            let six = filter.six_groups.iter().flatten();
            let five = filter.five_groups.iter().flatten();
            let long = filter.long_groups.iter().flatten();
            let tables: Vec<&Table> = short
                .chain(middle)
                .chain(six)
                .chain(five)
                .chain(long)
                .collect();
            assert!(!tables.is_empty());
            for table in tables {
                assert_eq!(std::ptr::from_ref(table) as usize % 64, 0);
            }
        }
    }

    #[test]
    fn lowers_ascii_capitals_in_every_byte_of_a_word() {
        for b in 0..=u8::MAX {
            for at in 0..8 {
                let mut word = *b"Ab\xc3Z@[`z";
                word[at] = b;
                let expected = u64::from_le_bytes(word.map(|x| x.to_ascii_lowercase()));
                assert_eq!(lower8(u64::from_le_bytes(word)), expected, "{b:#x} at {at}");
            }
        }
    }

    #[test]
    fn long_phrases_take_long_anchors_and_token_prefixes_short_ones() {
        if skip_without_vbmi() {
            return;
        }
        // Hundreds of English phrases: four-byte windows common in prose
        // fill the buckets' tables, so eight-byte anchors pay for their
        // extra lookups.
        let verbs = [
            "ignore",
            "disregard",
            "forget",
            "override",
            "bypass",
            "skip",
            "drop",
        ];
        let whats = [
            "previous",
            "prior",
            "all",
            "your",
            "the above",
            "earlier",
            "any",
            "those",
        ];
        let nouns = [
            "instructions",
            "rules",
            "guidelines",
            "directions",
            "orders",
            "policies",
        ];
        let phrases: Vec<String> = verbs
            .iter()
            .flat_map(|v| whats.iter().map(move |w| format!("{v} {w}")))
            .flat_map(|vw| nouns.iter().map(move |n| format!("{vw} {n}")))
            .collect();
        let filter = KeywordTeddy::new(&phrases).unwrap();
        assert!(filter.short_groups.is_empty() && !filter.long_groups.is_empty());
        assert!(filter.middle_groups.is_empty() && filter.five_groups.is_empty());
        assert!(filter.six_groups.is_empty());
        // Token prefixes with rare bytes: four bytes are rare enough.
        let prefixes: Vec<String> = (0..60).map(|i| format!("q{i:02}x_")).collect();
        let filter = KeywordTeddy::new(&prefixes).unwrap();
        assert!(!filter.short_groups.is_empty() && filter.long_groups.is_empty());
        assert!(filter.middle_groups.is_empty() && filter.five_groups.is_empty());
        assert!(filter.six_groups.is_empty());
    }

    #[test]
    fn none_without_the_cpu_features() {
        assert_eq!(KeywordTeddy::new(&["abc"]).is_some(), supported());
    }

    #[test]
    fn finds_each_keyword_case_insensitively_at_every_offset() {
        if skip_without_vbmi() {
            return;
        }
        let keywords: Vec<Vec<u8>> = ["sk-ant", "ant-", "@", "zzz", "ghp_", "tél", "a"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        for filter in both_plans(&keywords) {
            // Every input length around the block size and every placement.
            for len in [
                0, 1, 3, 4, 63, 64, 65, 66, 67, 68, 71, 72, 127, 128, 131, 135, 136, 200,
            ] {
                for at in 0..len {
                    let mut data = vec![b'.'; len];
                    let word = b"SK-ANT-";
                    for (i, &b) in word.iter().enumerate() {
                        if at + i < len {
                            data[at + i] = b;
                        }
                    }
                    assert_eq!(
                        present(&filter, &data),
                        expected(&keywords, &data),
                        "{len} {at}"
                    );
                }
            }
            assert_eq!(present(&filter, "x Tél".as_bytes()), vec![5]);
            assert_eq!(present(&filter, "x TÉL".as_bytes()), Vec::<usize>::new());
        }
    }

    #[test]
    fn anchors_avoid_common_words_and_each_other() {
        let keywords: Vec<Vec<u8>> = [
            "contact",
            "system prompt",
            "system message",
            "you were told",
            "you were sent",
            "\\\"role",
        ]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
        let anchors = choose_anchors(&keywords, ANCHOR);
        let words: Vec<&[u8]> = anchors.iter().map(|&(_, w)| w).collect();
        // Not the start of `content`, nor inside `system` or `you`.
        assert_ne!(words[0], b"cont");
        for w in &words[1..5] {
            assert!(
                !b"system".windows(4).any(|x| x == *w),
                "{:?}",
                String::from_utf8_lossy(w)
            );
            assert!(!w.starts_with(b"you"), "{:?}", String::from_utf8_lossy(w));
        }
        // Keywords that share a prefix get anchors of their own.
        assert_ne!(words[1], words[2]);
        assert_ne!(words[3], words[4]);
        // A rare byte is worth anchoring on.
        assert!(
            words[5].starts_with(b"\\"),
            "{:?}",
            String::from_utf8_lossy(words[5])
        );
        for (k, &(at, w)) in keywords.iter().zip(&anchors) {
            assert_eq!(&k[at..at + w.len()], w);
        }
    }

    #[test]
    fn agrees_with_aho_corasick_on_many_keywords() {
        if skip_without_vbmi() {
            return;
        }
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut next = move |n: u64| rng.next_u64() % n;
        let alphabet = b"abcAB_-:@+ \xc3\xa9019\xe1\x61";
        let mut pick = |len: u64| -> Vec<u8> {
            (0..len)
                .map(|_| alphabet[usize::try_from(next(alphabet.len() as u64)).unwrap()])
                .collect()
        };
        for count in [1, 7, 70, 300, 1000] {
            let keywords: Vec<Vec<u8>> = (0..count).map(|i| pick(1 + (i % 20))).collect();
            for filter in both_plans(&keywords) {
                for len in [0, 1, 2, 5, 66, 67, 71, 72, 130, 999, 4096] {
                    for _ in 0..8 {
                        let data = pick(len);
                        assert_eq!(
                            present(&filter, &data),
                            expected(&keywords, &data),
                            "{count} keywords, {data:?}"
                        );
                        // Asked for every next occurrence, the filter
                        // reports each one once, where it starts.
                        if count <= 300 {
                            assert_eq!(
                                reported_occurrences(|f| filter.for_each_occurrence(&data, f)),
                                occurrences(&automaton(&keywords), &data),
                                "{count} keywords, {data:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn reports_each_keyword_once_and_stops_when_asked() {
        if skip_without_vbmi() {
            return;
        }
        let filter = KeywordTeddy::new(&["key", "abc", "aaaaaaaa"]).unwrap();
        let data = b"key abc ".repeat(100);
        let mut calls = Vec::new();
        filter.for_each_present(&data, |id| {
            calls.push(id);
            true
        });
        calls.sort_unstable();
        assert_eq!(calls, vec![0, 1]);
        let mut calls = 0;
        filter.for_each_present(&data, |_| {
            calls += 1;
            false
        });
        assert_eq!(calls, 1);
        let mut calls = 0;
        filter.for_each_present(&[b'a'; 1000], |_| {
            calls += 1;
            true
        });
        assert_eq!(calls, 1);
    }
}
