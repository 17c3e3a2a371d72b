//! Which rule keywords occur in an input: a bucketed shift-or prefilter.
//!
//! The filter is a small relative of Hyperscan's FDR literal matcher, in
//! safe scalar Rust (the fallback where the AVX-512 filter of
//! [`crate::keyword_teddy`] cannot run). The input is read as a sequence of
//! byte pairs at even offsets (two bytes per step). Each pair is hashed to
//! 12 bits by `fold`, which ignores ASCII case (so the filter is
//! case-insensitive) and merges a few other bytes (which only costs false
//! alarms). Keyword alignments are spread over 16 buckets. A table of 4096
//! `u64` words (32 KiB, resident in L1) says, for every hashed pair, every
//! bucket and every distance (0-3 pairs) from the end of a keyword's
//! *anchor* (at most its first `ANCHOR` bytes), whether some anchor of
//! that bucket can have that pair there. A keyword may start at an even or
//! an odd offset, so both alignments are entered; an anchor is made of whole
//! pairs of the keyword when two or more fit (at an odd start it skips the
//! keyword's first byte), else a pair half outside the keyword accepts any
//! byte in that half. The scan keeps one `u64` state and shifts in one table
//! word per pair (`state = state << 16 | word`); a clear bit in the top 16
//! bits means every pair of some anchor of that bucket lined up. Only then
//! are the keywords whose anchor ends in the current pair compared with the
//! input, exactly and ASCII case-insensitively.
//!
//! The answer is exact: a keyword is reported if and only if it occurs in
//! the input, compared as an Aho-Corasick automaton built with
//! `ascii_case_insensitive` compares. An occurrence clears its anchor's bit
//! at every distance, so the state cannot miss it (an odd-length input is
//! padded with one byte, which any anchor accepts there); the final
//! comparison removes every false alarm.

/// Longest anchor in bytes: four pairs, one per lane (whole pairs of the
/// keyword; with wildcard halves, 8 bytes at an even start and 7 at an odd
/// one).
const ANCHOR: usize = 8;
/// Lanes (distances from an anchor's last pair) per state word.
const LANES: usize = 4;
/// Buckets (bits per lane).
const BUCKETS: usize = 16;
/// A state below this has a clear bit in its top lane: an alarm.
const ALARM_BELOW: u64 = 0xFFFF << 48;

/// Six bits of a byte: bits 0-4 and bit 6. Dropping bit 5 folds ASCII case
/// (`A` 0x41 and `a` 0x61 meet); dropping bit 7 merges non-ASCII bytes with
/// ASCII ones. Any collision is a false alarm that the exact comparison
/// removes, never a miss.
pub(crate) const fn fold(b: u8) -> u8 {
    (b & 0x1F) | ((b & 0x40) >> 1)
}

/// [`fold`] as a lookup table (one load per byte in the scan loop).
const FOLD: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        #[allow(clippy::cast_possible_truncation)] // b < 256
        {
            table[b] = fold(b as u8);
        }
        b += 1;
    }
    table
};

/// Table index of the byte pair `a b` (12 bits).
fn pair(a: u8, b: u8) -> usize {
    (usize::from(FOLD[usize::from(a)]) << 6) | usize::from(FOLD[usize::from(b)])
}

/// Every folded first half (or second half) of a pair: a wildcard.
const HALVES: std::ops::Range<usize> = 0..64;

/// One keyword alignment as the final comparison sees it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// Keyword id.
    keyword: u32,
    /// Where the keyword's bytes start in [`KeywordFilter::keyword_bytes`].
    offset: u32,
    /// Keyword length in bytes.
    len: u32,
    /// Bit of the keyword's bucket (in the top lane, shifted down).
    bucket_bit: u16,
    /// 1 when the keyword starts one byte after the anchor's first pair.
    odd: u8,
    /// Bytes from the keyword's start back to the start of the pair where
    /// the anchor ends (`2 * pairs before it`, plus 1 when the anchor skips
    /// the keyword's first byte).
    back: u8,
}

