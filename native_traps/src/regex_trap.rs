//! Keyword-prefiltered regex scanning over raw bytes.
//!
//! Stage 1 picks candidate rules. The keywords of every rule (ASCII
//! case-insensitive) are looked for in one pass: by the AVX-512
//! [`crate::keyword_teddy::KeywordTeddy`] where the CPU has it, else by the bucketed shift-or
//! [`KeywordFilter`] when its estimated false-alarm rate is low (the secret
//! pack: about 2x faster than an automaton), else by one Aho-Corasick DFA
//! (large sets of common words, such as the injection pack, where the
//! filter's exact comparisons would dominate). All report exactly the
//! keywords present; their owners, plus every rule without keywords, become
//! candidates. Stage 2: each candidate's regex (a `regex_automata::meta::Regex`, configured as
//! `regex::bytes::Regex` configures it) runs over the input; that of a
//! digit-shaped rule (every match holds at least `k` ASCII digits, with
//! bounded room around and between them; see `digit_windows.rs`) only
//! over the windows around clusters of at least `k` digits, with the same
//! matches as over the whole input (a rule that needs no digit but two
//! colons, as IPv6, the same around colons). Rules sharing a `batch` that
//! would search the whole input (their windows cover most of it) are first
//! checked together in one `RegexSet` pass. Stage 3 filters each match's reported
//! span: the rule's validator, its `min_entropy` floor and its stopwords.
//! Every stage is linear in the input length (the regex engine never
//! backtracks), so a hostile body cannot stall a scan.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use regex::bytes::{RegexSet, RegexSetBuilder};
use regex_automata::meta::{self, Regex};
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, PatternID};

#[cfg(test)]
use crate::digit_windows::Narrowing;
use crate::digit_windows::{Coverage, DigitBuffers, DigitShape, Digits, Marker};
use crate::error::TrapError;
use crate::filter_tuning::TunedTeddy;
use crate::keyword_filter::{KeywordFilter, Then};
use crate::leet_gate::LeetGate;
use crate::required_byte::rarest_required;
use crate::rule::{RuleSpec, WORD_START};
use crate::whitespace::SpaceBuffers;

/// Upper bound on the compiled size of one rule's regex program.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Name of the capture group that narrows a finding's span.
pub const SECRET_GROUP: &str = "secret";

/// One match of one rule, as byte offsets into the scanned input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Finding {
    /// Index of the rule in the order given to [`RegexTrap::compile`].
    pub rule_index: usize,
    /// Inclusive start byte offset.
    pub start: usize,
    /// Exclusive end byte offset (`start < end` always holds).
    pub end: usize,
}

#[derive(Debug)]
struct CompiledRule {
    spec: RuleSpec,
    regex: Regex,
    /// Capture-group index of `(?P<secret>…)`, if the pattern has one.
    secret_group: Option<usize>,
    /// Where the digits of a match sit when the rule is windowable (see
    /// [`crate::digit_windows`]).
    digit_shape: Option<DigitShape>,
    /// The rule's stopwords as one ASCII-case-insensitive automaton.
    stopwords: Option<AhoCorasick>,
    /// A rare byte every match holds (see [`crate::required_byte`]).
    required: Option<u8>,
}

/// How [`RegexTrap::compile_with`] may build stage 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileOptions {
    /// Use the AVX-512 VBMI keyword filter
    /// ([`crate::keyword_teddy::KeywordTeddy`]) when the CPU
    /// has it (default `true`). Off, the scalar filters are used everywhere;
    /// findings are the same either way.
    pub simd: bool,
    /// Let the AVX-512 filter learn from the first few MiB it scans and
    /// rebuild itself with fewer false alarms (default `true`; see
    /// [`crate::filter_tuning`]). Findings are the same either way.
    pub tune: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            simd: true,
            tune: true,
        }
    }
}

/// A compiled, immutable set of regex rules. Cheap to share across threads
/// (`Send + Sync`); scanning takes `&self`.
#[derive(Debug)]
pub struct RegexTrap {
    rules: Vec<CompiledRule>,
    /// Search for the de-duplicated (ASCII-lowercased) keywords; `None`
    /// when no rule has keywords.
    prefilter: Option<Prefilter>,
    /// For each keyword id of the filter: the rules that own that keyword.
    keyword_owners: Vec<Vec<usize>>,
    /// For each keyword id: the rules that own it as a word-start keyword
    /// (`\b` first, see [`RuleSpec::keywords`]): they become candidates
    /// only at an occurrence that starts a word.
    word_start_owners: Vec<Vec<usize>>,
    /// Whether a keyword holds a space: then a body with other white space
    /// is filtered with its white space collapsed (see `whitespace.rs`).
    has_phrases: bool,
    /// Rules without keywords: always candidates.
    unconditional: Vec<usize>,
    /// Number of distinct rules that have at least one keyword.
    keyed_rule_count: usize,
    /// Batches of two or more rules (see [`RuleSpec::batch`]).
    batches: Vec<Batch>,
    /// For each rule: the index of its batch in `batches`, if any.
    batch_of: Vec<Option<usize>>,
    /// Rule index by id.
    ids: HashMap<String, usize>,
    /// The keyword texts of the filter, by keyword id.
    keywords: Vec<String>,
    /// Built the first time this trap scans a leet view.
    leet_gate: OnceLock<LeetGate>,
}

/// Rules that share a batch name, and their patterns as one `RegexSet`
/// (pattern `i` of `set` is rule `members[i]`).
#[derive(Debug)]
struct Batch {
    members: Vec<usize>,
    set: RegexSet,
}

impl RegexTrap {
    /// Validate and compile `rules`. Rule indices in findings refer to the
    /// order of this vector.
    ///
    /// # Errors
    /// * [`TrapError::InvalidRule`] for a malformed field or a duplicate id;
    /// * [`TrapError::InvalidPattern`] when a pattern does not compile, is
    ///   larger than [`REGEX_SIZE_LIMIT`], or matches the empty string.
    pub fn compile(rules: Vec<RuleSpec>) -> Result<Self, TrapError> {
        Self::compile_with(rules, CompileOptions::default())
    }

