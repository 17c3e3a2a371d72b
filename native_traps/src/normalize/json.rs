//! Decoded string values (and keys) of a JSON document, with offsets.
//!
//! A single forward pass validates the document (RFC 8259 grammar, with an
//! explicit container stack instead of recursion, so `[[[[…` of any depth
//! costs one byte of stack per level) and writes every string, escapes
//! decoded, followed by `\n`. Unescaped bytes map one-to-one to the body;
//! an escape (`\n`, `\u00e9`, a surrogate pair) maps to its whole source.

use super::offsets::{OffsetMap, ViewWriter};

/// Result of [`extract_strings`].
pub(crate) struct JsonStrings {
    pub(crate) bytes: Vec<u8>,
    pub(crate) map: OffsetMap,
    /// Whether any string held an escape, i.e. whether the view says
    /// something the raw bytes do not.
    pub(crate) had_escape: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    ValueOrEnd,
    Key,
    KeyOrEnd,
    Colon,
    CommaOrEnd,
    Done,
}

fn skip_ws(data: &[u8], mut i: usize) -> usize {
    while i < data.len() && matches!(data[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

fn hex4(data: &[u8], at: usize) -> Option<u32> {
    let digits = data.get(at..at + 4)?;
    let mut v = 0u32;
    for &d in digits {
        v = (v << 4) | char::from(d).to_digit(16)?;
    }
    Some(v)
}

/// Parse the number starting at `i`; returns the index after it.
fn number(data: &[u8], mut i: usize) -> Option<usize> {
    let digits = |data: &[u8], mut i: usize| {
        let start = i;
        while i < data.len() && data[i].is_ascii_digit() {
            i += 1;
        }
        (i > start).then_some(i)
    };
    if data.get(i) == Some(&b'-') {
        i += 1;
    }
    match data.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(data, i)?,
        _ => return None,
    }
    if data.get(i) == Some(&b'.') {
        i = digits(data, i + 1)?;
    }
    if matches!(data.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(data.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(data, i)?;
    }
    Some(i)
}

/// Parse `true`, `false`, `null` or a number at `i`; returns the index after it.
fn scalar(data: &[u8], i: usize) -> Option<usize> {
    for word in [&b"true"[..], b"false", b"null"] {
        if data[i..].starts_with(word) {
            return Some(i + word.len());
        }
    }
    number(data, i)
}

/// Decode the string whose opening quote is at `i` into `w`; returns the
/// index after the closing quote, or `None` when the string is invalid.
fn string(data: &[u8], i: usize, w: &mut ViewWriter<'_>, had_escape: &mut bool) -> Option<usize> {
    let mut i = i + 1;
    let mut run = i;
    loop {
        let b = *data.get(i)?;
        match b {
            b'"' => {
                w.copy(data, run, i);
                // Separator: stands for the closing quote.
                w.replace(b"\n", i, i + 1);
                return Some(i + 1);
            }
            b'\\' => {
                w.copy(data, run, i);
                *had_escape = true;
                let esc = *data.get(i + 1)?;
                let simple = match esc {
                    b'"' => Some(b'"'),
                    b'\\' => Some(b'\\'),
                    b'/' => Some(b'/'),
                    b'b' => Some(0x08),
                    b'f' => Some(0x0c),
                    b'n' => Some(b'\n'),
                    b'r' => Some(b'\r'),
                    b't' => Some(b'\t'),
                    b'u' => None,
                    _ => return None,
                };
                let end;
                if let Some(byte) = simple {
                    end = i + 2;
                    w.replace(&[byte], i, end);
                } else {
                    let unit = hex4(data, i + 2)?;
                    let mut stop = i + 6;
                    let ch = if (0xD800..0xDC00).contains(&unit) {
                        // High surrogate: pair it with a following low one.
                        let low = (data.get(stop) == Some(&b'\\')
                            && data.get(stop + 1) == Some(&b'u'))
                        .then(|| hex4(data, stop + 2))
                        .flatten()
                        .filter(|lo| (0xDC00..0xE000).contains(lo));
                        match low {
                            Some(lo) => {
                                stop += 6;
                                char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (lo - 0xDC00))
                            }
                            None => None,
                        }
                    } else {
                        char::from_u32(unit)
                    };
                    let ch = ch.unwrap_or(char::REPLACEMENT_CHARACTER);
                    let mut buf = [0u8; 4];
                    end = stop;
                    w.replace(ch.encode_utf8(&mut buf).as_bytes(), i, end);
                }
                i = end;
                run = i;
            }
            0..=0x1f => return None,
            _ => i += 1,
        }
    }
}

/// Decode `\uXXXX` (surrogate pairs joined) and `\xHH` escapes anywhere in
/// `data`, leaving every other byte as it is. `None` when there is none.
/// Each escape maps to its whole source, everything else one-to-one.
pub(crate) fn unescape_loose(data: &[u8], parent: &OffsetMap) -> Option<(Vec<u8>, OffsetMap)> {
    let mut w = ViewWriter::new(parent, data.len());
    let mut run = 0;
    let mut i = 0;
    let mut decoded = false;
    while i + 1 < data.len() {
        // Jump to the next backslash that has a byte after it.
        match memchr::memchr(b'\\', &data[i..data.len() - 1]) {
            Some(skip) => i += skip,
            None => break,
        }
        let (ch, end) = match data[i + 1] {
            b'u' => match hex4(data, i + 2) {
                Some(unit) if (0xD800..0xDC00).contains(&unit) => {
                    let low = (data.get(i + 6) == Some(&b'\\') && data.get(i + 7) == Some(&b'u'))
                        .then(|| hex4(data, i + 8))
                        .flatten()
                        .filter(|lo| (0xDC00..0xE000).contains(lo));
                    match low {
                        Some(lo) => (
                            char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (lo - 0xDC00)),
                            i + 12,
                        ),
                        None => (None, i + 6),
                    }
                }
                Some(unit) => (char::from_u32(unit), i + 6),
                None => (None, i + 1),
            },
            b'x' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    data.get(i + 2).copied().and_then(hex),
                    data.get(i + 3).copied().and_then(hex),
                ) {
                    (Some(hi), Some(lo)) => (char::from_u32(hi * 16 + lo), i + 4),
                    _ => (None, i + 1),
                }
            }
            _ => (None, i + 1),
        };
        match ch {
            Some(ch) if end > i + 1 => {
                w.copy(data, run, i);
                let mut buf = [0u8; 4];
                w.replace(ch.encode_utf8(&mut buf).as_bytes(), i, end);
                decoded = true;
                run = end;
                i = end;
            }
            _ => i = end.max(i + 1),
        }
    }
    if !decoded {
        return None;
    }
    w.copy(data, run, data.len());
    Some(w.finish())
}

