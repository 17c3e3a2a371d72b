//! The AVX-512 keyword filter, rebuilt from what it sees: a
//! [`KeywordTeddy`] places its anchors in buckets by a model of English
//! text, and a bucket whose anchors jointly accept a word that the traffic
//! is full of (`support`, `developer`, a JSON key) flags that word at every
//! occurrence, each flag costing a comparison. While it learns, the filter
//! notes the input words at flagged positions where no anchor was
//! ([`Misses`]); after each [`ROUND_BYTES`] of scanned input it is rebuilt
//! with every word noted so far ([`Tuning`]), [`ROUNDS`] times, and then
//! notes nothing more. Findings never change: every build reports exactly
//! the keywords that occur; only the number of flagged positions does.
//!
//! The noted words are eight-byte pieces of scanned input, so they are
//! kept in memory only, never logged or exported (`Debug` shows their
//! number), capped at [`MAX_WORDS`], and overwritten with zeros once the
//! last round is built. Every build is kept (scans may still hold an older
//! one): about 80 KiB each for the built-in packs, 1 MiB in all.
//! [`crate::CompileOptions::tune`] turns learning off.
//!
//! A rebuild takes 13-16 ms for the built-in packs, too long for the scan
//! of one request, so it runs on a thread of its own, started by the scan
//! that completes a round; scans go on with the filter they have meanwhile.
//! See ADR 0014.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::keyword_filter::Then;
use crate::keyword_teddy::{KeywordTeddy, Misses, Tuning};

/// Rebuilds after the first filter. Each moves the anchors that collide
/// with the words noted so far, and may bring new collisions of its own
/// (measured on the bench corpus, flagged positions per 4 KiB after each
/// rebuild, from 19.8: 47, 16, 10.5 with rounds of 1 MiB; 7.1 after eight
/// rounds of 256 KiB and 6.9 after twelve).
pub const ROUNDS: usize = 12;
/// Input scanned per round (3 MiB over all rounds).
pub const ROUND_BYTES: u64 = 256 << 10;
/// Words noted per scan at most (a body full of one false alarm says no
/// more than a few of them do).
const PER_SCAN: usize = 64;
/// Words kept at most over all rounds (512 KiB).
pub const MAX_WORDS: usize = 1 << 16;

/// A [`KeywordTeddy`] that rebuilds itself from the traffic it scans (see
/// the module docs).
#[derive(Debug)]
pub struct TunedTeddy {
    shared: Arc<Shared>,
}

/// What the scans and the rebuilding thread share.
#[derive(Debug)]
struct Shared {
    first: KeywordTeddy,
    rounds: [OnceLock<KeywordTeddy>; ROUNDS],
    /// Set once learning is over (or off): scans note nothing.
    done: AtomicBool,
    learning: Mutex<Learning>,
}

#[derive(Debug, Default)]
struct Learning {
    tuning: Tuning,
    /// Bytes scanned since the last rebuild.
    round_scanned: u64,
    /// Rebuilds made.
    round: usize,
    /// A thread is rebuilding.
    busy: bool,
}

impl TunedTeddy {
    /// The filter for `keywords`, learning when `learn` is set; `None` when
    /// the CPU lacks AVX-512 VBMI.
    pub fn new<K: AsRef<[u8]>>(keywords: &[K], learn: bool) -> Option<Self> {
        let first = KeywordTeddy::new(keywords)?;
        Some(Self {
            shared: Arc::new(Shared {
                first,
                rounds: Default::default(),
                done: AtomicBool::new(!learn),
                learning: Mutex::new(Learning::default()),
            }),
        })
    }

    /// The newest build.
    pub fn current(&self) -> &KeywordTeddy {
        let shared = &*self.shared;
        shared
            .rounds
            .iter()
            .rev()
            .find_map(OnceLock::get)
            .unwrap_or(&shared.first)
    }

    /// Rebuilds made so far.
    pub fn rounds_done(&self) -> usize {
        self.shared
            .rounds
            .iter()
            .filter(|r| r.get().is_some())
            .count()
    }

