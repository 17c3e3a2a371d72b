//! Whether a rule's keywords cover its regex: every string the regex can
//! match must hold one of the keywords, or the prefilter, which runs a
//! rule's regex only on bodies where one of its keywords occurs, drops
//! some true matches without a trace. A rule pack is checked at load, and
//! a gap is reported with a short string that matches without any
//! keyword (`stop  following` with two spaces, where the keyword is
//! `stop follow`), so that the author sees what to add.
//!
//! The check is exact and polynomial in the size of the regex: a
//! breadth-first search over the product of the regex's Thompson NFA (no
//! subset construction, so no blow-up on counted repetitions) and a DFA
//! that finds the keywords as the filters do (ASCII case-insensitive, a
//! space matching any run of white space as in [`crate::whitespace`], a
//! word-start keyword only at the start of a word). A
//! product state pairs an NFA state with the keyword DFA's state,
//! and adds the class of the byte before (for `\b`, `^`, `$`) and where a
//! lookalike sequence stands (see below). Paths that complete a keyword
//! are dropped; the search succeeds when it reaches the NFA's match state.
//! The match may start anywhere in a body, so the search starts at the
//! start of a body and after every byte, that byte included in the
//! example.
//!
//! Two kinds of string can be left out, because a normalised view turns
//! them into strings that are checked (the caller says which, as the views
//! exist only where normalisation is on):
//!
//! * those with `U+017F` (`ſ`) or `U+212A` (Kelvin sign), the only
//!   characters that Unicode case folding makes equal to an ASCII letter
//!   (`s`, `k`): the canonical view's NFKC maps them to that letter;
//! * those with any of the bytes the caller names: the leet view folds
//!   `0 1 3 4 5 7 9 @ $` to letters for the injection rules, which are
//!   scanned there too.
//!
//! A Unicode word boundary next to a byte from `0x80` up depends on the
//! whole character around it, which the search, a byte at a time, does not
//! know: it takes such a boundary to hold, so it searches more strings than
//! the pattern matches (never fewer), and a gap found that way is reported
//! only if the pattern itself matches the example. A search that would
//! visit more than [`MAX_STATES`] states or take more than [`MAX_STEPS`]
//! steps, or whose example the pattern does not match, gives up and says
//! so ([`Coverage::Unknown`]): that is a limit of the check, not an error
//! of the rule.

use std::collections::HashMap;

use std::fmt::Write as _;

use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::nfa::thompson::{self, State, WhichCaptures, NFA};
use regex_automata::util::look::{Look, LookMatcher, LookSet};
use regex_automata::util::primitives::StateID;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind};

use crate::error::TrapError;
use crate::rule::WORD_START;
use crate::whitespace::{ASCII_SPACES, WIDE_SPACES};

type KeywordDfa = dense::DFA<Vec<u32>>;
type KeywordState = StateID;

/// Most product states one check visits before it gives up.
pub const MAX_STATES: usize = 1_000_000;

/// The answer of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// Every match (of the strings checked) holds a keyword.
    Covered,
    /// This body holds a match and no keyword: a short one (breadth first;
    /// a match that needs a byte after it can be reported before a shorter
    /// one at the same depth).
    Gap(Vec<u8>),
    /// The search could not tell: it hit [`MAX_STATES`] or [`MAX_STEPS`],
    /// or the pattern itself does not match the example it found (see
    /// `Search::holds`).
    Unknown,
}

/// Most steps (a byte tried from a state the search reached) one check
/// takes before it gives up: a pattern such as `(?:a?){3000}key` has few
/// states but long closures.
pub const MAX_STEPS: usize = 50_000_000;

/// The bytes in the order the search tries them, so that the example found
/// reads as text where it can: lower-case letters, space, digits, capitals,
/// then the rest.
fn byte_order() -> Vec<u8> {
    let mut order: Vec<u8> = (b'a'..=b'z').collect();
    order.push(b' ');
    order.extend(b'0'..=b'9');
    order.extend(b'A'..=b'Z');
    let rest: Vec<u8> = (0..=u8::MAX).filter(|b| !order.contains(b)).collect();
    order.extend(rest);
    order
}

/// The class of a byte as the look-around assertions see it, as one byte
/// of that class: a word byte, line feed, carriage return, other ASCII, or
/// a byte from `0x80` up.
fn class_of(b: u8) -> u8 {
    match b {
        b'\n' | b'\r' => b,
        _ if b.is_ascii_alphanumeric() || b == b'_' => b'a',
        0x80.. => 0x80,
        _ => b' ',
    }
}