    /// [`RegexTrap::compile`] with explicit [`CompileOptions`].
    ///
    /// # Errors
    /// As [`RegexTrap::compile`].
    pub fn compile_with(rules: Vec<RuleSpec>, options: CompileOptions) -> Result<Self, TrapError> {
        let mut ids: HashMap<String, usize> = HashMap::with_capacity(rules.len());
        for (index, spec) in rules.iter().enumerate() {
            spec.validate()?;
            if let Some(first) = ids.insert(spec.id.clone(), index) {
                return Err(TrapError::invalid_rule(
                    &spec.id,
                    "id",
                    format!("duplicate id (rules #{first} and #{index})"),
                ));
            }
        }

        let mut keyword_ids: HashMap<String, usize> = HashMap::new();
        let mut keywords: Vec<String> = Vec::new();
        let mut keyword_owners: Vec<Vec<usize>> = Vec::new();
        let mut word_start_owners: Vec<Vec<usize>> = Vec::new();
        let mut unconditional = Vec::new();
        let mut keyed_rule_count = 0;
        for (index, spec) in rules.iter().enumerate() {
            if spec.keywords.is_empty() {
                unconditional.push(index);
                continue;
            }
            keyed_rule_count += 1;
            for keyword in &spec.keywords {
                // The filter looks for the text; a word-start keyword's
                // owners are kept apart and checked against the occurrences.
                let (text, word_start) = match keyword.strip_prefix(WORD_START) {
                    Some(text) => (text, true),
                    None => (keyword.as_str(), false),
                };
                let folded = text.to_ascii_lowercase();
                let id = *keyword_ids.entry(folded).or_insert_with_key(|k| {
                    keywords.push(k.clone());
                    keyword_owners.push(Vec::new());
                    word_start_owners.push(Vec::new());
                    keywords.len() - 1
                });
                let owners = if word_start {
                    &mut word_start_owners[id]
                } else {
                    &mut keyword_owners[id]
                };
                if owners.last() != Some(&index) {
                    owners.push(index);
                }
            }
        }
        let has_phrases = keywords.iter().any(|k| k.contains(' '));
        let prefilter = if keywords.is_empty() {
            None
        } else {
            Some(Prefilter::new(&keywords, options)?)
        };
        let (batches, batch_of) = compile_batches(&rules)?;
        let compiled = rules
            .into_iter()
            .map(compile_rule)
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Self {
            rules: compiled,
            prefilter,
            keyword_owners,
            word_start_owners,
            has_phrases,
            unconditional,
            keyed_rule_count,
            batches,
            batch_of,
            ids,
            keywords,
            leet_gate: OnceLock::new(),
        })
    }

    /// Whether some rule has no keywords (and so runs on every input).
    pub fn has_keywordless_rule(&self) -> bool {
        !self.unconditional.is_empty()
    }

    /// The index of the rule with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.get(id).copied()
    }

    /// The pieces of this trap's keywords that decide whether a leet view
    /// is worth scanning with it (built on first use).
    pub fn leet_gate(&self) -> &LeetGate {
        self.leet_gate.get_or_init(|| LeetGate::new(&self.keywords))
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the trap has no rules (scans then always return nothing).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rebuilds the AVX-512 filter has made from the traffic it scanned
    /// (see [`crate::filter_tuning`]); 0 for the other filters.
    pub fn filter_rebuilds(&self) -> usize {
        match &self.prefilter {
            Some(Prefilter::Teddy(teddy)) => teddy.rounds_done(),
            _ => 0,
        }
    }

    /// Which stage-1 keyword search this trap uses: `"avx512-teddy"`,
    /// `"shift-or"`, `"aho-corasick"` or `"none"` (no rule has keywords).
    pub fn prefilter_name(&self) -> &'static str {
        match &self.prefilter {
            None => "none",
            Some(Prefilter::Teddy(_)) => "avx512-teddy",
            Some(Prefilter::ShiftOr(_)) => "shift-or",
            Some(Prefilter::Automaton(_)) => "aho-corasick",
        }
    }

    /// The declaration of rule `index`, if it exists.
    pub fn rule(&self, index: usize) -> Option<&RuleSpec> {
        self.rules.get(index).map(|r| &r.spec)
    }

    /// All rule declarations, in index order.
    pub fn rules(&self) -> impl ExactSizeIterator<Item = &RuleSpec> + '_ {
        self.rules.iter().map(|r| &r.spec)
    }

    /// Indices of the rules whose regex would run on `data`: rules with a
    /// keyword present in `data` plus all rules without keywords, ascending.
    pub fn candidate_rules(&self, data: &[u8]) -> Vec<usize> {
        let mut candidates = Vec::new();
        self.candidates_into(
            data,
            &mut Vec::new(),
            &mut candidates,
            &mut SpaceBuffers::default(),
        );
        candidates
    }

    /// [`RegexTrap::candidate_rules`] written to `candidates` (cleared
    /// first), with `selected` as scratch space.
    fn candidates_into(
        &self,
        data: &[u8],
        selected: &mut Vec<u64>,
        candidates: &mut Vec<usize>,
        spaces: &mut SpaceBuffers,
    ) {
        // One bit per rule: walking the set bits at the end costs a word
        // per 64 rules, not a step per rule.
        selected.clear();
        selected.resize(self.rules.len().div_ceil(64), 0);
        for &index in &self.unconditional {
            selected[index / 64] |= 1 << (index % 64);
        }
        if let Some(prefilter) = &self.prefilter {
            // A space in a keyword stands for any run of white space.
            let data = if self.has_phrases {
                spaces.collapsed(data)
            } else {
                data
            };
            let mut keyed_selected = 0;
            // Every keyword present is reported, including one that starts
            // inside another (e.g. `ant-` inside `sk-ant-`).
            prefilter.for_each_occurrence(data, |keyword, start| {
                let mut select = |selected: &mut Vec<u64>, owners: &[usize]| {
                    for &index in owners {
                        let (word, bit) = (&mut selected[index / 64], 1 << (index % 64));
                        if *word & bit == 0 {
                            *word |= bit;
                            keyed_selected += 1;
                        }
                    }
                };
                select(selected, &self.keyword_owners[keyword]);
                // A word-start keyword's owners wait for an occurrence at
                // the start of a word: until then (unless another keyword
                // selected them all already), the filter reports the
                // keyword's next occurrences too.
                let waiting = &self.word_start_owners[keyword];
                let chosen = |i: &usize| selected[i / 64] & (1 << (i % 64)) != 0;
                let then = if waiting.iter().all(chosen) {
                    Then::Next
                } else if starts_a_word(data, start) {
                    select(selected, waiting);
                    Then::Next
                } else {
                    Then::Again
                };
                if keyed_selected < self.keyed_rule_count {
                    then
                } else {
                    Then::Stop
                }
            });
        }
        candidates.clear();
        for (w, &word) in selected.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                candidates.push(64 * w + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
    }

    /// Scan `data` (any bytes; need not be UTF-8).
    ///
    /// Returns findings sorted by `(start, end, rule_index)` with exact
    /// duplicates removed. Overlapping findings from different rules are all
    /// kept; merging spans is the caller's policy.
    pub fn scan(&self, data: &[u8]) -> Vec<Finding> {
        Self::with_scratch(data, |scratch| self.scan_with(data, scratch))
    }

    /// [`RegexTrap::scan`] that also writes the candidate rules (see
    /// [`RegexTrap::candidate_rules`]) to `candidates`, ascending.
    pub fn scan_noting(&self, data: &[u8], candidates: &mut Vec<usize>) -> Vec<Finding> {
        Self::with_scratch(data, |scratch| {
            let findings = self.scan_with(data, scratch);
            candidates.clear();
            candidates.extend_from_slice(&scratch.candidates);
            findings
        })
    }

    /// Whether a keyword of this trap may occur in `data` (a word-start
    /// keyword anywhere counts), or some rule has none. For the few bytes
    /// around a word (`leet_gate.rs`): they are no sample of the traffic, so
    /// the self-tuning filter learns nothing from them.
    pub fn has_candidates(&self, data: &[u8]) -> bool {
        if !self.unconditional.is_empty() {
            return true;
        }
        let Some(prefilter) = &self.prefilter else {
            return false;
        };
        let mut spaces = SpaceBuffers::default();
        let data = if self.has_phrases {
            spaces.collapsed(data)
        } else {
            data
        };
        let mut found = false;
        prefilter.for_each_occurrence_quietly(data, |_, _| {
            found = true;
            Then::Stop
        });
        found
    }

    /// Run `f` with this thread's buffers, or fresh ones for a large body.
    fn with_scratch<T>(data: &[u8], f: impl FnOnce(&mut Scratch) -> T) -> T {
        if data.len() > SCRATCH_BODY_MAX {
            return f(&mut Scratch::default());
        }
        // Fresh buffers too if the thread's are borrowed (no scan calls
        // another today) or already destroyed (a scan while the thread
        // exits).
        let mut f = Some(f);
        let kept = SCRATCH.try_with(|cell| {
            let mut scratch = cell.try_borrow_mut().ok()?;
            let out = f.take()?(&mut scratch);
            if scratch.heap_bytes() > SCRATCH_KEEP_MAX {
                *scratch = Scratch::default();
            }
            Some(out)
        });
        match (kept, f) {
            (Ok(Some(out)), _) => out,
            (_, Some(f)) => f(&mut Scratch::default()),
            (_, None) => unreachable!("`f` runs only where its result is kept"),
        }
    }

    /// [`RegexTrap::scan`] with the buffers of `scratch`.
    fn scan_with(&self, data: &[u8], scratch: &mut Scratch) -> Vec<Finding> {
        let Scratch {
            selected,
            candidates,
            windows,
            all_windows,
            searches,
            digit_buffers,
            spaces,
        } = scratch;
        // Where each candidate searches: a digit-shaped rule only its
        // windows (none at all when no cluster of its digits occurs), unless
        // they cover most of the body. The digits are found at the first
        // such candidate and then shared.
        self.candidates_into(data, selected, candidates, spaces);
        let tight_min = candidates
            .iter()
            .filter_map(|&index| self.rules[index].digit_shape?.tight_run_min())
            .min()
            .unwrap_or(0);
        let mut digits: [Option<Digits>; Marker::ALL.len()] = [None, None];
        // The windows of every windowed search, one after another.
        all_windows.clear();
        searches.clear();
        for &index in candidates.iter() {
            let Some(shape) = self.rules[index].digit_shape else {
                searches.push((index, Search::Whole));
                continue;
            };
            let marker = shape.marker.index();
            let digits = digits[marker].get_or_insert_with(|| {
                let buffers = std::mem::take(&mut digit_buffers[marker]);
                Digits::with_buffers(data, shape.marker, buffers).with_tight_min(tight_min)
            });
            match shape.windows(digits, windows) {
                Coverage::Dense => searches.push((index, Search::Whole)),
                Coverage::Sparse if windows.is_empty() => {}
                Coverage::Sparse => {
                    let at = all_windows.len();
                    all_windows.extend_from_slice(windows);
                    searches.push((index, Search::Windows(at..all_windows.len())));
                }
            }
        }
        // A whole-body search for a rule whose matches all hold a rare byte
        // that the body lacks would find nothing (one `memchr` per byte,
        // its answer kept in two bitsets).
        let (mut looked, mut present) = ([0u64; 4], [0u64; 4]);
        searches.retain(
            |(index, search)| match (search, self.rules[*index].required) {
                (Search::Whole, Some(b)) => {
                    let (word, bit) = (usize::from(b >> 6), 1u64 << (b & 63));
                    if looked[word] & bit == 0 {
                        looked[word] |= bit;
                        if memchr::memchr(b, data).is_some() {
                            present[word] |= bit;
                        }
                    }
                    present[word] & bit != 0
                }
                _ => true,
            },
        );
        if !self.batches.is_empty() {
            self.drop_batch_misses(data, searches);
        }
        let mut findings = Vec::new();
        for (index, search) in searches.drain(..) {
            let rule = &self.rules[index];
            match search {
                Search::Whole => rule.find_into(index, data, 0..data.len(), &mut findings),
                Search::Windows(at) => {
                    for window in &all_windows[at] {
                        rule.find_into(index, data, window.clone(), &mut findings);
                    }
                }
            }
        }
        for (digits, buffers) in digits.into_iter().zip(digit_buffers.iter_mut()) {
            if let Some(digits) = digits {
                *buffers = digits.into_buffers();
            }
        }
        findings.sort_unstable_by_key(|f| (f.start, f.end, f.rule_index));
        findings.dedup();
        findings
    }
}

