//! Criterion bench: one ~4 KiB JSON chat body through the starter regex
//! rules and the default entropy trap, clean and with findings; and the
//! three stage-1 keyword filters side by side on the same clean body (the
//! AVX-512 one only where the CPU has it).
//!
//! Run with `cargo bench -p native_traps`; criterion prints time per scan
//! and throughput.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use aho_corasick::{AhoCorasick, AhoCorasickKind};

use _native_traps::keyword_filter::KeywordFilter;
use _native_traps::keyword_teddy::KeywordTeddy;
use _native_traps::{EntropyTrap, RegexTrap};

#[path = "../tests/common/mod.rs"]
mod common;

fn bench_traps(c: &mut Criterion) {
    let regex = RegexTrap::compile(common::starter_rules()).expect("starter rules compile");
    let entropy = EntropyTrap::default();
    let bodies = [
        ("clean_4k", common::clean_chat_body()),
        ("findings_4k", common::dirty_chat_body()),
    ];

    for (name, body) in &bodies {
        let mut group = c.benchmark_group(*name);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("regex", |b| b.iter(|| regex.scan(black_box(body))));
        group.bench_function("entropy", |b| b.iter(|| entropy.scan(black_box(body))));
        group.bench_function("regex+entropy", |b| {
            b.iter(|| {
                let found = regex.scan(black_box(body));
                let tokens = entropy.scan(black_box(body));
                (found, tokens)
            });
        });
        group.finish();
    }
}

/// The starter rules' keywords found three ways in the clean body; the
/// automaton is the anchor the two filters are measured against.
fn bench_keyword_filters(c: &mut Criterion) {
    let keywords: Vec<String> = common::starter_rules()
        .into_iter()
        .flat_map(|r| r.keywords)
        .map(|k| k.to_ascii_lowercase())
        .collect();
    let body = common::clean_chat_body();
    let mut group = c.benchmark_group("keywords_clean_4k");
    group.throughput(Throughput::Bytes(body.len() as u64));
    let automaton = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .kind(Some(AhoCorasickKind::DFA))
        .build(&keywords)
        .expect("keywords build");
    group.bench_function("aho_corasick_dfa", |b| {
        b.iter(|| automaton.find_overlapping_iter(black_box(&body)).count());
    });
    let shift_or = KeywordFilter::new(&keywords);
    group.bench_function("shift_or", |b| {
        b.iter(|| {
            let mut n = 0;
            shift_or.for_each_present(black_box(&body), |_| {
                n += 1;
                true
            });
            n
        });
    });
    if let Some(teddy) = KeywordTeddy::new(&keywords) {
        group.bench_function("avx512_teddy", |b| {
            b.iter(|| {
                let mut n = 0;
                teddy.for_each_present(black_box(&body), |_| {
                    n += 1;
                    true
                });
                n
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_traps, bench_keyword_filters);
criterion_main!(benches);