    /// See [`KeywordTeddy::for_each_occurrence`].
    pub fn for_each_occurrence(&self, data: &[u8], found: impl FnMut(usize, usize) -> Then) {
        let filter = self.current();
        if self.shared.done.load(Ordering::Relaxed) {
            filter.for_each_occurrence(data, found);
            return;
        }
        let mut misses = Misses::new(PER_SCAN);
        filter.for_each_occurrence_noting(data, found, &mut misses);
        self.learn(data.len(), &misses);
    }

    /// Keep what one scan of `len` bytes noted; start a rebuild when a
    /// round is complete.
    fn learn(&self, len: usize, misses: &Misses) {
        let shared = &self.shared;
        let Ok(mut learning) = shared.learning.lock() else {
            shared.finish();
            return;
        };
        // A scan that began before the last rebuild ended keeps nothing.
        if learning.round >= ROUNDS {
            return;
        }
        let noted = &mut learning.tuning.words;
        if noted.capacity() == 0 {
            // All the room at once: no reallocation leaves a copy behind.
            noted.reserve_exact(MAX_WORDS);
        }
        let room = MAX_WORDS.saturating_sub(noted.len());
        noted.extend(misses.words.iter().take(room));
        // Only the bytes whose false alarms were all noted count as scanned,
        // so that the sampled flag rate is not diluted.
        let scanned = u64::try_from(misses.covered(len)).unwrap_or(u64::MAX);
        learning.tuning.scanned = learning.tuning.scanned.saturating_add(scanned);
        learning.round_scanned = learning.round_scanned.saturating_add(scanned);
        if learning.busy || learning.round_scanned < ROUND_BYTES {
            return;
        }
        learning.busy = true;
        let round = learning.round;
        let tuning = learning.tuning.clone();
        drop(learning);
        let worker = Arc::clone(shared);
        let started = std::thread::Builder::new()
            .name("godel-filter-tuning".into())
            .spawn(move || worker.rebuild(round, &tuning));
        if started.is_err() {
            // No thread to spare: keep the filter there is.
            shared.finish();
        }
    }
}

