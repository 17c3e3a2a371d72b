mod common;
use regex::bytes::RegexBuilder;
use std::time::Instant;
#[test]
fn perf() {
    let body = common::clean_chat_body();
    let ascii: Vec<u8> = body.iter().map(|&b| if b >= 0x80 { b'x' } else { b }).collect();
    let pats = [
        r"(?:^|[^0-9])(?P<secret>[0-9](?:[ -]?[0-9]){12,18})(?:[^0-9]|$)",
        r"(?:^|(?-u:[^0-9]))(?P<secret>[0-9](?:[ -]?[0-9]){12,18})(?:(?-u:[^0-9])|$)",
        r"[0-9](?:[ -]?[0-9]){12,18}",
        r"(?i)\b(?:you\s+are\s+now|act\s+as|enable|enter|activate)\s+(?:in\s+)?(?:developer\s+mode|DAN|jailbreak\s+mode)\b",
        r"(?i)(?-u:\b)(?:you\s+are\s+now|act\s+as|enable|enter|activate)\s+(?:in\s+)?(?:developer\s+mode|DAN|jailbreak\s+mode)(?-u:\b)",
    ];
    for p in pats {
        for lim in [2usize << 20, 16 << 20] {
            let re = RegexBuilder::new(p).size_limit(1 << 20).dfa_size_limit(lim).build().unwrap();
            for (name, b) in [("utf8", &body), ("ascii", &ascii)] {
                let n = 2000;
                let s = Instant::now();
                for _ in 0..n { std::hint::black_box(re.find_iter(b).count()); }
                println!("{:>10} {name:5} {:?}  {}", lim, s.elapsed() / n, &p[..40.min(p.len())]);
            }
        }
    }
}
