//! When the leetspeak view is worth scanning.
//!
//! The leet view folds `0 1 3 4 5 7 9 @ $` to letters in words that hold
//! them (see `normalize::text::leet_words`), and only the injection rules
//! (the leet trap) scan it. Scanning it costs a second pass of that trap's
//! keyword filter, so the scan looks at it only when a match there is
//! possible. A rule's match holds one of its keywords (the coverage check of
//! `keyword_coverage.rs` proves it for every built-in rule), so a match in
//! the view needs a keyword occurrence in the view, and that occurrence
//! either
//!
//! 1. touches no folded byte, and then it is in the source text too, where
//!    the main trap's filter already reported the rule (the caller checks
//!    that), or
//! 2. overlaps a folded word. Its part inside that word is a piece of the
//!    keyword cut at the keyword's word boundaries: the whole keyword inside
//!    the word, the keyword's first piece ending the word, its last piece
//!    starting the word, or a middle piece equal to the word. [`LeetGate`]
//!    holds those pieces and the separators next to them
//!    ([`LeetGate::check`] looks the folded word up) and the caller confirms a hit by running the trap's filter over
//!    the text around the word ([`around`]).
//!
//! Both tests only ever say "maybe" where a keyword could be, so the view
//! is scanned whenever it could match: a body whose leet digits sit at a
//! word's edge (`prompt i5`, `al5`, `4blehnt`) meets the injection rules
//! as surely as `1gn0re`.

use std::collections::HashMap;
use std::ops::Range;

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

use crate::whitespace::{space_at, ASCII_SPACES, WIDE_SPACES};

/// Leetspeak fold of one byte: `0 1 3 4 5 7 9 @ $` to `o i e a s t g a s`
/// (1 always reads as i: rules write an l as `[li]`).
pub(crate) fn fold_byte(b: u8) -> Option<u8> {
    Some(match b {
        b'0' => b'o',
        b'1' => b'i',
        b'3' => b'e',
        b'4' | b'@' => b'a',
        b'5' | b'$' => b's',
        b'7' => b't',
        b'9' => b'g',
        _ => return None,
    })
}

/// Whether `c` is a word character as the leet view sees it:
/// `[A-Za-z0-9@$]` or a non-ASCII letter.
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '@' || c == '$'
    } else {
        c.is_alphabetic()
    }
}

/// The pieces of a trap's keywords, cut at their word boundaries, that a
/// folded word may hold.
#[derive(Debug)]
pub struct LeetGate {
    /// Whole keywords of one word (`jailbreak`): they may sit anywhere in a
    /// word (an anchored walk from each byte).
    whole: Option<DFA>,
    /// Last and middle pieces of keywords of several words (`as` of `act
    /// as`, `you` of `now you are`): a word starts with a last piece or is a
    /// middle one (an anchored walk from the word's start).
    starts: Option<DFA>,
    /// First pieces, reversed (`act` of `act as`): a word ends with one (an
    /// anchored walk back from the word's end).
    ends: Option<DFA>,
    /// For each piece of `starts`: what it needs around the word.
    starts_meta: Vec<Around>,
    /// For each piece of `ends`: what it needs around the word.
    ends_meta: Vec<Around>,
    /// The length of the shortest of `whole`.
    shortest_whole: usize,
    /// The longest keyword without its spaces, in bytes: how far from a
    /// word a keyword over it can reach.
    reach: usize,
}

/// Pieces, de-duplicated per kind, with the bytes that may sit next to
/// each (the union over the keywords that hold it).
#[derive(Default)]
struct Pieces {
    texts: Vec<Vec<u8>>,
    meta: Vec<Around>,
    index: HashMap<(Vec<u8>, bool), usize>,
}

/// What a piece needs around a word: whether it is a middle piece (the
/// whole word, with its keyword going on at both sides), the bytes that may
/// end the text before the word and those that may start the text after it.
type Around = (bool, ByteSet, ByteSet);

impl Pieces {
    fn add(&mut self, text: Vec<u8>, middle: bool, before: ByteSet, after: ByteSet) {
        let at = *self.index.entry((text.clone(), middle)).or_insert_with(|| {
            self.texts.push(text);
            self.meta
                .push((middle, ByteSet::default(), ByteSet::default()));
            self.texts.len() - 1
        });
        self.meta[at].1.union(before);
        self.meta[at].2.union(after);
    }

    fn dfa(&self) -> Option<DFA> {
        anchored_dfa(&self.texts)
    }
}

