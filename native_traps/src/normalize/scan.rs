//! Run the traps over every view and report original-body spans.

use std::collections::HashSet;

use crate::entropy::{Charset, EntropyTrap};
use crate::leet_gate::{around, Fold};
use crate::regex_trap::{Finding, RegexTrap};

use super::text::fold_words;
use super::{View, ViewKind, Views};

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
/// `entropy` over Raw and Decoded views. The leet view is built and scanned
/// only when `leet` could match in it ([`leet_view_needed`]).
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
    // The view the leet view would fold, when a leet trap could scan it.
    let leet_source = leet.and(views.leet.as_ref()).map(|plan| plan.source);
    // Whether the main trap found a keyword of a leet rule in that view.
    let mut source_hit = false;
    let mut scan_main = |index: Option<usize>, bytes: &[u8]| {
        if leet_source != Some(index) {
            return regex.scan(bytes);
        }
        let mut candidates = Vec::new();
        let findings = regex.scan_noting(bytes, &mut candidates);
        source_hit = leet.is_some_and(|leet| holds_leet_rule(regex, leet, &candidates));
        findings
    };
    // Raw: spans are already original.
    for f in scan_main(None, views.raw) {
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

    let mut seen: HashSet<(bool, usize, usize, usize)> = out
        .findings
        .iter()
        .map(|f| (false, f.rule_index, f.start, f.end))
        .collect();
    let mut seen_entropy: HashSet<(usize, usize)> =
        out.entropy.iter().map(|f| (f.start, f.end)).collect();
    let mut add = |out: &mut ViewScan, view: &View, is_leet: bool, findings: Vec<Finding>| {
        for f in findings {
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
    };
    for (index, view) in views.derived.iter().enumerate() {
        add(&mut out, view, false, scan_main(Some(index), &view.bytes));
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
    if let Some(leet) = leet {
        if let Some(view) = leet_view_needed(leet, views, source_hit) {
            add(&mut out, &view, true, leet.scan(&view.bytes));
        }
    }
    // Stable sorts keep the first view's finding first within equal keys.
    out.findings
        .sort_by_key(|f| (f.start, f.end, f.view == ViewKind::Leet, f.rule_index));
    out.entropy.sort_by_key(|f| (f.start, f.end));
    out
}

/// Most words whose fold may hold a keyword piece that a body gets checked
/// one by one ([`leet_view_needed`]); past that, the view is scanned.
const MAX_WORD_CHECKS: usize = 32;

/// The leet view of `views`, when `leet` could match in it: `source_hit`
/// (the main trap found a keyword of one of `leet`'s rules in the view the
/// fold starts from), a rule of `leet` without keywords, or a keyword of
/// `leet` over a folded word (see `leet_gate.rs`). `None` when the body has
/// nothing to fold or no match is possible.
pub fn leet_view_needed(leet: &RegexTrap, views: &Views<'_>, source_hit: bool) -> Option<View> {
    let plan = views.leet.as_ref()?;
    if source_hit || leet.has_keywordless_rule() {
        return views.leet_view();
    }
    let gate = leet.leet_gate();
    let source = views.bytes(plan.source);
    let (mut buf, mut window) = (Vec::new(), Vec::new());
    let mut checks = 0;
    for (i, &(start, end)) in plan.words.iter().enumerate() {
        match gate.check(source, start..end, &mut buf) {
            Fold::Never => continue,
            Fold::Holds => return views.leet_view(),
            Fold::Maybe => {}
        }
        checks += 1;
        if checks > MAX_WORD_CHECKS {
            return views.leet_view();
        }
        // The fold leaves white space alone: the span is the same in the
        // source, and only the words in it are folded for the check.
        let Some(span) = around(source, start..end, gate.reach()) else {
            return views.leet_view();
        };
        let first = plan.words[..i].partition_point(|&(_, e)| e <= span.start);
        let last = i + plan.words[i..].partition_point(|&(s, _)| s < span.end);
        window.clear();
        window.extend_from_slice(&source[span.clone()]);
        let inside = plan.words[first..last]
            .iter()
            .map(|&(s, e)| (s.max(span.start) - span.start, e.min(span.end) - span.start));
        fold_words(&mut window, inside);
        if leet.has_candidates(&window) {
            return views.leet_view();
        }
    }
    None
}

/// The leet view [`scan_views`] would scan for these traps, found without
/// scanning (for tests and inspection).
pub fn leet_view_for(regex: &RegexTrap, leet: &RegexTrap, views: &Views<'_>) -> Option<View> {
    let plan = views.leet.as_ref()?;
    let candidates = regex.candidate_rules(views.bytes(plan.source));
    leet_view_needed(leet, views, holds_leet_rule(regex, leet, &candidates))
}

/// Whether some of `regex`'s `candidates` is a rule of `leet` (by id).
fn holds_leet_rule(regex: &RegexTrap, leet: &RegexTrap, candidates: &[usize]) -> bool {
    candidates.iter().any(|&i| {
        regex
            .rule(i)
            .is_some_and(|rule| leet.index_of(&rule.id).is_some())
    })
}
