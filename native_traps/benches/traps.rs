//! Criterion bench: one ~4 KiB JSON chat body through the starter regex
//! rules and the default entropy trap, clean and with findings.
//!
//! Run with `cargo bench -p native_traps`; criterion prints time per scan
//! and throughput.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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

criterion_group!(benches, bench_traps);
criterion_main!(benches);
