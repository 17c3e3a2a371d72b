//! White space for the keyword filters. A keyword may hold words apart by
//! single spaces (`stop follow`), and a space in a keyword matches any run
//! of white space in the input: one or more characters with the Unicode
//! `White_Space` property, which is what `\s` matches in a rule's regex.
//! So a rule written `stop\s+following` with the keyword `stop follow` is
//! still a candidate for `stop  following` or `stop\tfollowing`; without
//! this, a second space walked past it.
//!
//! The filters look for keywords as plain bytes, so a body whose white
//! space is not all single spaces is filtered as a copy in which every run
//! of white space is one space ([`SpaceBuffers::collapsed`]). Keywords hold
//! no other white space (checked when a rule is validated), so every other
//! keyword occurs in the copy exactly where it occurs in the body, with the
//! same kind of byte (white space or not) before it.

use crate::byte_mask;

/// The ASCII white space bytes: tab, line feed, vertical tab, form feed,
/// carriage return and space.
pub const ASCII_SPACES: [u8; 6] = [b'\t', b'\n', 0x0B, 0x0C, b'\r', b' '];

/// The white space characters beyond ASCII, in UTF-8: U+0085, U+00A0,
/// U+1680, U+2000 to U+200A, U+2028, U+2029, U+202F, U+205F and U+3000.
pub const WIDE_SPACES: [&[u8]; 19] = [
    b"\xC2\x85",
    b"\xC2\xA0",
    b"\xE1\x9A\x80",
    b"\xE2\x80\x80",
    b"\xE2\x80\x81",
    b"\xE2\x80\x82",
    b"\xE2\x80\x83",
    b"\xE2\x80\x84",
    b"\xE2\x80\x85",
    b"\xE2\x80\x86",
    b"\xE2\x80\x87",
    b"\xE2\x80\x88",
    b"\xE2\x80\x89",
    b"\xE2\x80\x8A",
    b"\xE2\x80\xA8",
    b"\xE2\x80\xA9",
    b"\xE2\x80\xAF",
    b"\xE2\x81\x9F",
    b"\xE3\x80\x80",
];

/// The lead bytes of [`WIDE_SPACES`].
const WIDE_LEADS: [(u8, u8); 2] = [(0xC2, 0xC2), (0xE1, 0xE3)];

/// The length of the white space character that starts at `at`, if any.
pub fn space_at(data: &[u8], at: usize) -> Option<usize> {
    let rest = data.get(at..)?;
    let first = *rest.first()?;
    if ASCII_SPACES.contains(&first) {
        return Some(1);
    }
    if first < 0xC2 {
        return None;
    }
    WIDE_SPACES
        .iter()
        .find(|s| rest.starts_with(s))
        .map(|s| s.len())
}

/// Buffers for [`SpaceBuffers::collapsed`], kept between scans.
#[derive(Debug, Default)]
pub struct SpaceBuffers {
    text: Vec<u8>,
    leads: Vec<u64>,
}

impl SpaceBuffers {
    /// The heap memory the buffers hold, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity() + 8 * self.leads.capacity()
    }

    /// `data` with every run of white space that is not a single space
    /// replaced by one space: `data` itself when there is none, else a
    /// copy in these buffers. One pass of `byte_mask::squeeze_spaces`
    /// squeezes the ASCII white space and tells whether that changed
    /// anything and whether a byte may start a character of
    /// [`WIDE_SPACES`]; only then are those bytes looked at one by one, and
    /// where one does start such a character the copy is made again run by
    /// run. Where the CPU lacks AVX-512 VBMI2, run by run throughout.
    pub fn collapsed<'a>(&'a mut self, data: &'a [u8]) -> &'a [u8] {
        let Self { text, leads } = self;
        let squeezed = byte_mask::squeeze_spaces(data, text);
        if let Some(seen) = squeezed {
            let wide = seen.wide_leads && {
                leads.clear();
                byte_mask::masks(data, byte_mask::Class::InRanges(&WIDE_LEADS), leads);
                leads.iter().enumerate().any(|(w, &word)| {
                    let mut bits = word;
                    let mut found = false;
                    while bits != 0 && !found {
                        found = space_at(data, 64 * w + bits.trailing_zeros() as usize).is_some();
                        bits &= bits - 1;
                    }
                    found
                })
            };
            if !wide {
                return if seen.changed { text } else { data };
            }
        }
        text.clear();
        if collapse_runs(data, text) {
            text
        } else {
            data
        }
    }
}

/// [`SpaceBuffers::collapsed`] run by run, into `text` (empty): whether
/// any run was replaced.
fn collapse_runs(data: &[u8], text: &mut Vec<u8>) -> bool {
    let mut copied = 0;
    let mut at = 0;
    while at < data.len() {
        let Some(len) = space_at(data, at) else {
            at += 1;
            continue;
        };
        let mut end = at + len;
        while let Some(len) = space_at(data, end) {
            end += len;
        }
        if !(end - at == 1 && data[at] == b' ') {
            text.extend_from_slice(&data[copied..at]);
            text.push(b' ');
            copied = end;
        }
        at = end;
    }
    text.extend_from_slice(&data[copied..]);
    copied > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;

    /// The definition: every maximal run of `\s` (Unicode) becomes a space.
    fn reference(data: &[u8]) -> Vec<u8> {
        let re = regex::bytes::Regex::new(r"\s+").unwrap();
        re.replace_all(data, &b" "[..]).into_owned()
    }

    #[test]
    fn runs_of_white_space_become_one_space() {
        let mut buf = SpaceBuffers::default();
        assert_eq!(buf.collapsed(b"stop  following"), b"stop following");
        assert_eq!(
            buf.collapsed("a\t\r\n b\u{00A0}c\u{3000}\u{2028} d".as_bytes()),
            b"a b c d"
        );
        // Already single spaces: the body itself, no copy.
        let plain = b"stop following them";
        assert_eq!(buf.collapsed(plain).as_ptr(), plain.as_ptr());
        // `\xC2\xA9` (the copyright sign) starts like a wide space but is none.
        let copyright = "\u{a9} 2026".as_bytes();
        assert_eq!(buf.collapsed(copyright).as_ptr(), copyright.as_ptr());
    }

    #[test]
    fn agrees_with_the_regex_class_on_random_bodies() {
        let pieces: [&[u8]; 14] = [
            b" ",
            b"  ",
            b"\t",
            b"\n",
            b"\x0B",
            b"\x0C",
            b"\r",
            b"ab",
            b"x",
            "\u{00A0}".as_bytes(),
            "\u{2003}".as_bytes(),
            "\u{e9}".as_bytes(),
            b"\xE2\x80",
            b"\xC2",
        ];
        let mut rng = XorShift(0x5EED_0F0A);
        let mut buf = SpaceBuffers::default();
        for _ in 0..3000 {
            let len = rng.below(200);
            let body: Vec<u8> = (0..len)
                .flat_map(|_| pieces[rng.below(pieces.len())].iter().copied())
                .collect();
            assert_eq!(buf.collapsed(&body), reference(&body), "{body:?}");
        }
    }

    #[test]
    fn white_space_characters_are_those_of_the_regex_class() {
        let re = regex::Regex::new(r"^\s$").unwrap();
        for c in '\0'..=char::MAX {
            let mut buf = [0u8; 4];
            let s: &str = c.encode_utf8(&mut buf);
            let bytes = s.as_bytes();
            let is_space = re.is_match(s);
            assert_eq!(space_at(bytes, 0) == Some(bytes.len()), is_space, "{c:?}");
            assert_eq!(c.is_whitespace(), is_space, "{c:?}");
        }
    }
}