/// The keyword set of one [`crate::RegexTrap`], ready to scan.
#[derive(Debug)]
pub struct KeywordFilter {
    /// For each hashed pair: bit `8 * (7 - m) + b` is clear when an anchor
    /// of bucket `b`, in one of its alignments, can have this pair `m` pairs
    /// before its last one, or has fewer than `m + 1` pairs (any pair will
    /// do then).
    table: Box<[u64; 4096]>,
    /// For each hashed pair `i`: the keyword alignments whose anchor can
    /// end in it are `candidates[ends[i]..ends[i + 1]]` (one flat array, so
    /// that an alarm touches one cache line or two, not a `Vec` per pair).
    ends: Vec<u32>,
    candidates: Vec<Candidate>,
    /// Every keyword, ASCII-lowercased, one after another.
    keyword_bytes: Vec<u8>,
    /// Number of keywords.
    keyword_count: usize,
    /// See [`KeywordFilter::alarm_rate`].
    alarm_rate: f64,
}

/// The table indices one pair of an alignment accepts: a byte outside the
/// anchor (`None`) is a wildcard.
fn pair_indices(first: Option<u8>, second: Option<u8>) -> Vec<usize> {
    let halves = |b: Option<u8>| match b {
        Some(b) => vec![usize::from(FOLD[usize::from(b)])],
        None => HALVES.collect(),
    };
    let seconds = halves(second);
    halves(first)
        .into_iter()
        .flat_map(|hi| seconds.iter().map(move |&lo| (hi << 6) | lo))
        .collect()
}

/// One keyword at one alignment (even or odd start), as table entries.
struct Alignment {
    keyword: u32,
    /// 1 when the anchor starts at the keyword's second byte, padded with a
    /// wildcard half in front (the keyword starts at an odd offset).
    odd: u8,
    /// 1 when the anchor skips the keyword's first byte, so that it starts
    /// on a pair boundary with no wildcard half (odd offset, whole pairs).
    skip: u8,
    /// For each distance `m` from the anchor's last pair: the table indices
    /// that pair can hash to.
    lanes: Vec<Vec<usize>>,
}

impl Alignment {
    /// The alignment of `folded` (ASCII-lowercased) starting at an even
    /// (`odd == 0`) or odd offset. The anchor is made of whole pairs of the
    /// keyword when at least two fit in [`ANCHOR`] bytes: a pair with a
    /// wildcard half accepts 64 table indices, which crowds its bucket's
    /// lane and raises false alarms for every keyword of the bucket. Shorter
    /// keywords keep the wildcard halves (two half pairs beat one pair).
    fn new(keyword: u32, folded: &[u8], odd: u8) -> Self {
        let skip = usize::from(odd);
        let whole_pairs = folded.len().saturating_sub(skip).min(ANCHOR) / 2;
        if whole_pairs >= 2 {
            let anchor = &folded[skip..skip + 2 * whole_pairs];
            let lanes = (0..whole_pairs)
                .map(|m| {
                    let k = 2 * (whole_pairs - 1 - m);
                    pair_indices(Some(anchor[k]), Some(anchor[k + 1]))
                })
                .collect();
            return Self {
                keyword,
                odd: 0,
                skip: odd,
                lanes,
            };
        }
        let anchor = &folded[..folded.len().min(ANCHOR - usize::from(odd))];
        // Byte k of the aligned stream is anchor[k - odd], if any.
        let byte = |k: usize| {
            k.checked_sub(usize::from(odd))
                .and_then(|i| anchor.get(i).copied())
        };
        let npairs = (anchor.len() + usize::from(odd)).div_ceil(2);
        let lanes = (0..npairs)
            .map(|m| {
                let k = 2 * (npairs - 1 - m);
                let mut indices = pair_indices(byte(k), byte(k + 1));
                indices.sort_unstable();
                indices.dedup();
                indices
            })
            .collect();
        Self {
            keyword,
            odd,
            skip: 0,
            lanes,
        }
    }
}

