//! The rarest byte that every match of a pattern holds, if a rare one does.
//!
//! A rule becomes a candidate when one of its keywords occurs, and then its
//! regex searches the whole body. Some patterns also need a byte that
//! ordinary text seldom holds: the `@` between the password and the host of
//! a URL with credentials, whose keyword `://` occurs in most bodies that
//! hold a link. A search for that one byte (`memchr`, tens of bytes per
//! cycle) rules the regex out wherever the byte is missing, with the same
//! findings: no match can lie in a body without it.
//!
//! The analysis reads the parsed pattern (look-around ignored, which only
//! drops requirements). A byte is *required* when every string the pattern
//! matches holds it:
//!
//! * a literal requires each of its bytes;
//! * a class requires its byte when it matches exactly one byte value (a
//!   letter under case folding matches two, so it requires nothing);
//! * a concatenation requires what any of its parts requires;
//! * an alternation what every branch requires;
//! * a repetition what its body requires when at least one copy is needed.

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::keyword_filter::commonness;

/// The most common byte worth looking for ([`commonness`]: 2 for `@`, `#`,
/// `$` and the like, 4 for `=` or `;`, 5 for digits, `:` and `/`). Bytes
/// that nearly every body holds would only add a search.
const RARE_ENOUGH: u32 = 4;

/// A set of byte values, one bit each.
type Bytes = [u64; 4];

/// The rarest byte (by [`commonness`], at most [`RARE_ENOUGH`]) that every
/// match of `hir` holds, if there is one; the smallest byte among equals.
pub fn rarest_required(hir: &Hir) -> Option<u8> {
    let required = required(hir);
    (0..=u8::MAX)
        .filter(|&b| required[usize::from(b >> 6)] & (1 << (b & 63)) != 0)
        .filter(|&b| commonness(b) <= RARE_ENOUGH)
        .min_by_key(|&b| commonness(b))
}

/// The bytes every string `hir` matches holds (see the module docs).
fn required(hir: &Hir) -> Bytes {
    const NONE: Bytes = [0; 4];
    let one = |b: u8| {
        let mut set = NONE;
        set[usize::from(b >> 6)] |= 1 << (b & 63);
        set
    };
    let union = |a: Bytes, b: Bytes| std::array::from_fn(|i| a[i] | b[i]);
    match hir.kind() {
        HirKind::Literal(literal) => literal.0.iter().fold(NONE, |set, &b| union(set, one(b))),
        HirKind::Class(class) => single_byte(class).map_or(NONE, one),
        HirKind::Repetition(repetition) if repetition.min >= 1 => required(&repetition.sub),
        // Look-around and optional copies require nothing.
        HirKind::Empty | HirKind::Look(_) | HirKind::Repetition(_) => NONE,
        HirKind::Capture(capture) => required(&capture.sub),
        HirKind::Concat(parts) => parts
            .iter()
            .fold(NONE, |set, part| union(set, required(part))),
        HirKind::Alternation(branches) => branches
            .iter()
            .map(required)
            .reduce(|a, b| std::array::from_fn(|i| a[i] & b[i]))
            .unwrap_or(NONE),
    }
}

/// The one byte `class` matches, when it matches exactly one (an ASCII
/// character, or one byte value of a byte class).
fn single_byte(class: &Class) -> Option<u8> {
    match class {
        Class::Unicode(unicode) => match unicode.ranges() {
            [range] if range.start() == range.end() && range.start().is_ascii() => {
                u8::try_from(range.start()).ok()
            }
            _ => None,
        },
        Class::Bytes(bytes) => match bytes.ranges() {
            [range] if range.start() == range.end() => Some(range.start()),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_automata::util::syntax::{self, Config};

    fn rarest(pattern: &str) -> Option<char> {
        let config = Config::new().utf8(false);
        rarest_required(&syntax::parse_with(pattern, &config).unwrap()).map(char::from)
    }

    #[test]
    fn finds_the_rarest_byte_every_match_holds() {
        // The built-in rule for URLs with credentials: `@`, not `:` or `/`.
        let url = r"(?i:https?|ftps?|sftp|smtps?|ldaps?|ssh|git)://[A-Za-z0-9._~%!$&*+,;=-]{1,64}:(?P<secret>[^\s@/']{3,128})@[A-Za-z0-9.-]+";
        assert_eq!(rarest(url), Some('@'));
        // Common bytes are not worth a search; letters under case folding
        // are two bytes each.
        assert_eq!(rarest("user:pass/x"), None);
        assert_eq!(rarest("(?i)token"), None);
        assert_eq!(rarest("(?i)key#[0-9]+"), Some('#'));
        // Every branch must hold the byte; a repetition only when needed.
        assert_eq!(rarest("a@b|c@d"), Some('@'));
        assert_eq!(rarest("a@b|cd"), None);
        assert_eq!(rarest("x(?:@){0,2}"), None);
        assert_eq!(rarest("x(?:y@){1,2}"), Some('@'));
        // A class of several bytes requires none of them; a one-byte class
        // does; look-around requires nothing.
        assert_eq!(rarest("[@#]x"), None);
        assert_eq!(rarest(r"[@]x\b"), Some('@'));
        // The rarest wins: `$` and `@` are rarer than `=`; equals by value.
        assert_eq!(rarest(r"a=b@c\$"), Some('$'));
    }
}