/// An anchored DFA of `patterns`, reporting every pattern that ends at a
/// position (none when there are no patterns).
fn anchored_dfa<P: AsRef<[u8]>>(patterns: &[P]) -> Option<DFA> {
    (!patterns.is_empty()).then(|| {
        DFA::builder()
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Anchored)
            .build(patterns)
            .expect("keywords of a compiled trap build an automaton")
    })
}

impl LeetGate {
    /// The gate of a trap with these keywords (ASCII-lowercased, without
    /// the `\b` mark of a word-start keyword).
    pub fn new<K: AsRef<str>>(keywords: &[K]) -> Self {
        let mut whole: Vec<&str> = Vec::new();
        let (mut starts, mut ends) = (Pieces::default(), Pieces::default());
        let mut reach = 0;
        for keyword in keywords {
            let keyword = keyword.as_ref();
            reach = reach.max(keyword.bytes().filter(|&b| b != b' ').count());
            // Pieces between runs of non-word characters (`n't` gives `n`,
            // `t`), and the runs (separators) between them.
            let (mut cut, mut seps): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
            let (mut at, mut in_word) = (0, true);
            for (i, c) in keyword.char_indices() {
                match (is_word_char(c), in_word) {
                    (false, true) => {
                        cut.push(&keyword[at..i]);
                        (at, in_word) = (i, false);
                    }
                    (true, false) => {
                        seps.push(&keyword[at..i]);
                        (at, in_word) = (i, true);
                    }
                    _ => {}
                }
            }
            if in_word {
                cut.push(&keyword[at..]);
            } else {
                seps.push(&keyword[at..]);
                cut.push("");
            }
            let last = cut.len() - 1;
            if last == 0 {
                whole.push(keyword);
                continue;
            }
            for (i, piece) in cut.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                // The separator's byte next to the word on each side (a
                // non-empty separator is there whenever the piece is not
                // the keyword's first, resp. last).
                let before = i
                    .checked_sub(1)
                    .and_then(|j| seps[j].chars().next_back())
                    .map_or_else(ByteSet::default, ByteSet::last_byte_of);
                let after = seps
                    .get(i)
                    .and_then(|sep| sep.chars().next())
                    .map_or_else(ByteSet::default, ByteSet::first_byte_of);
                if i == 0 {
                    ends.add(piece.bytes().rev().collect(), false, before, after);
                } else {
                    // Last and middle pieces start the word.
                    starts.add(piece.as_bytes().to_vec(), i != last, before, after);
                }
            }
        }
        let shortest_whole = whole.iter().map(|k| k.len()).min().unwrap_or(0);
        let whole = anchored_dfa(&whole);
        Self {
            whole,
            starts: starts.dfa(),
            ends: ends.dfa(),
            starts_meta: starts.meta,
            ends_meta: ends.meta,
            shortest_whole,
            reach,
        }
    }

    /// How far (in bytes other than white space) a keyword overlapping a
    /// word can reach past either end of it.
    pub fn reach(&self) -> usize {
        self.reach
    }

    /// Whether the fold of the word `text[word]` (folded and
    /// ASCII-lowercased here, into `buf`) may be part of a keyword
    /// occurrence that covers one of its folded bytes: [`Fold::Holds`] when
    /// a whole keyword lies inside it, [`Fold::Maybe`] when a piece sits at
    /// its edge with the right separator next to it (then the rest of the
    /// keyword is to be looked for around it), else [`Fold::Never`].
    pub fn check(&self, text: &[u8], word: Range<usize>, buf: &mut Vec<u8>) -> Fold {
        let bytes = &text[word.clone()];
        buf.clear();
        let (mut first, mut last) = (usize::MAX, 0);
        for (i, &b) in bytes.iter().enumerate() {
            match fold_byte(b) {
                Some(l) => {
                    first = first.min(i);
                    last = i;
                    buf.push(l);
                }
                None => buf.push(b.to_ascii_lowercase()),
            }
        }
        if first == usize::MAX {
            return Fold::Never;
        }
        let n = buf.len();
        let folded = |range: Range<usize>| bytes[range].iter().any(|&b| fold_byte(b).is_some());
        if let Some(whole) = self.whole.as_ref().filter(|_| n >= self.shortest_whole) {
            // From each start, a keyword over a folded byte.
            let holds = (0..=n - self.shortest_whole).any(|at| {
                anchored_matches(whole, buf[at..].iter().copied(), |len, _| {
                    folded(at..at + len)
                })
            });
            if holds {
                return Fold::Holds;
            }
        }
        let prev = word.start.checked_sub(1).map(|i| text[i]);
        let next = text.get(word.end).copied();
        let (before_ok, after_ok) = (
            |set: ByteSet| prev.is_some_and(|b| set.contains(b)),
            |set: ByteSet| next.is_some_and(|b| set.contains(b)),
        );
        // A last piece starting the word over a folded byte, or a middle
        // piece that is the word, with bytes its keyword may have around.
        let start_fits = |len: usize, (middle, before, after): Around| {
            len > first && before_ok(before) && (!middle || (len == n && after_ok(after)))
        };
        // A first piece ending the word over a folded byte.
        let end_fits = |len: usize, (_, _, after): Around| n - len <= last && after_ok(after);
        let fits = self.starts.as_ref().is_some_and(|dfa| {
            anchored_matches(dfa, buf.iter().copied(), |len, pid| {
                start_fits(len, self.starts_meta[pid])
            })
        }) || self.ends.as_ref().is_some_and(|dfa| {
            anchored_matches(dfa, buf.iter().rev().copied(), |len, pid| {
                end_fits(len, self.ends_meta[pid])
            })
        });
        if fits {
            Fold::Maybe
        } else {
            Fold::Never
        }
    }
}