/// Whether `look` is one of the Unicode word-boundary assertions.
fn is_unicode_word_look(look: Look) -> bool {
    matches!(
        look,
        Look::WordUnicode
            | Look::WordUnicodeNegate
            | Look::WordStartUnicode
            | Look::WordEndUnicode
            | Look::WordStartHalfUnicode
            | Look::WordEndHalfUnicode
    )
}

/// Where the search stands in the UTF-8 of `ſ` (`C5 BF`) and of the Kelvin
/// sign (`E2 84 AA`): after `C5`, after `E2`, after `E2 84`, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lookalike {
    None,
    AfterC5,
    AfterE2,
    AfterE284,
}

impl Lookalike {
    /// `None` when `b` would complete a left-out character.
    fn then(self, b: u8) -> Option<Self> {
        match (self, b) {
            (Self::AfterC5, 0xBF) | (Self::AfterE284, 0xAA) => None,
            (_, 0xC5) => Some(Self::AfterC5),
            (_, 0xE2) => Some(Self::AfterE2),
            (Self::AfterE2, 0x84) => Some(Self::AfterE284),
            _ => Some(Self::None),
        }
    }
}

/// One state of the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Node {
    nfa: StateID,
    keyword: KeywordState,
    /// [`class_of`] the byte before, `None` at the start of the body.
    before: Option<u8>,
    lookalike: Lookalike,
}

/// Whether every string that `pattern` (parsed as the trap parses it)
/// matches holds one of `keywords`, compared ASCII case-insensitively,
/// leaving out strings with a byte of `left_out` (and those the module
/// docs name).
///
/// # Errors
/// [`TrapError::InvalidPattern`] when the pattern does not compile, and
/// [`TrapError::InvalidRule`] when the keywords are empty or cannot be
/// built into an automaton.
pub fn check<K: AsRef<[u8]>>(
    rule_id: &str,
    pattern: &str,
    case_insensitive: bool,
    keywords: &[K],
    left_out: &[u8],
    skip_lookalikes: bool,
) -> Result<Coverage, TrapError> {
    if keywords.is_empty() || keywords.iter().any(|k| k.as_ref().is_empty()) {
        return Err(TrapError::invalid_rule(
            rule_id,
            "keywords",
            "a keyword coverage check needs non-empty keywords".to_owned(),
        ));
    }
    // As the trap parses the pattern (see `regex_trap::compile_rule`).
    let syntax_config = syntax::Config::new()
        .case_insensitive(case_insensitive)
        .utf8(false);
    let invalid = |reason: String| TrapError::InvalidPattern {
        rule_id: rule_id.to_owned(),
        reason,
    };
    let nfa = NFA::compiler()
        .syntax(syntax_config)
        .configure(
            thompson::Config::new()
                .utf8(false)
                .which_captures(WhichCaptures::None),
        )
        .build(pattern)
        .map_err(|e| invalid(e.to_string()))?;
    let automaton = dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(StartKind::Unanchored),
        )
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(&keyword_pattern(keywords))
        .map_err(|e| {
            TrapError::invalid_rule(
                rule_id,
                "keywords",
                format!("cannot build the keyword automaton: {e}"),
            )
        })?;
    let mut skip = [false; 256];
    for &b in left_out {
        skip[usize::from(b)] = true;
    }
    let found = Search::new(&nfa, &automaton, skip, skip_lookalikes).run();
    if let Coverage::Gap(example) = &found {
        // The search may take a Unicode word boundary to hold where it does
        // not (see `Search::holds`): a gap stands only if the pattern itself
        // matches the example.
        let regex = regex_automata::meta::Builder::new()
            .syntax(syntax_config)
            .build(pattern)
            .map_err(|e| invalid(e.to_string()))?;
        if !regex.is_match(example.as_slice()) {
            return Ok(Coverage::Unknown);
        }
    }
    Ok(found)
}