/// Rough share of each folded byte value in ordinary text, from
/// [`commonness`]; only used to choose buckets (here and in
/// [`crate::keyword_teddy`]).
pub(crate) fn folded_weights() -> [f64; 64] {
    let mut weights = [0.0; 64];
    for b in 0..=u8::MAX {
        weights[usize::from(fold(b))] += f64::from(1u32 << commonness(b));
    }
    let total: f64 = weights.iter().sum();
    weights.map(|w| w / total)
}

/// How often a byte shows up in benign text, 0 (rare) to 9 (everywhere).
pub(crate) fn commonness(b: u8) -> u32 {
    match b.to_ascii_lowercase() {
        b' ' | b'e' | b't' | b'a' | b'o' | b'i' | b'n' => 9,
        b's' | b'r' | b'h' | b'l' | b'd' | b'c' | b'u' => 8,
        b'm' | b'f' | b'p' | b'g' | b'w' | b'y' | b'b' | b'\n' => 7,
        b'v' | b'k' | b'.' | b',' | b'"' | b'\'' => 6,
        b'0'..=b'9' | b'x' | b'j' | b'q' | b'z' | b'_' | b'-' | b'(' | b')' | b':' | b'/' => 5,
        b'=' | b'{' | b'}' | b'[' | b']' | b'\t' | b';' | b'*' => 4,
        _ => 2,
    }
}

/// Spread alignments over the buckets so that the estimated false-alarm
/// rate stays low: a bucket alarms when each of its lanes sees one of the
/// pairs its members accept there, so members should share pairs. Greedy:
/// the alignments most likely to alarm on their own go first, each into
/// the bucket whose estimated alarm rate grows least.
fn assign_buckets(alignments: &[Alignment]) -> (Vec<usize>, f64) {
    let weights = folded_weights();
    let pair_weight = |index: usize| weights[index >> 6] * weights[index & 63];
    let own_rate = |a: &Alignment| -> f64 {
        a.lanes
            .iter()
            .map(|lane| lane.iter().map(|&i| pair_weight(i)).sum::<f64>())
            .product()
    };
    let mut order: Vec<usize> = (0..alignments.len()).collect();
    order.sort_by(|&x, &y| own_rate(&alignments[y]).total_cmp(&own_rate(&alignments[x])));

    // Per bucket and lane: which indices are accepted (and their weight).
    let mut accepted = vec![vec![vec![false; 4096]; LANES]; BUCKETS];
    let mut lane_rate = [[0.0f64; LANES]; BUCKETS];
    let mut used = [false; BUCKETS];
    let mut out = vec![0; alignments.len()];
    for i in order {
        let alignment = &alignments[i];
        let rate_with = |bucket: usize| -> f64 {
            (0..LANES)
                .map(|m| match alignment.lanes.get(m) {
                    None => 1.0,
                    Some(lane) => {
                        lane_rate[bucket][m]
                            + lane
                                .iter()
                                .filter(|&&index| !accepted[bucket][m][index])
                                .map(|&index| pair_weight(index))
                                .sum::<f64>()
                    }
                })
                .product()
        };
        let rate_now = |bucket: usize| -> f64 {
            if used[bucket] {
                lane_rate[bucket].iter().product()
            } else {
                0.0
            }
        };
        let bucket = (0..BUCKETS)
            .min_by(|&x, &y| (rate_with(x) - rate_now(x)).total_cmp(&(rate_with(y) - rate_now(y))))
            .unwrap_or(0);
        used[bucket] = true;
        for m in 0..LANES {
            match alignment.lanes.get(m) {
                None => {
                    accepted[bucket][m].fill(true);
                    lane_rate[bucket][m] = 1.0;
                }
                Some(lane) => {
                    for &index in lane {
                        if !accepted[bucket][m][index] {
                            accepted[bucket][m][index] = true;
                            lane_rate[bucket][m] += pair_weight(index);
                        }
                    }
                }
            }
        }
        out[i] = bucket;
    }
    let rate = (0..BUCKETS)
        .filter(|&b| used[b])
        .map(|b| lane_rate[b].iter().product::<f64>())
        .sum();
    (out, rate)
}