/// Walk `dfa` (anchored) over `bytes`; whether `fits(length, pattern)`
/// holds for some piece that `bytes` starts with.
fn anchored_matches(
    dfa: &DFA,
    bytes: impl Iterator<Item = u8>,
    mut fits: impl FnMut(usize, usize) -> bool,
) -> bool {
    let Ok(mut sid) = dfa.start_state(Anchored::Yes) else {
        return false;
    };
    for (i, b) in bytes.enumerate() {
        sid = dfa.next_state(Anchored::Yes, sid, b);
        if dfa.is_special(sid) {
            if dfa.is_dead(sid) {
                return false;
            }
            if dfa.is_match(sid)
                && (0..dfa.match_len(sid))
                    .any(|k| fits(i + 1, dfa.match_pattern(sid, k).as_usize()))
            {
                return true;
            }
        }
    }
    false
}

/// What [`LeetGate::check`] says of a folded word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// No keyword occurrence can cover its folded bytes.
    Never,
    /// One may: the text around the word decides.
    Maybe,
    /// A whole keyword lies in the folded word, over a folded byte.
    Holds,
}

/// A set of bytes.
#[derive(Debug, Default, Clone, Copy)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    fn contains(self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    fn union(&mut self, other: Self) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
    }

    /// The bytes a text may end with where a keyword has `c` (a space in a
    /// keyword stands for any white space).
    fn last_byte_of(c: char) -> Self {
        Self::edge_bytes_of(c, <[u8]>::last)
    }

    /// The bytes a text may start with where a keyword has `c`.
    fn first_byte_of(c: char) -> Self {
        Self::edge_bytes_of(c, <[u8]>::first)
    }

    /// The byte `pick` takes of `c` in either ASCII case, or of every white
    /// space character for a space.
    fn edge_bytes_of(c: char, pick: impl Fn(&[u8]) -> Option<&u8>) -> Self {
        let mut set = Self::default();
        let mut utf8 = [0; 4];
        if c == ' ' {
            for &b in &ASCII_SPACES {
                set.insert(b);
            }
            for &b in WIDE_SPACES.iter().filter_map(|s| pick(s)) {
                set.insert(b);
            }
        } else {
            for c in [c.to_ascii_lowercase(), c.to_ascii_uppercase()] {
                if let Some(&b) = pick(c.encode_utf8(&mut utf8).as_bytes()) {
                    set.insert(b);
                }
            }
        }
        set
    }
}

/// Steps the walk of [`around`] may take past white space before it gives
/// up (a long run of white space then counts as a hit).
pub const MAX_WALK: usize = 4096;