/// A pattern (bytes, no Unicode) matching where any of `keywords` occurs
/// as the keyword filters find it: ASCII letters in either case, a space
/// as a run of white space, a word-start keyword after the start or a byte
/// that is no ASCII letter, digit or `_`.
fn keyword_pattern<K: AsRef<[u8]>>(keywords: &[K]) -> String {
    let mut space = String::from("(?:[");
    for b in ASCII_SPACES {
        let _ = write!(space, "\\x{b:02X}");
    }
    space.push(']');
    for wide in WIDE_SPACES {
        space.push('|');
        for b in wide {
            let _ = write!(space, "\\x{b:02X}");
        }
    }
    space.push_str(")+");
    let mut pattern = String::new();
    for (i, keyword) in keywords.iter().enumerate() {
        let mut text = keyword.as_ref();
        if i > 0 {
            pattern.push('|');
        }
        pattern.push_str("(?:");
        if let Some(rest) = text.strip_prefix(WORD_START.as_bytes()) {
            pattern.push_str("(?:^|[^A-Za-z0-9_])");
            text = rest;
        }
        for &b in text {
            match b {
                b' ' => pattern.push_str(&space),
                _ if b.is_ascii_alphabetic() => {
                    let _ = write!(
                        pattern,
                        "[{}{}]",
                        char::from(b.to_ascii_lowercase()),
                        char::from(b.to_ascii_uppercase())
                    );
                }
                _ => {
                    let _ = write!(pattern, "\\x{b:02X}");
                }
            }
        }
        pattern.push(')');
    }
    pattern
}

/// The state of one [`check`].
struct Search<'a> {
    nfa: &'a NFA,
    keywords: &'a KeywordDfa,
    skip: [bool; 256],
    /// Leave out strings with U+017F or U+212A.
    skip_lookalikes: bool,
    order: Vec<u8>,
    looks: LookMatcher,
    /// The states found, each with the one it was reached from and the byte
    /// read (for the first: the byte before the match, if any).
    nodes: Vec<(Node, Option<usize>, Option<u8>)>,
    seen: HashMap<Node, usize>,
    /// Per NFA state: the byte-reading and match states its empty
    /// transitions reach, with the assertions passed on the way.
    closures: HashMap<StateID, Vec<(StateID, LookSet)>>,
    /// Bytes tried so far (see [`MAX_STEPS`]).
    steps: usize,
}

impl<'a> Search<'a> {
    fn new(
        nfa: &'a NFA,
        keywords: &'a KeywordDfa,
        skip: [bool; 256],
        skip_lookalikes: bool,
    ) -> Self {
        Self {
            nfa,
            keywords,
            skip,
            skip_lookalikes,
            order: byte_order(),
            looks: LookMatcher::new(),
            nodes: Vec::new(),
            seen: HashMap::new(),
            closures: HashMap::new(),
            steps: 0,
        }
    }

    fn run(mut self) -> Coverage {
        let start = self.keywords_start();
        // The match may start the body, or follow any byte: every byte is
        // tried (the keyword DFA tells apart those that begin a keyword),
        // and nodes that agree are kept once.
        self.add(
            Node {
                nfa: self.nfa.start_anchored(),
                keyword: start,
                before: None,
                lookalike: Lookalike::None,
            },
            None,
            None,
        );
        for i in 0..self.order.len() {
            let b = self.order[i];
            if self.skip[usize::from(b)] {
                continue;
            }
            let (Some(keyword), Some(lookalike)) = (
                self.keyword_after(start, b),
                self.lookalike_after(Lookalike::None, b),
            ) else {
                continue;
            };
            let node = Node {
                nfa: self.nfa.start_anchored(),
                keyword,
                before: Some(class_of(b)),
                lookalike,
            };
            self.add(node, None, Some(b));
        }
        let mut next = 0;
        while next < self.nodes.len() {
            if self.nodes.len() > MAX_STATES || self.steps > MAX_STEPS {
                return Coverage::Unknown;
            }
            if let Some(example) = self.expand(next) {
                return Coverage::Gap(example);
            }
            next += 1;
        }
        Coverage::Covered
    }

    /// Where the search stands in a lookalike character after `b`; `None`
    /// when `b` completes one that is left out.
    fn lookalike_after(&self, now: Lookalike, b: u8) -> Option<Lookalike> {
        if self.skip_lookalikes {
            now.then(b)
        } else {
            Some(Lookalike::None)
        }
    }

    fn keywords_start(&self) -> KeywordState {
        self.keywords
            .start_state(&start::Config::new().anchored(Anchored::No))
            .expect("the keyword DFA has an unanchored start state and no look-behind")
    }

