//! Run-length offset maps from a view's bytes back to the original body.
//!
//! A map is a sorted list of [`Segment`]s that together cover the view's
//! bytes `0..len`. An *identity* segment maps view byte `out + k` to original
//! byte `src_start + k` (bytes copied unchanged); a *collapsed* segment maps
//! every view byte in it to the whole original span `src_start..src_end`
//! (an escape, a decoded blob, a folded character). Lookups binary-search the
//! segment holding a byte, so a map costs one entry per run, not per byte.

/// One run of view bytes and where it came from in the original body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First view byte of the run.
    pub out: usize,
    /// Number of view bytes in the run (never 0).
    pub len: usize,
    /// Original span start.
    pub src_start: usize,
    /// Original span end (exclusive). For identity runs, `src_start + len`.
    pub src_end: usize,
    /// Whether byte `out + k` maps to the single original byte `src_start + k`.
    pub identity: bool,
}

/// Offset map of one view (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetMap {
    segments: Vec<Segment>,
    len: usize,
}

impl OffsetMap {
    /// The map of a view that is the original body itself.
    pub fn identity(len: usize) -> Self {
        let mut map = Self::default();
        map.push_identity(len, 0);
        map
    }

    /// Number of view bytes covered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The runs, in view order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Append `len` view bytes copied from original bytes `src_start..`.
    pub fn push_identity(&mut self, len: usize, src_start: usize) {
        if len == 0 {
            return;
        }
        if let Some(last) = self.segments.last_mut() {
            if last.identity && last.src_end == src_start {
                last.len += len;
                last.src_end += len;
                self.len += len;
                return;
            }
        }
        self.segments.push(Segment {
            out: self.len,
            len,
            src_start,
            src_end: src_start + len,
            identity: true,
        });
        self.len += len;
    }

    /// Append `len` view bytes that all stand for original `src_start..src_end`.
    pub fn push_collapsed(&mut self, len: usize, src_start: usize, src_end: usize) {
        if len == 0 {
            return;
        }
        if let Some(last) = self.segments.last_mut() {
            if !last.identity && last.src_start == src_start && last.src_end == src_end {
                last.len += len;
                self.len += len;
                return;
            }
        }
        self.segments.push(Segment {
            out: self.len,
            len,
            src_start,
            src_end,
            identity: false,
        });
        self.len += len;
    }

    fn segment_index(&self, pos: usize) -> usize {
        // Last segment whose `out <= pos`.
        self.segments
            .partition_point(|s| s.out <= pos)
            .saturating_sub(1)
    }

    /// Original span of view byte `pos` (clamped to the last byte).
    fn byte_span(&self, pos: usize) -> (usize, usize) {
        let seg = &self.segments[self.segment_index(pos)];
        if seg.identity {
            let at = seg.src_start + (pos - seg.out).min(seg.len - 1);
            (at, at + 1)
        } else {
            (seg.src_start, seg.src_end)
        }
    }

    /// Map the view span `start..end` to an original span. Collapsed runs
    /// widen the result to their whole source. Returns `None` for an empty
    /// map or an empty span.
    pub fn map_span(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        if self.segments.is_empty() || start >= end || start >= self.len {
            return None;
        }
        let end = end.min(self.len);
        let (a, b) = self.byte_span(start);
        let (c, d) = self.byte_span(end - 1);
        Some((a.min(c), b.max(d)))
    }

    /// Append the view bytes `start..end` of a parent view (whose map is
    /// `parent`) copied unchanged, composing the parent's runs.
    pub fn push_from_parent(&mut self, parent: &Self, start: usize, end: usize) {
        if start >= end || parent.segments.is_empty() {
            return;
        }
        let mut i = parent.segment_index(start);
        let mut pos = start;
        while pos < end && i < parent.segments.len() {
            let seg = parent.segments[i];
            let seg_end = seg.out + seg.len;
            let take_end = end.min(seg_end);
            if take_end > pos {
                let n = take_end - pos;
                if seg.identity {
                    self.push_identity(n, seg.src_start + (pos - seg.out));
                } else {
                    self.push_collapsed(n, seg.src_start, seg.src_end);
                }
                pos = take_end;
            }
            i += 1;
        }
    }

    /// Append `len` view bytes that replace the parent view's `start..end`.
    pub fn push_replacing(&mut self, len: usize, parent: &Self, start: usize, end: usize) {
        if let Some((a, b)) = parent.map_span(start, end) {
            self.push_collapsed(len, a, b);
        } else if let Some(last) = self.segments.last().copied() {
            // Nothing to point at (empty parent span): reuse the previous run's end.
            self.push_collapsed(len, last.src_end, last.src_end);
        }
    }
}

/// A view under construction: its bytes plus the map back to the original,
/// built by copying from or replacing parts of a parent view.
#[derive(Debug)]
pub(crate) struct ViewWriter<'p> {
    pub(crate) bytes: Vec<u8>,
    pub(crate) map: OffsetMap,
    parent: &'p OffsetMap,
}

impl<'p> ViewWriter<'p> {
    pub(crate) fn new(parent: &'p OffsetMap, capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
            map: OffsetMap::default(),
            parent,
        }
    }

    /// Copy `src[start..end]` (parent view bytes) unchanged.
    pub(crate) fn copy(&mut self, src: &[u8], start: usize, end: usize) {
        if start < end {
            self.bytes.extend_from_slice(&src[start..end]);
            self.map.push_from_parent(self.parent, start, end);
        }
    }

    /// Emit `out` in place of the parent view's `start..end`.
    pub(crate) fn replace(&mut self, out: &[u8], start: usize, end: usize) {
        if !out.is_empty() {
            self.bytes.extend_from_slice(out);
            self.map.push_replacing(out.len(), self.parent, start, end);
        }
    }

    pub(crate) fn finish(self) -> (Vec<u8>, OffsetMap) {
        (self.bytes, self.map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_collapsed_runs() {
        let mut map = OffsetMap::default();
        map.push_identity(3, 0); // "abc" <- 0..3
        map.push_collapsed(1, 3, 9); // "é" escape <- 3..9
        map.push_identity(2, 9); // "de" <- 9..11
        assert_eq!(map.segments().len(), 3);
        assert_eq!(map.map_span(0, 2), Some((0, 2)));
        assert_eq!(map.map_span(2, 4), Some((2, 9)));
        assert_eq!(map.map_span(3, 4), Some((3, 9)));
        assert_eq!(map.map_span(4, 6), Some((9, 11)));
        assert_eq!(map.map_span(5, 5), None);
    }

    #[test]
    fn runs_merge() {
        let mut map = OffsetMap::default();
        map.push_identity(3, 0);
        map.push_identity(2, 3);
        map.push_collapsed(1, 5, 7);
        map.push_collapsed(2, 5, 7);
        assert_eq!(map.segments().len(), 2);
        assert_eq!(map.len(), 8);
    }

    #[test]
    fn composition_through_a_parent() {
        let mut parent = OffsetMap::default();
        parent.push_identity(2, 10);
        parent.push_collapsed(1, 12, 18);
        parent.push_identity(4, 18);
        let mut child = OffsetMap::default();
        child.push_from_parent(&parent, 1, 5);
        assert_eq!(child.map_span(0, 1), Some((11, 12)));
        assert_eq!(child.map_span(1, 2), Some((12, 18)));
        assert_eq!(child.map_span(2, 4), Some((18, 20)));
        child.push_replacing(1, &parent, 5, 7);
        assert_eq!(child.map_span(4, 5), Some((20, 22)));
    }
}
