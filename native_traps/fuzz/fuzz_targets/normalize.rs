//! Any bytes through `Views::build` (small bounds) and `decompress`: no
//! panic, every view fully mapped, every mapped span inside the body, the
//! decoded-bytes budget kept.
#![no_main]

use _native_traps::normalize::{decompress, DecompressLimits, NormalizeOptions, ViewKind, Views};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = NormalizeOptions {
        max_depth: 3,
        max_decoded_bytes: 64 << 10,
        min_blob_len: 8,
        ..NormalizeOptions::default()
    };
    let views = Views::build(data, &opts);
    let mut decoded = 0;
    for view in &views.derived {
        assert_eq!(view.map.len(), view.bytes.len(), "{:?}", view.kind);
        if matches!(view.kind, ViewKind::Decoded { .. }) {
            decoded += view.bytes.len();
        }
        let n = view.bytes.len();
        for (start, end) in [(0, n), (0, 1), (n / 2, n), (n / 3, n / 2 + 1)] {
            if start < end && end <= n {
                if let Some((a, b)) = view.map_span(start, end) {
                    assert!(a <= b && b <= data.len(), "{:?}: {a}..{b}", view.kind);
                }
            }
        }
    }
    assert!(decoded <= opts.max_decoded_bytes + 1, "{decoded}");

    let limits = DecompressLimits {
        max_bytes: 1 << 20,
        max_ratio: 100.0,
    };
    for encoding in ["gzip", "deflate", "br"] {
        if let Ok(out) = decompress(data, encoding, limits) {
            assert!(out.len() <= limits.max_bytes);
        }
    }
});
