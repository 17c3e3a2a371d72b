//! Any bytes through `EntropyTrap::scan`, with a minimum length and
//! thresholds taken from the first bytes: no panic; findings inside the
//! input, in order, not overlapping, at least `min_length` long; each one's
//! entropy reaches its length-aware threshold, and `assess` on the token
//! alone agrees (scan only adds context filters on top of it).
#![no_main]

use _native_traps::{EntropyThresholds, EntropyTrap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b, c], body)) = data.split_first_chunk::<3>() else {
        return;
    };
    let min_length = 8 + usize::from(a) % 57;
    let thresholds = EntropyThresholds {
        hex: 2.0 + f64::from(b % 21) / 10.0,
        base64: 3.0 + f64::from(c % 31) / 10.0,
        alnum: 3.0 + f64::from(c % 30) / 10.0,
    };
    let trap = EntropyTrap::new(min_length, thresholds).expect("parameters in range");
    let mut last_end = 0;
    for f in trap.scan(body) {
        assert!(f.start < f.end && f.end <= body.len(), "{f:?}");
        assert!(f.start >= last_end, "overlapping or unordered: {f:?}");
        last_end = f.end;
        assert!(f.end - f.start >= min_length, "{f:?}");
        assert!(f.bits_per_char <= 8.0, "{f:?}");
        let floor = trap.effective_threshold(f.charset, f.end - f.start);
        assert!(f.bits_per_char >= floor, "{f:?} below {floor}");
        let (charset, bits) = trap
            .assess(&body[f.start..f.end])
            .unwrap_or_else(|| panic!("scan found {f:?}, assess does not"));
        assert_eq!(charset, f.charset);
        assert!((bits - f.bits_per_char).abs() < 1e-9);
    }
});