    /// The keyword DFA after `b`; `None` when a keyword has ended by then
    /// (the DFA reports a match one byte late, so this sees keywords that
    /// ended before `b`; [`Self::ends_covered`] sees the rest).
    fn keyword_after(&self, k: KeywordState, b: u8) -> Option<KeywordState> {
        let next = self.keywords.next_state(k, b);
        (!self.keywords.is_match_state(next)).then_some(next)
    }

    /// Whether a keyword ends at the end of a body that brought the keyword
    /// DFA to `k`.
    fn ends_covered(&self, k: KeywordState) -> bool {
        self.keywords
            .is_match_state(self.keywords.next_eoi_state(k))
    }

    fn add(&mut self, node: Node, from: Option<usize>, byte: Option<u8>) {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.seen.entry(node) {
            slot.insert(self.nodes.len());
            self.nodes.push((node, from, byte));
        }
    }

    /// The bytes read to reach node `at`, the byte before the match first.
    fn path(&self, mut at: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        loop {
            let (_, from, byte) = self.nodes[at];
            bytes.extend(byte);
            match from {
                Some(previous) => at = previous,
                None => break,
            }
        }
        bytes.reverse();
        bytes
    }

    /// Whether every assertion of `set` can hold between `before` and
    /// `next` (`None`: the start or the end of the body). A Unicode word
    /// boundary next to a byte from `0x80` up depends on the whole
    /// character, which one byte does not tell: it is taken to hold, so the
    /// search covers more strings than the pattern matches, never fewer (a
    /// gap found that way is confirmed with the pattern itself).
    fn holds(&self, set: LookSet, before: Option<u8>, next: Option<u8>) -> bool {
        if set.is_empty() {
            return true;
        }
        let wide = before.is_some_and(|b| b >= 0x80) || next.is_some_and(|b| b >= 0x80);
        let mut haystack = [0u8; 2];
        let mut len = 0;
        if let Some(b) = before {
            haystack[len] = b;
            len += 1;
        }
        let at = len;
        if let Some(b) = next {
            haystack[len] = b;
            len += 1;
        }
        set.iter().all(|look| {
            (wide && is_unicode_word_look(look)) || self.looks.matches(look, &haystack[..len], at)
        })
    }

    /// Follow the states that read nothing from `from`, collecting the
    /// assertions passed: the states that read a byte or match.
    fn closure(&mut self, from: StateID) -> Vec<(StateID, LookSet)> {
        if let Some(found) = self.closures.get(&from) {
            return found.clone();
        }
        let mut found = Vec::new();
        let mut stack = vec![(from, LookSet::empty())];
        let mut visited = std::collections::HashSet::new();
        while let Some((id, set)) = stack.pop() {
            if !visited.insert((id, set.bits)) {
                continue;
            }
            match self.nfa.state(id) {
                State::ByteRange { .. }
                | State::Sparse(_)
                | State::Dense(_)
                | State::Match { .. } => found.push((id, set)),
                State::Look { look, next } => stack.push((*next, set.insert(*look))),
                State::Union { alternates } => {
                    stack.extend(alternates.iter().rev().map(|&alt| (alt, set)));
                }
                State::BinaryUnion { alt1, alt2 } => {
                    stack.push((*alt2, set));
                    stack.push((*alt1, set));
                }
                State::Capture { next, .. } => stack.push((*next, set)),
                State::Fail => {}
            }
        }
        self.closures.insert(from, found.clone());
        found
    }

    /// The state `b` leads to from NFA state `id`, if any.
    fn step(&self, id: StateID, b: u8) -> Option<StateID> {
        match self.nfa.state(id) {
            State::ByteRange { trans } => trans.matches_byte(b).then_some(trans.next),
            State::Sparse(sparse) => sparse
                .transitions
                .iter()
                .find(|t| t.matches_byte(b))
                .map(|t| t.next),
            State::Dense(dense) => {
                Some(dense.transitions[usize::from(b)]).filter(|&next| next != StateID::ZERO)
            }
            _ => None,
        }
    }