/// The largest body whose scan uses the thread's buffers: larger ones are
/// rare and allocate their own.
const SCRATCH_BODY_MAX: usize = 256 * 1024;

/// The most heap memory a thread's buffers keep between scans: a body up to
/// [`SCRATCH_BODY_MAX`] full of digits grows them to a few MiB (eight bytes
/// per digit position), and those are dropped after its scan.
const SCRATCH_KEEP_MAX: usize = 1 << 20;

/// The buffers a scan needs only while it runs, kept per thread (see
/// [`SCRATCH`]) so that the next scan reuses them: a scan of a 4 KiB body
/// otherwise allocated about twenty vectors.
#[derive(Default)]
struct Scratch {
    selected: Vec<u64>,
    candidates: Vec<usize>,
    windows: Vec<Range<usize>>,
    all_windows: Vec<Range<usize>>,
    searches: Vec<(usize, Search)>,
    digit_buffers: [DigitBuffers; Marker::ALL.len()],
    spaces: SpaceBuffers,
}

impl Scratch {
    /// The heap memory the buffers hold, in bytes.
    fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.selected.capacity() * size_of::<u64>()
            + self.candidates.capacity() * size_of::<usize>()
            + (self.windows.capacity() + self.all_windows.capacity()) * size_of::<Range<usize>>()
            + self.searches.capacity() * size_of::<(usize, Search)>()
            + self
                .digit_buffers
                .iter()
                .map(DigitBuffers::heap_bytes)
                .sum::<usize>()
            + self.spaces.heap_bytes()
    }
}