/// Validate `data` as one JSON document and collect its decoded strings.
/// `None` when it is not valid JSON (or not UTF-8).
pub(crate) fn extract_strings(data: &[u8], parent: &OffsetMap) -> Option<JsonStrings> {
    if std::str::from_utf8(data).is_err() {
        return None;
    }
    let mut w = ViewWriter::new(parent, data.len() / 2);
    let mut had_escape = false;
    let mut stack: Vec<u8> = Vec::new();
    let mut expect = Expect::Value;
    let mut i = 0;
    loop {
        i = skip_ws(data, i);
        let Some(&c) = data.get(i) else { break };
        let mut value_done = false;
        match expect {
            Expect::Value | Expect::ValueOrEnd => {
                if expect == Expect::ValueOrEnd && c == b']' {
                    stack.pop();
                    i += 1;
                    value_done = true;
                } else {
                    match c {
                        b'{' => {
                            stack.push(b'{');
                            expect = Expect::KeyOrEnd;
                            i += 1;
                        }
                        b'[' => {
                            stack.push(b'[');
                            expect = Expect::ValueOrEnd;
                            i += 1;
                        }
                        b'"' => {
                            i = string(data, i, &mut w, &mut had_escape)?;
                            value_done = true;
                        }
                        _ => {
                            i = scalar(data, i)?;
                            value_done = true;
                        }
                    }
                }
            }
            Expect::Key | Expect::KeyOrEnd => {
                if expect == Expect::KeyOrEnd && c == b'}' {
                    stack.pop();
                    i += 1;
                    value_done = true;
                } else if c == b'"' {
                    i = string(data, i, &mut w, &mut had_escape)?;
                    expect = Expect::Colon;
                } else {
                    return None;
                }
            }
            Expect::Colon => {
                if c != b':' {
                    return None;
                }
                i += 1;
                expect = Expect::Value;
            }
            Expect::CommaOrEnd => {
                let top = *stack.last()?;
                match (c, top) {
                    (b',', b'{') => expect = Expect::Key,
                    (b',', _) => expect = Expect::Value,
                    (b'}', b'{') | (b']', b'[') => {
                        stack.pop();
                        value_done = true;
                    }
                    _ => return None,
                }
                i += 1;
            }
            Expect::Done => return None,
        }
        if value_done {
            expect = if stack.is_empty() {
                Expect::Done
            } else {
                Expect::CommaOrEnd
            };
        }
    }
    if expect != Expect::Done {
        return None;
    }
    let (bytes, map) = w.finish();
    Some(JsonStrings {
        bytes,
        map,
        had_escape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(doc: &str) -> Option<(String, bool)> {
        let map = OffsetMap::identity(doc.len());
        extract_strings(doc.as_bytes(), &map)
            .map(|j| (String::from_utf8(j.bytes).unwrap(), j.had_escape))
    }

    #[test]
    fn valid_documents() {
        assert_eq!(
            strings(r#"{"a": ["x\u00e9", 1, -2.5e3, true, null], "b\n": {}}"#),
            Some(("a\nxé\nb\n\n".to_owned(), true))
        );
        assert_eq!(
            strings(r#""\ud83d\ude00""#),
            Some(("😀\n".to_owned(), true))
        );
        assert_eq!(
            strings(r#"["\ud83d"]"#),
            Some(("\u{fffd}\n".to_owned(), true))
        );
        assert_eq!(strings("[]"), Some((String::new(), false)));
    }

    #[test]
    fn invalid_documents() {
        for doc in [
            "",
            "{",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "[01]",
            "\"\\x\"",
            "[1] [2]",
            "tru",
            "[\"\n\"]",
            "{1:2}",
            "]",
        ] {
            assert!(strings(doc).is_none(), "{doc:?}");
        }
    }

    #[test]
    fn escape_maps_to_its_source() {
        let doc = r#"["A\u0042C"]"#;
        let map = OffsetMap::identity(doc.len());
        let j = extract_strings(doc.as_bytes(), &map).unwrap();
        assert_eq!(j.bytes, b"ABC\n");
        assert_eq!(j.map.map_span(0, 3), Some((2, 10)));
        assert_eq!(j.map.map_span(1, 2), Some((3, 9)));
    }
}