impl KeywordFilter {
    /// Build the filter for `keywords` (each non-empty). Keyword ids in
    /// [`KeywordFilter::for_each_present`] are indices into this slice.
    ///
    /// # Panics
    /// If a keyword is empty or there are more than `u32::MAX` keywords.
    pub fn new<K: AsRef<[u8]>>(keywords: &[K]) -> Self {
        let folded_keywords: Vec<Vec<u8>> = keywords
            .iter()
            .map(|k| k.as_ref().to_ascii_lowercase())
            .collect();
        let mut alignments = Vec::with_capacity(2 * keywords.len());
        for (id, folded) in folded_keywords.iter().enumerate() {
            assert!(!folded.is_empty(), "keywords must not be empty");
            let id = u32::try_from(id).expect("fewer than 2^32 keywords");
            alignments.push(Alignment::new(id, folded, 0));
            alignments.push(Alignment::new(id, folded, 1));
        }
        let (buckets, alarm_rate) = assign_buckets(&alignments);

        // Every bit set means no anchor can be there; entering an anchor
        // clears bits.
        let mut table: Box<[u64; 4096]> = vec![u64::MAX; 4096]
            .into_boxed_slice()
            .try_into()
            .expect("4096 words");
        let mut offsets = Vec::with_capacity(folded_keywords.len());
        let mut keyword_bytes = Vec::new();
        for folded in &folded_keywords {
            offsets.push(u32::try_from(keyword_bytes.len()).expect("keywords under 4 GiB"));
            keyword_bytes.extend_from_slice(folded);
        }
        let mut ends_at = vec![Vec::new(); 4096];
        for (alignment, &bucket) in alignments.iter().zip(&buckets) {
            for m in 0..LANES {
                let bit = 1u64 << (BUCKETS * (LANES - 1 - m) + bucket);
                match alignment.lanes.get(m) {
                    Some(indices) => {
                        for &index in indices {
                            table[index] &= !bit;
                        }
                    }
                    None => {
                        for word in table.iter_mut() {
                            *word &= !bit;
                        }
                    }
                }
            }
            let keyword = alignment.keyword as usize;
            let candidate = Candidate {
                keyword: alignment.keyword,
                offset: offsets[keyword],
                len: u32::try_from(folded_keywords[keyword].len()).expect("keywords under 4 GiB"),
                bucket_bit: 1 << bucket,
                odd: alignment.odd,
                back: u8::try_from(2 * (alignment.lanes.len() - 1) + usize::from(alignment.skip))
                    .expect("anchors span at most 8 bytes"),
            };
            for &index in &alignment.lanes[0] {
                ends_at[index].push(candidate);
            }
        }
        let mut ends = Vec::with_capacity(4097);
        let mut candidates = Vec::new();
        for list in ends_at {
            ends.push(u32::try_from(candidates.len()).expect("fewer than 2^32 alignments"));
            candidates.extend(list);
        }
        ends.push(u32::try_from(candidates.len()).expect("fewer than 2^32 alignments"));
        Self {
            table,
            ends,
            candidates,
            keyword_bytes,
            keyword_count: folded_keywords.len(),
            alarm_rate,
        }
    }

    /// Estimated share of input byte pairs that raise an alarm (from a
    /// rough model of byte frequencies in text, not a measurement).
    pub fn alarm_rate(&self) -> f64 {
        self.alarm_rate
    }

    /// Number of keywords.
    pub fn len(&self) -> usize {
        self.keyword_count
    }

    /// Whether there are no keywords.
    pub fn is_empty(&self) -> bool {
        self.keyword_count == 0
    }

    /// Call `found(keyword_id)` for each occurrence of a keyword in `data`
    /// (a keyword may be reported more than once). `found` returns `false`
    /// to stop the scan early.
    pub fn for_each_present(&self, data: &[u8], mut found: impl FnMut(usize) -> bool) {
        self.for_each_occurrence(
            data,
            |id, _| if found(id) { Then::Next } else { Then::Stop },
        );
    }