impl Shared {
    /// Build round `round`'s filter from `tuning` (on its own thread).
    fn rebuild(&self, round: usize, tuning: &Tuning) {
        let rebuilt =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.first.tuned(tuning)));
        let Ok(rebuilt) = rebuilt else {
            // A bug (or no memory): stop learning, keep the filter there is.
            self.finish();
            return;
        };
        // Only the thread that set `busy` builds this round.
        let _ = self.rounds[round].set(rebuilt);
        let Ok(mut learning) = self.learning.lock() else {
            self.finish();
            return;
        };
        learning.busy = false;
        learning.round = round + 1;
        // Bytes scanned while this round was built count for the next.
        learning.round_scanned = learning.round_scanned.saturating_sub(ROUND_BYTES);
        if learning.round >= ROUNDS {
            drop(learning);
            self.finish();
        }
    }

    /// Learning is over: note nothing more, and zero what was noted.
    fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
        let mut learning = match self.learning.lock() {
            Ok(learning) => learning,
            Err(poisoned) => poisoned.into_inner(),
        };
        learning.round = ROUNDS;
        learning.busy = false;
        // Dropping the notes zeroes them (see `Tuning`'s `Drop`).
        learning.tuning = Tuning::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyword_filter::test_support::{automaton, occurrences};
    use crate::keyword_teddy;
    use crate::test_rng::XorShift;

    /// Text made of a few dozen words repeated, as traffic is (JSON keys,
    /// the same system prompt in every request).
    fn repetitive(len: usize) -> Vec<u8> {
        let words = "support developers \"content\": deployment pull request payload describe \
            account guide travel options quarterly review compares capital feature rollout \
            connection explain reliable schedule internal training customer product history \
            question answer summary context message assistant results generate library"
            .split_whitespace()
            .collect::<Vec<_>>();
        let mut rng = XorShift(0x7E47);
        let mut text = Vec::with_capacity(len + 16);
        while text.len() < len {
            text.extend_from_slice(words[rng.below(words.len())].as_bytes());
            text.push(b' ');
        }
        text
    }

    /// Words the filter holds for its next rebuild.
    fn noted(filter: &TunedTeddy) -> usize {
        filter
            .shared
            .learning
            .lock()
            .expect("not poisoned")
            .tuning
            .words
            .len()
    }

    /// Many keywords of common letters, so that buckets are crowded and
    /// ordinary words meet them.
    fn keywords() -> Vec<String> {
        let mut rng = XorShift(0x5EED_F11E);
        let letters = b"etaoinshrdlcumpg_-";
        let mut keywords: Vec<String> = (0..600)
            .map(|_| {
                let len = 4 + rng.below(7);
                (0..len)
                    .map(|_| char::from(letters[rng.below(letters.len())]))
                    .collect()
            })
            .collect();
        keywords
            .extend(["ignore", "i9nore", "developer mode", "ghp_", "sk_live_"].map(String::from));
        keywords
    }

    #[test]
    fn learning_rebuilds_and_flags_less_with_the_same_answers() {
        if !keyword_teddy::supported() {
            eprintln!("no AVX-512 VBMI here: nothing to test");
            return;
        }
        let keywords = keywords();
        let filter = TunedTeddy::new(&keywords, true).expect("supported");
        let text = repetitive(64 * 1024);
        let flags_before = filter.current().flags(&text);
        // Rebuilds run on their own thread: scan until the last is in.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !filter.shared.done.load(Ordering::Relaxed) {
            filter.for_each_occurrence(&text, |_, _| Then::Next);
            assert!(
                std::time::Instant::now() < deadline,
                "learning never completed"
            );
        }
        assert_eq!(filter.rounds_done(), ROUNDS);
        assert_eq!(noted(&filter), 0);
        let flags_after = filter.current().flags(&text);
        assert!(
            flags_after < flags_before,
            "tuned filter flags {flags_after} positions, first one {flags_before}"
        );
        // Same answers as Aho-Corasick, before and after.
        let ac = automaton(&keywords);
        let mut with_keyword = text.clone();
        with_keyword.extend_from_slice(b" Ignore all that; developer mode: ghp_ and sk_live_ ");
        for probe in [&text, &with_keyword] {
            let mut got = Vec::new();
            filter.for_each_occurrence(probe, |id, start| {
                got.push((id, start));
                Then::Again
            });
            got.sort_unstable();
            assert_eq!(got, occurrences(&ac, probe));
        }
    }

    #[test]
    fn nothing_is_kept_once_learning_is_over() {
        if !keyword_teddy::supported() {
            return;
        }
        let filter = TunedTeddy::new(&keywords(), true).expect("supported");
        let mut misses = Misses::new(8);
        misses.words.extend([1, 2, 3]);
        filter.learn(4096, &misses);
        assert_eq!(noted(&filter), 3);
        // A scan that read `done` before the last rebuild ended, and
        // reports after it: its notes are not kept.
        filter.shared.finish();
        filter.learn(4096, &misses);
        assert_eq!(noted(&filter), 0);
        assert_eq!(filter.rounds_done(), 0);
    }

    #[test]
    fn debug_shows_no_noted_words() {
        let tuning = Tuning {
            words: vec![u64::from_le_bytes(*b"hunter2!")],
            scanned: 8,
        };
        let shown = format!("{tuning:?}");
        assert!(!shown.contains("hunter") && !shown.contains(&tuning.words[0].to_string()));
        assert!(shown.contains("words: 1"), "{shown}");
    }

    #[test]
    fn learning_off_keeps_the_first_build() {
        if !keyword_teddy::supported() {
            return;
        }
        let filter = TunedTeddy::new(&keywords(), false).expect("supported");
        let text = repetitive(256 * 1024);
        for _ in 0..(ROUNDS * 5) {
            filter.for_each_occurrence(&text, |_, _| Then::Next);
        }
        assert_eq!(filter.rounds_done(), 0);
        assert_eq!(noted(&filter), 0);
    }
}