    /// Expand node `at`: a gap's example, if this node completes one.
    fn expand(&mut self, at: usize) -> Option<Vec<u8>> {
        let (node, ..) = self.nodes[at];
        for (id, set) in self.closure(node.nfa) {
            let matches = matches!(self.nfa.state(id), State::Match { .. });
            if matches && self.holds(set, node.before, None) && !self.ends_covered(node.keyword) {
                return Some(self.path(at));
            }
            for i in 0..self.order.len() {
                let b = self.order[i];
                self.steps += 1;
                if self.skip[usize::from(b)] || !self.holds(set, node.before, Some(b)) {
                    continue;
                }
                let Some(lookalike) = self.lookalike_after(node.lookalike, b) else {
                    continue;
                };
                let Some(keyword) = self.keyword_after(node.keyword, b) else {
                    continue;
                };
                if matches && !self.ends_covered(keyword) {
                    // The match ends here; the byte after it only had to
                    // satisfy the assertions, without completing a keyword.
                    let mut example = self.path(at);
                    example.push(b);
                    return Some(example);
                }
                if matches {
                    continue;
                }
                if let Some(next) = self.step(id, b) {
                    let node = Node {
                        nfa: next,
                        keyword,
                        before: Some(class_of(b)),
                        lookalike,
                    };
                    self.add(node, Some(at), Some(b));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;

    fn gap(pattern: &str, ci: bool, keywords: &[&str], left_out: &[u8]) -> Option<String> {
        match check("t", pattern, ci, keywords, left_out, true).expect("valid rule") {
            Coverage::Covered => None,
            Coverage::Gap(example) => Some(String::from_utf8_lossy(&example).into_owned()),
            Coverage::Unknown => panic!("search gave up"),
        }
    }

    #[test]
    fn keywords_inside_every_match_cover_the_rule() {
        assert_eq!(gap(r"ghp_[A-Za-z0-9]{36}", false, &["ghp_"], b""), None);
        assert_eq!(
            gap(r"(?i)ignore (all|any) rules", true, &["ignore"], b""),
            None
        );
        // Case: the keywords are compared ASCII case-insensitively.
        assert_eq!(gap(r"AKIA[0-9A-Z]{16}", false, &["akia"], b""), None);
    }

    #[test]
    fn a_match_without_a_keyword_is_found_and_shortest() {
        // The keyword `nore` is not in `ignoring`.
        let example = gap(r"(?i)ign(?:ore|oring) rules", true, &["nore"], b"").unwrap();
        assert_eq!(example.trim(), "ignoring rules");
        // A space in a keyword covers any run of white space (`\s+`), but
        // not other bytes between the words.
        assert_eq!(gap(r"stop\s+following", false, &["stop follow"], b""), None);
        let example = gap(r"stop[\s-]+following", false, &["stop follow"], b"").unwrap();
        assert_eq!(example.trim(), "stop-following");
    }

    #[test]
    fn a_word_start_keyword_covers_only_matches_at_a_word_start() {
        let covered = gap(r"(?-u:\b)no\s+longer", false, &["\\bno longer"], b"");
        assert_eq!(covered, None);
        let example = gap(r"no\s+longer", false, &["\\bno longer"], b"").unwrap();
        assert_eq!(example, "ano longer");
    }

    #[test]
    fn the_byte_before_and_after_must_satisfy_the_boundaries() {
        // `\bkey\b`: the example has a non-word byte (or nothing) around.
        let example = gap(r"(?-u:\b)key(?-u:\b)", false, &["zzz"], b"").unwrap();
        assert_eq!(example.trim(), "key");
        // Every match of `\bab` holds `ab`; a keyword `xab` does not cover it.
        assert!(gap(r"(?-u:\b)ab", false, &["xab"], b"").is_some());
        assert_eq!(gap(r"(?-u:\b)ab", false, &["ab"], b""), None);
        // A keyword that ends in the byte after the match does not cover it:
        // that byte may be anything the boundary allows.
        assert!(gap(r"abc(?-u:\b)", false, &["abc "], b"").is_some());
    }

    #[test]
    fn left_out_bytes_and_lookalikes_are_not_explored() {
        // `[o0]`: the `0` variant is left to the leet view.
        assert!(gap(r"f[o0]rget", false, &["forget"], b"").is_some());
        assert_eq!(gap(r"f[o0]rget", false, &["forget"], b"0"), None);
        // (?i) makes `s` match `ſ` and `k` the Kelvin sign: NFKC's business.
        assert_eq!(gap(r"(?i)secret key", true, &["secret key"], b""), None);
    }

    #[test]
    fn an_invalid_pattern_or_empty_keywords_is_an_error() {
        assert!(check("t", "(", false, &["a"], b"", true).is_err());
        assert!(check::<&str>("t", "a", false, &[], b"", true).is_err());
        assert!(check("t", "a", false, &[""], b"", true).is_err());
    }

    /// Whether `haystack` holds a keyword as the filters find it (no
    /// word-start keywords here): squeezed white space, ASCII case folded.
    fn holds_keyword(haystack: &[u8], keywords: &[String]) -> bool {
        let mut spaces = crate::whitespace::SpaceBuffers::default();
        let text = spaces.collapsed(haystack).to_ascii_lowercase();
        keywords
            .iter()
            .any(|k| text.windows(k.len()).any(|w| w == k.as_bytes()))
    }

    #[test]
    fn verdicts_agree_with_random_strings() {
        let pieces = [
            "ab",
            "b",
            "c",
            "(?:a|bc)",
            "\\s+",
            "[a-c]",
            "c?",
            " ",
            "x*",
            "(?:ab|c)+",
            "\\d",
        ];
        let alphabet: [&[u8]; 9] = [b"a", b"b", b"c", b"x", b" ", b"\t", b"1", b"ab", b"  "];
        let mut rng = XorShift(0xC0DE_5EED);
        let (mut gaps, mut covered) = (0, 0);
        for _ in 0..1500 {
            let pattern: String = (0..=rng.below(4))
                .map(|_| pieces[rng.below(pieces.len())])
                .collect();
            let keywords: Vec<String> = (0..=rng.below(2))
                .map(|_| ["ab", "a", "bc", "c c", "a b", "x", "cb"][rng.below(7)].to_owned())
                .collect();
            let Ok(re) = regex::bytes::Regex::new(&pattern) else {
                continue;
            };
            if re.is_match(b"") {
                continue;
            }
            match check("t", &pattern, false, &keywords, b"", true).expect("valid") {
                Coverage::Gap(example) => {
                    gaps += 1;
                    assert!(re.is_match(&example), "{pattern} {keywords:?} {example:?}");
                    assert!(
                        !holds_keyword(&example, &keywords),
                        "{pattern} {keywords:?} {example:?}"
                    );
                }
                Coverage::Covered => {
                    covered += 1;
                    for _ in 0..200 {
                        let s: Vec<u8> = (0..rng.below(8))
                            .flat_map(|_| alphabet[rng.below(alphabet.len())].iter().copied())
                            .collect();
                        if re.is_match(&s) {
                            assert!(holds_keyword(&s, &keywords), "{pattern} {keywords:?} {s:?}");
                        }
                    }
                }
                Coverage::Unknown => panic!("small pattern gave up"),
            }
        }
        assert!(gaps > 50 && covered > 50, "{gaps} gaps, {covered} covered");
    }

    #[test]
    fn every_byte_before_the_match_is_tried() {
        // `\B` needs a word byte before the match; `a` would complete the
        // keyword `a` or start `api`, but `b` does neither (review finding).
        assert_eq!(gap(r"(?-u:\B)x", false, &["a"], b"").as_deref(), Some("bx"));
        assert_eq!(
            gap(r"(?-u:\B)pi", false, &["api"], b"").as_deref(),
            Some("bpi")
        );
    }

    #[test]
    fn unicode_word_boundaries_next_to_wide_characters() {
        // `é` is a word character: `\bclé\b` matches `clé:`; no keyword.
        let example = gap(r"(?i)\bclé\b\s*[:=]", true, &["zzz"], b"").unwrap();
        assert!(example.to_lowercase().contains("clé"), "{example:?}");
        // A rule whose keyword is its own word is covered, not refused
        // with an example the pattern does not match.
        match check("t", r"\bпароль\b", false, &["\\bпароль"], b"", true).unwrap() {
            Coverage::Covered | Coverage::Unknown => {}
            Coverage::Gap(example) => panic!("false gap {:?}", String::from_utf8_lossy(&example)),
        }
    }

    #[test]
    fn lookalikes_are_left_out_only_when_asked() {
        assert_eq!(gap(r"(?i)secret", true, &["secret"], b""), None);
        let kept = check("t", r"(?i)secret", true, &["secret"], b"", false).unwrap();
        assert!(matches!(kept, Coverage::Gap(_)), "{kept:?}");
    }

    #[test]
    fn a_search_too_long_gives_up() {
        let verdict = check("t", r"(?:a?){3000}key", false, &["key"], b"", true).unwrap();
        assert!(
            matches!(verdict, Coverage::Unknown | Coverage::Covered),
            "{verdict:?}"
        );
    }
}