    /// Call `found(keyword_id, start)` for each occurrence of a keyword in
    /// `data`, `start` its first byte, until `found` says [`Then::Stop`].
    /// This filter reports every occurrence, so [`Then::Next`] and
    /// [`Then::Again`] both go on.
    pub fn for_each_occurrence(&self, data: &[u8], mut found: impl FnMut(usize, usize) -> Then) {
        let mut state = 0u64;
        let chunks = data.chunks_exact(2);
        let tail = chunks.remainder();
        let mut step = |at: usize, index: usize, state: &mut u64| {
            *state = (*state << BUCKETS) | self.table[index];
            *state >= ALARM_BELOW || self.confirm(data, at, index, *state, &mut found)
        };
        for (i, two) in chunks.enumerate() {
            if !step(2 * i, pair(two[0], two[1]), &mut state) {
                return;
            }
        }
        if let [last] = tail {
            // Pad with any byte: anchors accept anything past their end.
            step(data.len() - 1, pair(*last, 0), &mut state);
        }
    }

    /// Compare the keyword alignments whose anchor can end in the pair at
    /// byte `at` (buckets alarmed in `state`) with the input; `false` when
    /// `found` asked to stop.
    #[cold]
    fn confirm(
        &self,
        data: &[u8],
        at: usize,
        index: usize,
        state: u64,
        found: &mut impl FnMut(usize, usize) -> Then,
    ) -> bool {
        #[allow(clippy::cast_possible_truncation)] // the top lane
        let alarm = !(state >> 48) as u16;
        let list = &self.candidates[self.ends[index] as usize..self.ends[index + 1] as usize];
        for candidate in list {
            if candidate.bucket_bit & alarm == 0 {
                continue;
            }
            let Some(start) =
                (at + usize::from(candidate.odd)).checked_sub(usize::from(candidate.back))
            else {
                continue;
            };
            let Some(window) = data.get(start..start + candidate.len as usize) else {
                continue;
            };
            let offset = candidate.offset as usize;
            let keyword = &self.keyword_bytes[offset..offset + candidate.len as usize];
            if window.eq_ignore_ascii_case(keyword)
                && found(candidate.keyword as usize, start) == Then::Stop
            {
                return false;
            }
        }
        true
    }
}

/// What a keyword filter does after it reported an occurrence of a keyword
/// (see [`KeywordFilter::for_each_occurrence`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Go on; later occurrences of this keyword need not be reported.
    Next,
    /// Go on, and report this keyword's later occurrences too (a filter
    /// that reports each keyword once waits for the next one).
    Again,
    /// Stop the scan.
    Stop,
}

/// What the tests of both keyword filters compare: the ids a filter
/// reports, and the ids Aho-Corasick finds, each sorted and deduplicated.
#[cfg(test)]
pub(crate) mod test_support {
    use aho_corasick::AhoCorasick;

    /// The ids that `scan` reports through its callback.
    pub(crate) fn reported(scan: impl FnOnce(&mut dyn FnMut(usize) -> bool)) -> Vec<usize> {
        let mut out = Vec::new();
        scan(&mut |id| {
            out.push(id);
            true
        });
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The reference: an ASCII-case-insensitive automaton over `keywords`.
    pub(crate) fn automaton<K: AsRef<[u8]>>(keywords: &[K]) -> AhoCorasick {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(keywords)
            .unwrap()
    }

    /// Every occurrence of the automaton's keywords in `data`, as
    /// `(keyword id, start)`, sorted.
    pub(crate) fn occurrences(ac: &AhoCorasick, data: &[u8]) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = ac
            .find_overlapping_iter(data)
            .map(|m| (m.pattern().as_usize(), m.start()))
            .collect();
        out.sort_unstable();
        out
    }

