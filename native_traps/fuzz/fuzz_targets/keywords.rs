//! Differential: the keyword filters against Aho-Corasick. The input's
//! first byte picks how many keywords to cut from the next bytes (1-32
//! keywords of 1-12 bytes); the rest is the haystack. The shift-or filter
//! and, where the CPU has AVX-512 VBMI, the Teddy-style filter must report
//! exactly the keywords the automaton finds, and, asked for every next
//! occurrence, exactly its occurrences and where they start; so must the
//! Teddy-style filter rebuilt with tuning words taken from the haystack.
#![no_main]

use _native_traps::keyword_filter::{KeywordFilter, Then};
use _native_traps::keyword_teddy::{KeywordTeddy, Misses, Tuning};
use aho_corasick::AhoCorasick;
use libfuzzer_sys::fuzz_target;

fn present(mut scan: impl FnMut(&mut dyn FnMut(usize) -> bool)) -> Vec<usize> {
    let mut out = Vec::new();
    scan(&mut |id| {
        out.push(id);
        true
    });
    out.sort_unstable();
    out.dedup();
    out
}

fn occurrences(mut scan: impl FnMut(&mut dyn FnMut(usize, usize) -> Then)) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    scan(&mut |id, start| {
        out.push((id, start));
        Then::Again
    });
    out.sort_unstable();
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut keywords: Vec<Vec<u8>> = Vec::new();
    for _ in 0..=(first % 32) {
        let Some((&len, tail)) = rest.split_first() else {
            break;
        };
        let len = 1 + usize::from(len % 12);
        if tail.len() < len {
            break;
        }
        keywords.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    if keywords.is_empty() {
        return;
    }
    let haystack = rest;
    let ac = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(&keywords)
        .expect("automaton");
    let mut expected_at: Vec<(usize, usize)> = ac
        .find_overlapping_iter(haystack)
        .map(|m| (m.pattern().as_usize(), m.start()))
        .collect();
    expected_at.sort_unstable();
    let mut expected: Vec<usize> = ac
        .find_overlapping_iter(haystack)
        .map(|m| m.pattern().as_usize())
        .collect();
    expected.sort_unstable();
    expected.dedup();

    let shift_or = KeywordFilter::new(&keywords);
    assert_eq!(
        present(|f| shift_or.for_each_present(haystack, f)),
        expected
    );
    let mut shift_or_at = occurrences(|f| shift_or.for_each_occurrence(haystack, f));
    shift_or_at.dedup();
    assert_eq!(shift_or_at, expected_at);
    if let Some(teddy) = KeywordTeddy::new(&keywords) {
        assert_eq!(present(|f| teddy.for_each_present(haystack, f)), expected);
        assert_eq!(
            occurrences(|f| teddy.for_each_occurrence(haystack, f)),
            expected_at
        );
        // Tuned with the words it noted in the haystack, and with every
        // eight-byte word of it: the same answers.
        let mut misses = Misses::new(usize::MAX);
        teddy.for_each_occurrence_noting(haystack, |_, _| Then::Again, &mut misses);
        let every: Vec<u64> = haystack
            .windows(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("eight bytes")))
            .collect();
        for words in [std::mem::take(&mut misses.words), every] {
            let tuning = Tuning {
                words,
                scanned: haystack.len() as u64 + 1,
            };
            let tuned = teddy.tuned(&tuning);
            assert_eq!(present(|f| tuned.for_each_present(haystack, f)), expected);
            assert_eq!(
                occurrences(|f| tuned.for_each_occurrence(haystack, f)),
                expected_at
            );
        }
    }
});