thread_local! {
    /// This thread's [`Scratch`]. A scan borrows it for its whole length;
    /// were it ever borrowed already, the scan would use fresh buffers.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Where a candidate rule's regex searches a body.
enum Search {
    /// The whole body.
    Whole,
    /// Each of the disjoint, ascending windows (see `digit_windows.rs`) at
    /// these indices of the scan's list of windows.
    Windows(Range<usize>),
}

impl RegexTrap {
    /// For every batch with two or more rules among `searches` that would
    /// search the whole body: one pass of the batch's `RegexSet` over
    /// `data`, then drop those of them whose pattern does not match anywhere
    /// (their own regex would find nothing). Rules that search only windows
    /// are cheaper on their own and left alone. Either way the findings are
    /// the same.
    fn drop_batch_misses(&self, data: &[u8], searches: &mut Vec<(usize, Search)>) {
        let whole_batch = |(index, search): &(usize, Search)| match search {
            Search::Whole => self.batch_of[*index],
            Search::Windows(_) => None,
        };
        let mut per_batch = vec![0usize; self.batches.len()];
        for batch in searches.iter().filter_map(whole_batch) {
            per_batch[batch] += 1;
        }
        if per_batch.iter().all(|&count| count < 2) {
            return;
        }
        let matched: Vec<Option<regex::bytes::SetMatches>> = per_batch
            .iter()
            .enumerate()
            .map(|(batch, &count)| (count >= 2).then(|| self.batches[batch].set.matches(data)))
            .collect();
        searches.retain(|entry| match whole_batch(entry) {
            Some(batch) => matched[batch].as_ref().is_none_or(|m| {
                let slot = self.batches[batch]
                    .members
                    .binary_search(&entry.0)
                    .expect("a batch member");
                m.matched(slot)
            }),
            None => true,
        });
    }
}

/// Whether the byte at `start` of `data` starts a word: it is the first
/// byte, or follows one that is not an ASCII letter, digit or `_`.
fn starts_a_word(data: &[u8], start: usize) -> bool {
    start
        .checked_sub(1)
        .is_none_or(|before| !(data[before].is_ascii_alphanumeric() || data[before] == b'_'))
}

/// Group the rules by [`RuleSpec::batch`] and build one `RegexSet` for each
/// name shared by two or more rules (a batch of one gains nothing).
fn compile_batches(rules: &[RuleSpec]) -> Result<(Vec<Batch>, Vec<Option<usize>>), TrapError> {
    let mut by_name: Vec<(&str, Vec<usize>)> = Vec::new();
    for (index, spec) in rules.iter().enumerate() {
        if let Some(name) = spec.batch.as_deref() {
            match by_name.iter_mut().find(|(n, _)| *n == name) {
                Some((_, members)) => members.push(index),
                None => by_name.push((name, vec![index])),
            }
        }
    }
    let mut batches = Vec::new();
    let mut batch_of = vec![None; rules.len()];
    for (name, members) in by_name {
        if members.len() < 2 {
            continue;
        }
        let patterns = members.iter().map(|&i| {
            let spec = &rules[i];
            if spec.case_insensitive {
                format!("(?i:{})", spec.pattern)
            } else {
                format!("(?:{})", spec.pattern)
            }
        });
        let set = RegexSetBuilder::new(patterns)
            .size_limit(REGEX_SIZE_LIMIT.saturating_mul(members.len()))
            .build()
            .map_err(|e| {
                TrapError::invalid_rule(
                    &rules[members[0]].id,
                    "batch",
                    format!("cannot combine the rules of batch {name:?}: {e}"),
                )
            })?;
        for &index in &members {
            batch_of[index] = Some(batches.len());
        }
        batches.push(Batch { members, set });
    }
    Ok((batches, batch_of))
}

/// Estimated share of alarmed byte pairs above which the shift-or filter
/// loses to the automaton (its exact comparisons then cost more than the
/// automaton's slower byte loop); measured on the bench corpus: about 1.2 %
/// for the secret rules (filter 2x faster), about 8 % for all built-in packs
/// (filter 2x slower).
const MAX_FILTER_ALARM_RATE: f64 = 0.04;

/// Estimated share of flagged positions above which the SIMD filter is not
/// used. Measured on the bench corpus (see `bench/README.md`, round 6):
/// `RegexTrap` on the secret rules (estimate 0.4 %) scans 1.8x faster than
/// with the shift-or filter, on all built-in rules (estimate 1.3 %) 1.7x
/// faster than with the automaton; the bound keeps a keyword set much
/// noisier than those on the measured engines.
const MAX_TEDDY_FLAG_RATE: f64 = 0.05;

/// How stage 1 finds the keywords present in the input.
#[derive(Debug)]
enum Prefilter {
    /// Teddy-style AVX-512 VBMI filter (see
    /// [`crate::keyword_teddy::KeywordTeddy`]), tuned to
    /// the traffic unless learning is off (see [`TunedTeddy`]).
    Teddy(TunedTeddy),
    /// Bucketed shift-or over byte pairs (see [`KeywordFilter`]).
    ShiftOr(KeywordFilter),
    /// One Aho-Corasick DFA, ASCII case-insensitive, overlapping search.
    Automaton(AhoCorasick),
}

impl Prefilter {
    fn new(keywords: &[String], options: CompileOptions) -> Result<Self, TrapError> {
        if options.simd {
            if let Some(teddy) = TunedTeddy::new(keywords, options.tune) {
                if teddy.current().flag_rate() <= MAX_TEDDY_FLAG_RATE {
                    return Ok(Self::Teddy(teddy));
                }
            }
        }
        let filter = KeywordFilter::new(keywords);
        if filter.alarm_rate() <= MAX_FILTER_ALARM_RATE {
            return Ok(Self::ShiftOr(filter));
        }
        // A DFA costs more memory at build time but scans about 40 % faster
        // than the default NFA for a few hundred case-insensitive keywords.
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(aho_corasick::MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(keywords)
            .map(Self::Automaton)
            .map_err(|e| {
                TrapError::invalid_rule(
                    "<keyword prefilter>",
                    "keywords",
                    format!("cannot build the keyword automaton: {e}"),
                )
            })
    }

    /// Call `found(keyword_id, start)` for occurrences of the keywords in
    /// `data` (each keyword's first, and more while `found` says
    /// [`Then::Again`]; the shift-or filter and the automaton report them
    /// all) until it says [`Then::Stop`].
    fn for_each_occurrence(&self, data: &[u8], found: impl FnMut(usize, usize) -> Then) {
        match self {
            Self::Teddy(filter) => filter.for_each_occurrence(data, found),
            _ => self.for_each_occurrence_quietly(data, found),
        }
    }

    /// [`Prefilter::for_each_occurrence`] that teaches a tuned filter
    /// nothing.
    fn for_each_occurrence_quietly(
        &self,
        data: &[u8],
        mut found: impl FnMut(usize, usize) -> Then,
    ) {
        match self {
            Self::Teddy(filter) => filter.current().for_each_occurrence(data, found),
            Self::ShiftOr(filter) => filter.for_each_occurrence(data, found),
            Self::Automaton(automaton) => {
                for hit in automaton.find_overlapping_iter(data) {
                    if found(hit.pattern().as_usize(), hit.start()) == Then::Stop {
                        break;
                    }
                }
            }
        }
    }
}

/// Compile `spec`'s pattern as `regex::bytes::RegexBuilder` would (same
/// syntax and engine settings, so the same matches) into the engine itself,
/// whose searches can be confined to a span of the haystack.
fn compile_rule(spec: RuleSpec) -> Result<CompiledRule, TrapError> {
    let invalid = |reason: String| TrapError::InvalidPattern {
        rule_id: spec.id.clone(),
        reason,
    };
    // `regex::bytes`: Unicode on, may match invalid UTF-8 ...
    let syntax_config = syntax::Config::new()
        .case_insensitive(spec.case_insensitive)
        .utf8(false);
    // ... leftmost-first, empty matches anywhere, its default cache size and
    // the size limit given to its builder.
    let meta_config = meta::Config::new()
        .match_kind(regex_automata::MatchKind::LeftmostFirst)
        .utf8_empty(false)
        .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
        .hybrid_cache_capacity(2 * (1 << 20));
    let hir =
        syntax::parse_with(&spec.pattern, &syntax_config).map_err(|e| invalid(e.to_string()))?;
    let regex = meta::Builder::new()
        .configure(meta_config)
        .build_from_hir(&hir)
        .map_err(|e| invalid(e.to_string()))?;
    if regex.is_match(b"") {
        return Err(invalid(
            "pattern matches the empty string, so it would flag every input".to_owned(),
        ));
    }
    let secret_group = regex.group_info().to_index(PatternID::ZERO, SECRET_GROUP);
    let digit_shape = DigitShape::of(&hir);
    let required = rarest_required(&hir);
    let stopwords = if spec.stopwords.is_empty() {
        None
    } else {
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&spec.stopwords)
            .map_err(|e| {
                TrapError::invalid_rule(
                    &spec.id,
                    "stopwords",
                    format!("cannot build the stopword automaton: {e}"),
                )
            })?;
        Some(automaton)
    };
    Ok(CompiledRule {
        spec,
        regex,
        secret_group,
        digit_shape,
        stopwords,
        required,
    })
}

impl CompiledRule {
    /// Push to `out` the accepted findings among the leftmost-first matches
    /// that lie within `span` of `data`. The search sees all of `data`, so
    /// look-around at the span's ends (`\b`, `$`) reads the real
    /// neighbouring bytes; over `0..data.len()` this is `find_iter` /
    /// `captures_iter` of `regex::bytes`.
    fn find_into(
        &self,
        rule_index: usize,
        data: &[u8],
        span: Range<usize>,
        out: &mut Vec<Finding>,
    ) {
        let matches = self.regex.find_iter(Input::new(data).span(span));
        let Some(group) = self.secret_group else {
            for found in matches {
                self.push_accepted(rule_index, data, found.range(), out);
            }
            return;
        };
        // Most searches find nothing, so the groups are resolved only for a
        // match, by an anchored search over exactly its span: what
        // `captures_iter` does after finding the match (the same preferred
        // path from the same start, so the same groups), without a
        // `Captures` allocated per window.
        let mut caps: Option<Captures> = None;
        for found in matches {
            let caps = caps.get_or_insert_with(|| self.regex.create_captures());
            let exact = Input::new(data)
                .span(found.range())
                .anchored(Anchored::Pattern(found.pattern()));
            self.regex.search_captures(&exact, caps);
            // If the alternation that matched did not take part in the
            // `secret` group, report the whole match rather than dropping a
            // detection.
            let reported = caps.get_group(group).unwrap_or(found.span());
            self.push_accepted(rule_index, data, reported.range(), out);
        }
    }

    /// Push the finding `span` unless it is empty or rejected by the rule's
    /// validator, entropy floor or stopwords.
    fn push_accepted(
        &self,
        rule_index: usize,
        data: &[u8],
        span: Range<usize>,
        out: &mut Vec<Finding>,
    ) {
        if span.is_empty() {
            return;
        }
        let bytes = &data[span.clone()];
        if self.spec.validator.is_some_and(|v| !v.accepts(bytes))
            || !self.spec.entropy_ok(bytes)
            || self.stopwords.as_ref().is_some_and(|s| s.is_match(bytes))
        {
            return;
        }
        out.push(Finding {
            rule_index,
            start: span.start,
            end: span.end,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Severity;
    use crate::test_rng::XorShift;

    #[test]
    fn overlapping_keywords_select_all_owners() {
        let trap = RegexTrap::compile(vec![
            RuleSpec::new("long", "c", Severity::Notice, "sk-ant-[a-z]+").with_keywords(["sk-ant"]),
            RuleSpec::new("short", "c", Severity::Notice, "ant-[a-z]+").with_keywords(["ant-"]),
            RuleSpec::new("absent", "c", Severity::Notice, "zzz").with_keywords(["zzz"]),
        ])
        .unwrap();
        assert_eq!(trap.candidate_rules(b"x SK-ANT-abc"), vec![0, 1]);
        let found = trap.scan(b"x sk-ant-abc");
        assert_eq!(
            found,
            vec![
                Finding {
                    rule_index: 0,
                    start: 2,
                    end: 12
                },
                Finding {
                    rule_index: 1,
                    start: 5,
                    end: 12
                },
            ]
        );
    }

    #[test]
    fn shared_keyword_maps_to_every_rule() {
        let trap = RegexTrap::compile(vec![
            RuleSpec::new("a", "c", Severity::Notice, "key=1").with_keywords(["KEY"]),
            RuleSpec::new("b", "c", Severity::Notice, "key=2").with_keywords(["key", "Key"]),
        ])
        .unwrap();
        assert_eq!(trap.keyword_owners.len(), 1);
        assert_eq!(trap.candidate_rules(b"key"), vec![0, 1]);
    }

    #[test]
    fn batch_runs_only_the_rules_that_match() {
        let rules = || {
            vec![
                RuleSpec::new("card", "pii", Severity::Error, r"\d{4} \d{4}"),
                RuleSpec::new("ssn", "pii", Severity::Error, r"\d{3}-\d{2}-\d{4}"),
                RuleSpec::new("ip", "net", Severity::Notice, r"\d+\.\d+\.\d+\.\d+"),
                RuleSpec::new("word", "x", Severity::Notice, "(?i)hello").with_keywords(["hello"]),
            ]
        };
        let batched = RegexTrap::compile(
            rules()
                .into_iter()
                .enumerate()
                .map(|(i, r)| if i < 3 { r.with_batch("numbers") } else { r })
                .collect(),
        )
        .unwrap();
        assert_eq!(batched.batches.len(), 1);
        assert_eq!(batched.batches[0].members, vec![0, 1, 2]);
        let plain = RegexTrap::compile(rules()).unwrap();
        for body in [
            &b""[..],
            b"HELLO 1234 5678 and 123-45-6789",
            b"10.0.0.1 only",
            b"1234 5678 9999 0000, 10.0.0.1, 078-05-1120 hello",
            b"no digits",
        ] {
            assert_eq!(batched.scan(body), plain.scan(body), "{body:?}");
        }
        let candidates = batched.candidate_rules(b"10.0.0.1 only");
        assert_eq!(candidates, vec![0, 1, 2]);
        let kept = |searches: Vec<(usize, Search)>| {
            let mut searches = searches;
            batched.drop_batch_misses(b"10.0.0.1 only", &mut searches);
            searches.iter().map(|(index, _)| *index).collect::<Vec<_>>()
        };
        let whole = candidates.iter().map(|&i| (i, Search::Whole)).collect();
        assert_eq!(kept(whole), vec![2]);
        // A rule that searches windows is left alone, and one batch member
        // searching the whole body is not worth a pass.
        let mixed = vec![
            (0, Search::Windows(0..2)),
            (1, Search::Whole),
            (2, Search::Whole),
        ];
        assert_eq!(kept(mixed), vec![0, 2]);
        let single = vec![(0, Search::Windows(0..2)), (1, Search::Whole)];
        assert_eq!(kept(single), vec![0, 1]);
    }

    #[test]
    fn a_space_in_a_keyword_matches_any_run_of_white_space() {
        for simd in [true, false] {
            let trap = RegexTrap::compile_with(
                vec![
                    RuleSpec::new("stop", "c", Severity::Notice, r"(?i)stop\s+following")
                        .with_keywords(["stop follow"]),
                    RuleSpec::new("word", "c", Severity::Notice, r"(?i)no\s+longer")
                        .with_keywords(["\\bno longer"]),
                    RuleSpec::new("plain", "c", Severity::Notice, r"(?i)longer")
                        .with_keywords(["longer"]),
                ],
                CompileOptions {
                    simd,
                    ..CompileOptions::default()
                },
            )
            .unwrap();
            let candidates = |data: &[u8]| trap.candidate_rules(data);
            assert_eq!(candidates(b"stop following"), [0], "{simd}");
            assert_eq!(candidates(b"STOP \t\r\n  Following"), [0]);
            assert_eq!(candidates("stop\u{00A0}\u{2003}following".as_bytes()), [0]);
            assert_eq!(candidates(b"stop, following"), Vec::<usize>::new());
            // Word starts are judged in the collapsed text as in the body.
            assert_eq!(candidates(b"no \n longer"), [1, 2]);
            assert_eq!(candidates(b"piano\t longer"), [2]);
            // Findings still point into the body as sent.
            let body = b"please stop\n\tfollowing them";
            let findings = trap.scan(body);
            assert_eq!(findings.len(), 1);
            assert_eq!(
                &body[findings[0].start..findings[0].end],
                b"stop\n\tfollowing"
            );
        }
    }

    #[test]
    fn word_start_keyword_counts_only_at_a_word_start() {
        // The SIMD filter (where the CPU has it), the shift-or filter, and
        // the automaton (put in place of the latter: these keywords never
        // make it the choice).
        for (simd, automaton) in [(true, false), (false, false), (false, true)] {
            let mut trap = RegexTrap::compile_with(
                vec![
                    RuleSpec::new("start", "c", Severity::Notice, "(?i)ohne")
                        .with_keywords(["\\bohne"]),
                    RuleSpec::new("anywhere", "c", Severity::Notice, "(?i)ohne")
                        .with_keywords(["ohne"]),
                    RuleSpec::new("other", "c", Severity::Notice, "(?i)x")
                        .with_keywords(["\\bxyz", "abc"]),
                    RuleSpec::new("dashes", "c", Severity::Notice, "-").with_keywords(["\\bé-é"]),
                ],
                CompileOptions {
                    simd,
                    ..CompileOptions::default()
                },
            )
            .unwrap();
            if automaton {
                // The filter's keyword ids, in order of first appearance.
                let keywords = ["ohne", "xyz", "abc", "é-é"];
                let built = AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(keywords)
                    .unwrap();
                trap.prefilter = Some(Prefilter::Automaton(built));
                assert_eq!(trap.prefilter_name(), "aho-corasick");
            }
            let trap = trap;
            let candidates = |data: &[u8]| trap.candidate_rules(data);
            assert_eq!(candidates(b"KI ohne Filter"), [0, 1], "{simd}");
            assert_eq!(candidates(b"OHNE Filter"), [0, 1]);
            assert_eq!(candidates(b"(\xc3\xa9)ohne"), [0, 1]);
            assert_eq!(candidates(b"viele Einwohner"), [1]);
            assert_eq!(candidates(b"x_ohne 3ohne"), [1]);
            // One occurrence at a word start is enough, whichever comes first.
            assert_eq!(candidates(b"wohne ohne"), [0, 1]);
            // ... however many occurrences inside words come before it.
            let late = format!("{} Ohne", "Einwohner wohnen ".repeat(40));
            assert_eq!(candidates(late.as_bytes()), [0, 1]);
            assert_eq!(candidates(&late.as_bytes()[..late.len() - 5]), [1]);
            assert_eq!(candidates(b"-xyz"), [2]);
            assert_eq!(candidates(b"axyz"), Vec::<usize>::new());
            assert_eq!(candidates(b"zabc"), [2]);
            // An occurrence at a word start that overlaps an earlier one
            // (`é-é` at 1 and at 4 of `xé-é-é`); bytes beyond ASCII match
            // only as written.
            assert_eq!(candidates("xé-é-é".as_bytes()), [3]);
            assert_eq!(candidates("xé-é".as_bytes()), Vec::<usize>::new());
            assert_eq!(candidates("É-É".as_bytes()), Vec::<usize>::new());
            assert_eq!(trap.scan(b"Einwohner").len(), 1);
        }
    }

    #[test]
    fn batch_of_one_rule_is_not_built() {
        let trap = RegexTrap::compile(vec![
            RuleSpec::new("a", "c", Severity::Notice, "a1").with_batch("solo"),
            RuleSpec::new("b", "c", Severity::Notice, "b1"),
        ])
        .unwrap();
        assert!(trap.batches.is_empty());
        assert_eq!(trap.scan(b"a1 b1").len(), 2);
    }

    /// The rules of the built-in `pii` pack (`ext_proc/rules/pii.yaml`): id,
    /// pattern, case flag and batch, read from the file's `- id:`,
    /// `pattern:` (a single-quoted YAML scalar), `case_insensitive:` and
    /// `batch:` lines. No keywords or validators: the tests compare raw
    /// matches.
    fn pii_pack() -> Vec<RuleSpec> {
        let yaml = include_str!("../../ext_proc/rules/pii.yaml");
        let unquote = |value: &str| {
            let inner = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\''));
            inner.expect("a single-quoted scalar").replace("''", "'")
        };
        let mut rules: Vec<RuleSpec> = Vec::new();
        for line in yaml.lines().map(str::trim) {
            if let Some(id) = line.strip_prefix("- id: ") {
                rules.push(RuleSpec::new(id, "pii", Severity::Notice, ""));
            } else if let Some(pattern) = line.strip_prefix("pattern: ") {
                rules.last_mut().expect("a rule").pattern = unquote(pattern);
            } else if line == "case_insensitive: true" {
                rules.last_mut().expect("a rule").case_insensitive = true;
            } else if let Some(batch) = line.strip_prefix("batch: ") {
                rules.last_mut().expect("a rule").batch = Some(batch.to_owned());
            }
        }
        rules
    }

    #[test]
    fn pii_pack_digit_shapes() {
        let trap = RegexTrap::compile(pii_pack()).unwrap();
        let shapes: Vec<(&str, Option<String>)> = trap
            .rules
            .iter()
            .map(|r| {
                let shape = r.digit_shape.map(|s| {
                    let show = |n: Option<usize>| n.map_or("-".to_owned(), |n| n.to_string());
                    let [l, a, z, g] = [s.max_len, s.lead, s.trail, s.gap].map(show);
                    let marker = match s.marker {
                        Marker::Digit => "",
                        Marker::Colon => "colon: ",
                    };
                    let narrowing = match s.narrowing {
                        Narrowing::Tight => "tight",
                        Narrowing::Span(_) => "span",
                        Narrowing::Pairs => "pairs",
                        Narrowing::Whole => "whole",
                    };
                    format!(
                        "{marker}k {} L {l} A {a} Z {z} G {g} M {} I {}: {narrowing}",
                        s.min_digits, s.min_len, s.min_inner
                    )
                });
                (r.spec.id.as_str(), shape)
            })
            .collect();
        let expected = [
            ("pii-email", None),
            (
                "pii-payment-card",
                Some("k 13 L 37 A 0 Z 0 G 1 M 13 I 0: tight"),
            ),
            ("pii-iban", Some("k 2 L 44 A 2 Z 40 G 39 M 12 I 0: span")),
            ("pii-us-ssn", Some("k 9 L 13 A 0 Z 2 G 1 M 11 I 2: tight")),
            (
                "pii-us-ssn-context",
                Some("k 9 L 78 A 67 Z 0 G 1 M 12 I 0: tight"),
            ),
            (
                "pii-phone-e164",
                Some("k 8 L 58 A 1 Z 1 G 3 M 9 I 0: tight"),
            ),
            (
                "pii-phone-us",
                Some("k 10 L 72 A 56 Z 0 G 2 M 13 I 0: tight"),
            ),
            (
                "pii-phone-us-parenthesized",
                Some("k 10 L 14 A 1 Z 0 G 2 M 13 I 2: tight"),
            ),
            (
                "pii-phone-uk",
                Some("k 9 L 85 A 56 Z 0 G 4 M 12 I 0: tight"),
            ),
            ("pii-phone-de", Some("k 6 L 95 A 56 Z 0 G 7 M 9 I 0: tight")),
            (
                "pii-phone-fr",
                Some("k 10 L 88 A 56 Z 0 G 4 M 13 I 0: tight"),
            ),
            (
                "pii-phone-es",
                Some("k 9 L 50 A 30 Z 0 G 3 M 12 I 0: tight"),
            ),
            // Unbounded length, but the digits bound the windows.
            ("net-ipv4", Some("k 4 L - A 0 Z 0 G 1 M 7 I 3: tight")),
            // A match may hold no digit (`fe80::abcd`), but two colons.
            (
                "net-ipv6",
                Some("colon: k 2 L 39 A 4 Z 4 G 4 M 3 I 0: pairs"),
            ),
        ]
        .map(|(id, shape)| (id, shape.map(str::to_owned)));
        assert_eq!(shapes, expected);
    }

    /// Each rule's pattern as a `regex::bytes::Regex`, built as before the
    /// windows.
    fn reference_regexes(trap: &RegexTrap) -> Vec<regex::bytes::Regex> {
        trap.rules()
            .map(|spec| {
                regex::bytes::RegexBuilder::new(&spec.pattern)
                    .case_insensitive(spec.case_insensitive)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .unwrap()
            })
            .collect()
    }

    /// The scan before the windows: each candidate's `regex::bytes::Regex`
    /// (from [`reference_regexes`]) over the whole input, then the same
    /// acceptance filter.
    fn full_text_scan(
        trap: &RegexTrap,
        regexes: &[regex::bytes::Regex],
        data: &[u8],
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        for index in trap.candidate_rules(data) {
            let rule = &trap.rules[index];
            for caps in regexes[index].captures_iter(data) {
                let found = rule
                    .secret_group
                    .and_then(|group| caps.get(group))
                    .or_else(|| caps.get(0))
                    .unwrap();
                rule.push_accepted(index, data, found.range(), &mut out);
            }
        }
        out.sort_unstable_by_key(|f| (f.start, f.end, f.rule_index));
        out.dedup();
        out
    }

    /// A deterministic xorshift generator (no `rand` dependency).
    /// A body of `len`-ish bytes: random digit runs (one token in
    /// `sparsity`, so some bodies get windows and some are dense) between
    /// separators, letters, context words and number shapes.
    fn random_body(rng: &mut XorShift, len: usize, sparsity: usize) -> Vec<u8> {
        const PIECES: &[&str] = &[
            " ",
            " ",
            " ",
            "-",
            ".",
            "(",
            ")",
            "+",
            "/",
            "\n",
            ":",
            "x",
            "ab",
            "é",
            "\u{3000}",
            "phone ",
            "call me at ",
            "Tel: ",
            "my   number is ",
            "SSN ",
            "GB82 WEST ",
            "DE89",
            "+44 ",
            "fe80::",
            "word",
            "AKIA",
            "_",
            "\"",
            ",",
            "\t",
            "ABCD",
            "3f9a0c",
            // Number shapes, so that the rules find something.
            "(212) 555-0147",
            "020 7946 0958",
            "07700 900123",
            "030 12345678",
            "06.12.34.56.78",
            "612 345 678",
            "123-45-6789",
            "536 22 1234",
            "10.0.0.1",
            "4111 1111 1111 1111",
            "GB82WEST12345698765432",
        ];
        let mut body = Vec::with_capacity(len + 32);
        while body.len() < len {
            if rng.below(sparsity) == 0 {
                for _ in 0..=rng.below(12) {
                    body.push(b'0' + u8::try_from(rng.below(10)).unwrap());
                    match rng.below(6) {
                        0 => body.push(b' '),
                        1 => body.push(b'-'),
                        2 => body.push(b'.'),
                        _ => {}
                    }
                }
            } else {
                body.extend_from_slice(PIECES[rng.below(PIECES.len())].as_bytes());
            }
        }
        body
    }

    fn check_equivalence(rules: Vec<RuleSpec>, seed: u64) {
        let trap = RegexTrap::compile(rules).unwrap();
        let regexes = reference_regexes(&trap);
        let mut rng = XorShift(seed);
        let mut windowed = 0;
        let mut found_by = vec![0usize; trap.len()];
        for round in 0..600 {
            let len = [0, 1, 5, 20, 64, 100, 300, 1000, 4096][round % 9];
            let sparsity = [1, 3, 10, 40, 200][round % 5];
            let body = random_body(&mut rng, len, sparsity);
            // The thread's buffers, reused from the bodies before, give
            // what fresh ones give.
            let found = trap.scan(&body);
            assert_eq!(found, trap.scan_with(&body, &mut Scratch::default()));
            let expected = full_text_scan(&trap, &regexes, &body);
            assert_eq!(found, expected, "{:?}", String::from_utf8_lossy(&body));
            for finding in &found {
                found_by[finding.rule_index] += 1;
            }
            let mut digits = Marker::ALL.map(|marker| Digits::new(&body, marker));
            let mut windows = Vec::new();
            windowed += trap
                .rules
                .iter()
                .filter_map(|r| r.digit_shape)
                .filter(|s| {
                    let digits = &mut digits[s.marker.index()];
                    s.windows(digits, &mut windows) == Coverage::Sparse && !windows.is_empty()
                })
                .count();
        }
        // The windowed path ran often (not only the dense fallback), and
        // every windowable rule found something.
        assert!(windowed > 100, "{windowed}");
        let windowable = (0..trap.len()).filter(|&i| trap.rules[i].digit_shape.is_some());
        assert!(windowable.clone().count() >= 5);
        assert!(windowable.clone().all(|i| found_by[i] > 0), "{found_by:?}");
    }

    #[test]
    fn digits_too_spread_out_for_the_length_bound_give_no_window() {
        // k 4, L 14, G 10: a cluster of four digits 11 bytes apart is too
        // long for any match, and its interval comes out reversed.
        let trap = RegexTrap::compile(vec![RuleSpec::new(
            "spread",
            "c",
            Severity::Notice,
            "[0-9]x{10}[0-9]{3}|[0-9]{4}",
        )])
        .unwrap();
        assert!(trap.rules[0].digit_shape.is_some());
        let regexes = reference_regexes(&trap);
        for body in [
            &b"0xxxxxxxxxx1xxxxxxxxxx2xxxxxxxxxx3"[..],
            b"0xxxxxxxxxx1xxxxxxxxxx2xxxxxxxxxx3 0xxxxxxxxxx123 4567",
        ] {
            assert_eq!(trap.scan(body), full_text_scan(&trap, &regexes, body));
        }
        assert_eq!(trap.scan(b"0xxxxxxxxxx123 4567").len(), 2);
    }

    #[test]
    fn windowed_scan_equals_full_text_scan_for_the_pii_pack() {
        let rules = pii_pack();
        assert!(rules.iter().filter(|r| r.batch.is_some()).count() >= 10);
        check_equivalence(rules.clone(), 0x9E37_79B9_7F4A_7C15);
        // Without the batch pass, every candidate searches its windows.
        let unbatched = rules
            .into_iter()
            .map(|r| RuleSpec { batch: None, ..r })
            .collect();
        check_equivalence(unbatched, 0x5851_F42D_4C95_7F2D);
    }

    #[test]
    fn windowed_scan_equals_full_text_scan_for_adversarial_rules() {
        check_equivalence(adversarial_rules(), 0x2545_F491_4F6C_DD1D);
    }

    #[test]
    fn adversarial_rules_take_every_narrowing() {
        let trap = RegexTrap::compile(adversarial_rules()).unwrap();
        let narrowing = |id: &str| {
            let rule = trap.rules.iter().find(|r| r.spec.id == id).unwrap();
            rule.digit_shape.map(|s| s.narrowing)
        };
        for id in ["tight", "tight-unbounded", "tight-unicode"] {
            assert_eq!(narrowing(id), Some(Narrowing::Tight), "{id}");
        }
        assert!(matches!(narrowing("span"), Some(Narrowing::Span(_))));
        assert_eq!(narrowing("pair"), Some(Narrowing::Pairs));
        assert_eq!(narrowing("at-start"), Some(Narrowing::Whole));
        assert_eq!(narrowing("no-digit"), None);
    }

    /// Rules at the edges of what digit windows handle.
    fn adversarial_rules() -> Vec<RuleSpec> {
        let rule = |id: &str, pattern: &str| RuleSpec::new(id, "t", Severity::Notice, pattern);
        vec![
            // Word boundaries on both sides: right at a window's ends.
            rule("bounded", r"(?-u:\b)[0-9]{2}(?-u:\b)"),
            rule("unicode-boundary", r"\b[0-9]{3}\b"),
            // Digits at the far ends of the longest match.
            rule("edges", "[0-9](?:x|ab| ){0,5}[0-9]"),
            // Leftmost-first prefers the shorter branch; lazy repetition.
            rule("short-first", "[0-9]{2}|[0-9]{2}[a-z .]{1,5}"),
            rule("lazy", "(?s)[0-9].{0,10}?[0-9]"),
            // Haystack anchors, which a span must not move.
            rule("at-end", "(?P<secret>[0-9]{2})(?:[ a-z]{0,3}$)?"),
            rule("at-start", "^[0-9 ]{1,4}[0-9]"),
            rule("line", "(?m)^[0-9]{1,3}[.-]?[0-9]$"),
            // A `secret` group in one branch only.
            rule("half-secret", "(?P<secret>[0-9]{3})-|:[0-9]{2}"),
            // Separators between digits that the tight mask takes (also
            // without a bound on their number, and beyond ASCII) ...
            rule("tight", "[0-9]{2}[ .()/+-]{0,3}[0-9]{2} ?[0-9]"),
            rule("tight-unbounded", "[0-9]{2} +[0-9]{2}[a-z]{0,2}"),
            rule("tight-unicode", "[0-9]{2}\u{3000}[0-9]{3}"),
            // Bytes that must lie between the digits (`I`).
            rule("inner", r"(?-u:\b)[0-9]{1,3}(?:[.-][0-9]{1,3}){2,}"),
            rule("inner-copies", "(?:[0-9]{2}[ .]){2}[0-9]"),
            // ... matches made of few kinds of bytes (a long run of
            // them) ...
            rule("span", "[A-Z]{2}[0-9]{2}[A-Z0-9 ]{4,20}"),
            // ... and two digits close together.
            rule("pair", "[0-9]x{0,3}[0-9]"),
            // Not windowable: no digit needed, or no length bound.
            rule("no-digit", "[a-z]{2}[0-9]?"),
            rule("unbounded", "[0-9]+[.][0-9]"),
            rule("unicode-digit", r"\d{2}"),
        ]
    }

    #[test]
    fn a_rule_needing_a_rare_byte_finds_the_same_with_and_without_it() {
        let url = RuleSpec::new(
            "url-creds",
            "secret",
            Severity::Critical,
            r"(?i:https?|ftp)://[a-z0-9.]{1,64}:(?P<secret>[^\s@/]{3,32})@[a-z0-9.-]+",
        )
        .with_keywords(["://"]);
        let plain =
            RuleSpec::new("scheme", "c", Severity::Notice, "(?i)https?://").with_keywords(["://"]);
        let trap = RegexTrap::compile(vec![url, plain]).unwrap();
        assert_eq!(trap.rules[0].required, Some(b'@'));
        assert_eq!(trap.rules[1].required, None);
        assert_eq!(
            trap.scan(b"see https://user:s3cret@db.example and http://x/"),
            [
                Finding {
                    rule_index: 1,
                    start: 4,
                    end: 12
                },
                Finding {
                    rule_index: 0,
                    start: 17,
                    end: 23
                },
                Finding {
                    rule_index: 1,
                    start: 39,
                    end: 46
                },
            ]
        );
        let regexes = reference_regexes(&trap);
        let pieces: [&[u8]; 12] = [
            b"ftp://u:pw123@h.example",
            b"https://",
            b"FTP://",
            b"user",
            b":",
            b"s3cret",
            b"@",
            b"db.example",
            b" ",
            b"/",
            b"x@y",
            b"\n",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let (mut without_at, mut found) = (0, 0);
        for round in 0..400 {
            let mut body = Vec::new();
            for _ in 0..round % 40 {
                body.extend_from_slice(pieces[rng.below(pieces.len())]);
            }
            let findings = trap.scan(&body);
            assert_eq!(findings, full_text_scan(&trap, &regexes, &body), "{body:?}");
            without_at +=
                usize::from(!body.contains(&b'@') && body.windows(3).any(|w| w == b"://"));
            found += findings.iter().filter(|f| f.rule_index == 0).count();
        }
        assert!(without_at > 10 && found > 100, "{without_at} {found}");
    }

    #[test]
    fn empty_matching_pattern_is_rejected() {
        let err =
            RegexTrap::compile(vec![RuleSpec::new("e", "c", Severity::Notice, "a*")]).unwrap_err();
        assert!(matches!(err, TrapError::InvalidPattern { ref rule_id, .. } if rule_id == "e"));
    }
}
