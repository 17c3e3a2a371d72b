//! Run the traps over every view and report original-body spans.

use std::collections::HashSet;

use crate::entropy::{Charset, EntropyTrap};
use crate::regex_trap::RegexTrap;

use super::{ViewKind, Views};

/// A regex finding mapped back to the original body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ViewFinding {
    /// Index of the rule in the trap that matched: the main trap for every
    /// view except [`ViewKind::Leet`], the leet trap for that one.
    pub rule_index: usize,
    /// Original start byte.
    pub start: usize,
    /// Original end byte (exclusive).
    pub end: usize,
    /// View the match was made in.
    pub view: ViewKind,
}

/// An entropy finding mapped back to the original body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewEntropyFinding {
    /// Original start byte.
    pub start: usize,
    /// Original end byte (exclusive).
    pub end: usize,
    /// Entropy of the token as seen in its view, bits per character.
    pub bits_per_char: f64,
    /// Alphabet of the token.
    pub charset: Charset,
    /// View the token was found in.
    pub view: ViewKind,
}

/// Result of [`scan_views`].
#[derive(Debug, Clone, Default)]
pub struct ViewScan {
    /// Sorted by `(start, end, leet?, rule_index)`; one per (trap, rule,
    /// original span), from the first view that found it (Raw first).
    pub findings: Vec<ViewFinding>,
    /// Sorted by `(start, end)`; one per original span.
    pub entropy: Vec<ViewEntropyFinding>,
    /// Bounds that stopped normalisation (copied from the views).
    pub limits_hit: Vec<&'static str>,
}

/// Scan `views`: `regex` over every view but Leet, `leet` over Leet only,
/// `entropy` over Raw and Decoded views.
pub fn scan_views(
    regex: &RegexTrap,
    leet: Option<&RegexTrap>,
    entropy: Option<&EntropyTrap>,
    views: &Views<'_>,
) -> ViewScan {
    let mut out = ViewScan {
        limits_hit: views.limits_hit.clone(),
        ..ViewScan::default()
    };
    // Raw: spans are already original.
    for f in regex.scan(views.raw) {
        out.findings.push(ViewFinding {
            rule_index: f.rule_index,
            start: f.start,
            end: f.end,
            view: ViewKind::Raw,
        });
    }
    if let Some(e) = entropy {
        for f in e.scan(views.raw) {
            out.entropy.push(ViewEntropyFinding {
                start: f.start,
                end: f.end,
                bits_per_char: f.bits_per_char,
                charset: f.charset,
                view: ViewKind::Raw,
            });
        }
    }
    if views.derived.is_empty() {
        return out;
    }

    let mut seen: HashSet<(bool, usize, usize, usize)> = out
        .findings
        .iter()
        .map(|f| (false, f.rule_index, f.start, f.end))
        .collect();
    let mut seen_entropy: HashSet<(usize, usize)> =
        out.entropy.iter().map(|f| (f.start, f.end)).collect();
    for view in &views.derived {
        let is_leet = view.kind == ViewKind::Leet;
        let trap = if is_leet { leet } else { Some(regex) };
        if let Some(trap) = trap {
            for f in trap.scan(&view.bytes) {
                let Some((start, end)) = view.map_span(f.start, f.end) else {
                    continue;
                };
                if seen.insert((is_leet, f.rule_index, start, end)) {
                    out.findings.push(ViewFinding {
                        rule_index: f.rule_index,
                        start,
                        end,
                        view: view.kind,
                    });
                }
            }
        }
        if let (Some(e), ViewKind::Decoded { .. }) = (entropy, view.kind) {
            for f in e.scan(&view.bytes) {
                let Some((start, end)) = view.map_span(f.start, f.end) else {
                    continue;
                };
                if seen_entropy.insert((start, end)) {
                    out.entropy.push(ViewEntropyFinding {
                        start,
                        end,
                        bits_per_char: f.bits_per_char,
                        charset: f.charset,
                        view: view.kind,
                    });
                }
            }
        }
    }
    // Stable sorts keep the first view's finding first within equal keys.
    out.findings
        .sort_by_key(|f| (f.start, f.end, f.view == ViewKind::Leet, f.rule_index));
    out.entropy.sort_by_key(|f| (f.start, f.end));
    out
}