    /// What a filter's `for_each_occurrence` reports when every call asks
    /// for the keyword's next occurrence too, sorted.
    pub(crate) fn reported_occurrences(
        scan: impl FnOnce(&mut dyn FnMut(usize, usize) -> super::Then),
    ) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        scan(&mut |id, start| {
            out.push((id, start));
            super::Then::Again
        });
        out.sort_unstable();
        out
    }

    /// The ids of the automaton's keywords that occur in `data`.
    pub(crate) fn occurring(ac: &AhoCorasick, data: &[u8]) -> Vec<usize> {
        let mut out: Vec<usize> = ac
            .find_overlapping_iter(data)
            .map(|m| m.pattern().as_usize())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{automaton, occurrences, occurring, reported, reported_occurrences};
    use super::*;
    use crate::test_rng::XorShift;

    fn present(filter: &KeywordFilter, data: &[u8]) -> Vec<usize> {
        reported(|found| filter.for_each_present(data, found))
    }

    #[test]
    fn finds_each_keyword_case_insensitively() {
        let filter = KeywordFilter::new(&["sk-ant", "ant-", "@", "zzz", "ghp_"]);
        assert_eq!(present(&filter, b"x SK-ANT-abc"), vec![0, 1]);
        assert_eq!(present(&filter, b"a@b GHP_x"), vec![2, 4]);
        assert_eq!(present(&filter, b"trailing @"), vec![2]);
        assert_eq!(present(&filter, b"@"), vec![2]);
        assert_eq!(present(&filter, b"zz z"), Vec::<usize>::new());
        assert_eq!(present(&filter, b""), Vec::<usize>::new());
    }

    #[test]
    fn keyword_at_the_edges_and_non_ascii() {
        let filter = KeywordFilter::new(&["tél".as_bytes(), b"ab"]);
        assert_eq!(present(&filter, "TÉL".as_bytes()), Vec::<usize>::new());
        assert_eq!(present(&filter, "Tél".as_bytes()), vec![0]);
        assert_eq!(present(&filter, b"ab"), vec![1]);
        assert_eq!(present(&filter, b"xAB"), vec![1]);
    }

    #[test]
    fn agrees_with_aho_corasick_on_many_keywords() {
        // A small deterministic generator: keywords of 1-20 bytes from a
        // narrow alphabet (so they overlap and collide), text from the same.
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut next = move |n: u64| rng.next_u64() % n;
        let alphabet = b"abcAB_-:@+ \xc3\xa9019";
        let mut pick = |len: u64| -> Vec<u8> {
            (0..len)
                .map(|_| alphabet[usize::try_from(next(alphabet.len() as u64)).unwrap()])
                .collect()
        };
        let keywords: Vec<Vec<u8>> = (0..300).map(|i| pick(1 + (i % 20))).collect();
        let keywords: Vec<Vec<u8>> = keywords
            .into_iter()
            .filter(|k| k.len() > 2 || k[0] == b'@')
            .collect();
        let filter = KeywordFilter::new(&keywords);
        let ac = automaton(&keywords);
        for len in [0, 1, 2, 3, 7, 64, 999] {
            for _ in 0..20 {
                let data = pick(len);
                assert_eq!(present(&filter, &data), occurring(&ac, &data), "{data:?}");
                // Every occurrence, where it starts (this filter reports
                // each one whatever the answer).
                let mut all = reported_occurrences(|f| filter.for_each_occurrence(&data, f));
                all.dedup();
                assert_eq!(all, occurrences(&ac, &data), "{data:?}");
            }
        }
    }

    #[test]
    fn agrees_with_aho_corasick_on_every_prefix() {
        let keywords = ["key", "sk-", "+", "://", "eyj", "(2", "secret_key", "q~"];
        let filter = KeywordFilter::new(&keywords);
        let ac = automaton(&keywords);
        let text = b"my KEY is sk-1 and +44 (2) https://x eyJ Secret_Key q~ SK-";
        for end in 0..=text.len() {
            for start in 0..=end {
                let data = &text[start..end];
                assert_eq!(present(&filter, data), occurring(&ac, data), "{data:?}");
            }
        }
    }
}