/// The span of `text` around `word` that holds every keyword occurrence
/// overlapping it: `reach` bytes other than white space on each side, and
/// the white space between them (a keyword's space matches any run). `None`
/// when that span runs through more than [`MAX_WALK`] characters on a side.
pub fn around(text: &[u8], word: Range<usize>, reach: usize) -> Option<Range<usize>> {
    let (mut start, mut budget, mut steps) = (word.start, reach, 0);
    while start > 0 && budget > 0 {
        // Back to the lead byte of the character that ends at `start`.
        let mut lead = start - 1;
        while lead > 0 && start - lead < 4 && text[lead] & 0xC0 == 0x80 {
            lead -= 1;
        }
        if space_at(text, lead) != Some(start - lead) {
            budget = budget.saturating_sub(start - lead);
        }
        start = lead;
        steps += 1;
        if steps > MAX_WALK {
            return None;
        }
    }
    let (mut end, mut budget, mut steps) = (word.end, reach, 0);
    while end < text.len() && budget > 0 {
        if let Some(width) = space_at(text, end) {
            end += width;
        } else {
            budget -= 1;
            end += 1;
        }
        steps += 1;
        if steps > MAX_WALK {
            return None;
        }
    }
    Some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> LeetGate {
        LeetGate::new(&[
            "ignore",
            "system prompt is",
            "act as",
            "now you are",
            "n't follow",
            "n’t follow",
            "### instruction:",
        ])
    }

    /// The verdict on the word between `[` and `]` in `text`.
    fn verdict(text: &str) -> Fold {
        let (open, close) = (text.find('[').unwrap(), text.find(']').unwrap());
        let text = text.replace(['[', ']'], "");
        gate().check(text.as_bytes(), open..close - 1, &mut Vec::new())
    }

    /// Whether the word may be part of a keyword, with every separator a
    /// keyword may want around it.
    fn may(word: &str) -> bool {
        let seps = [" ", "'", ":", "\u{2003}"];
        seps.iter().any(|before| {
            seps.iter()
                .any(|after| verdict(&format!("#{before}[{word}]{after}#")) != Fold::Never)
        })
    }

    #[test]
    fn pieces_at_each_place_of_a_word() {
        // Whole keyword inside the word, over a folded byte.
        assert!(may("1gnore"));
        assert!(may("x1gn0rey"));
        // Last piece starts the word; first piece ends it; a middle piece is it.
        assert!(may("i5"));
        assert!(may("A5"));
        assert!(may("4ct"));
        assert!(may("y0u"));
        assert!(may("1nstruction"));
        assert!(may("7"));
        assert!(may("5ystem"));
        // The piece must hold a folded byte.
        assert!(!may("is5"));
        assert!(!may("5ystems"));
        assert!(!may("ignore5"));
        // Words whose fold is no piece.
        assert!(!may("v1"));
        assert!(!may("mp3"));
        assert!(!may("2024"));
        assert!(!may("jane@example"));
        // No leet byte, nothing to fold.
        assert!(!may("ignore"));
    }

    #[test]
    fn separators_next_to_the_word_decide() {
        // A whole keyword needs nothing around it.
        assert_eq!(verdict("x[1gnore]y"), Fold::Holds);
        // `as` ends `act as`: white space before it, of any kind.
        assert_eq!(verdict("act [4s] x"), Fold::Maybe);
        assert_eq!(verdict("act\u{2003}[4s] x"), Fold::Maybe);
        assert_eq!(verdict("act-[4s] x"), Fold::Never);
        assert_eq!(verdict("[4s] x"), Fold::Never);
        // `t` of `n't follow`: an apostrophe before it, white space after.
        assert_eq!(verdict("don'[7] follow"), Fold::Maybe);
        assert_eq!(verdict("don’[7] follow"), Fold::Maybe);
        assert_eq!(verdict("page [7] of 9"), Fold::Never);
        assert_eq!(verdict("don'[7]-follow"), Fold::Never);
        // `act` starts `act as`: white space after it.
        assert_eq!(verdict("[4ct] as"), Fold::Maybe);
        assert_eq!(verdict("[4ct]: as"), Fold::Never);
        // `instruction` between `### ` and `:`.
        assert_eq!(verdict("### [1nstruction]:"), Fold::Maybe);
        assert_eq!(verdict("### [1nstruction] x"), Fold::Never);
    }

    #[test]
    fn reach_counts_bytes_other_than_spaces() {
        assert_eq!(gate().reach(), "###instruction:".len());
        assert_eq!(LeetGate::new(&["n’t follow"]).reach(), "n’tfollow".len());
    }

    #[test]
    fn around_skips_white_space_runs() {
        let text = "prompt \u{2003}\u{2003}\n  i5 end".as_bytes();
        let at = text.windows(2).position(|w| w == b"i5").unwrap();
        let span = around(text, at..at + 2, 6).unwrap();
        assert_eq!(&text[span], "prompt \u{2003}\u{2003}\n  i5 end".as_bytes());
        let span = around(text, at..at + 2, 2).unwrap();
        assert_eq!(&text[span], "pt \u{2003}\u{2003}\n  i5 en".as_bytes());
        // A run of white space longer than the walk allows gives up.
        let long = format!("prompt{}i5", " ".repeat(MAX_WALK + 10));
        let at = long.len() - 2;
        assert_eq!(around(long.as_bytes(), at..at + 2, 6), None);
    }
}
