//! Output capture with fixed memory: however much a run prints, we keep at
//! most a cap per stream and only count the rest. Stdout also carries the
//! harness's result frame after a per-run marker, and stderr its end marker;
//! both are split off here.

/// Somewhere a stream's bytes go as they arrive.
pub trait Capture: Send {
    fn push(&mut self, bytes: &[u8]);
}

/// Keeps the first `cap` bytes of a stream and counts the rest.
#[derive(Debug)]
pub struct CappedBuffer {
    cap: usize,
    kept: Vec<u8>,
    dropped: u64,
}

impl CappedBuffer {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            kept: Vec::new(),
            dropped: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.kept.len());
        let (keep, drop) = bytes.split_at(room.min(bytes.len()));
        self.kept.extend_from_slice(keep);
        self.dropped += drop.len() as u64;
    }

    pub fn truncated(&self) -> bool {
        self.dropped > 0
    }

    pub fn bytes(&self) -> &[u8] {
        &self.kept
    }

    /// The kept bytes as text; invalid UTF-8 (or a character cut by the cap)
    /// becomes U+FFFD rather than an error.
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

impl Capture for CappedBuffer {
    fn push(&mut self, bytes: &[u8]) {
        CappedBuffer::push(self, bytes);
    }
}

/// Keeps the last `cap` bytes of a stream: where npm puts its error summary.
#[derive(Debug)]
pub struct TailBuffer {
    cap: usize,
    kept: std::collections::VecDeque<u8>,
}

impl TailBuffer {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            kept: std::collections::VecDeque::new(),
        }
    }

    /// The kept bytes as text, lossily.
    pub fn to_text(&self) -> String {
        let (a, b) = self.kept.as_slices();
        String::from_utf8_lossy(&[a, b].concat()).into_owned()
    }
}

impl Capture for TailBuffer {
    fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.cap)..];
        let overflow = (self.kept.len() + bytes.len()).saturating_sub(self.cap);
        self.kept.drain(..overflow);
        self.kept.extend(bytes);
    }
}

/// Splits a stream into the user's output (before the marker) and what
/// follows it (the result frame on stdout), as chunks arrive. The marker may be cut across
/// chunk boundaries; up to `marker.len() - 1` bytes are held back meanwhile.
#[derive(Debug)]
pub struct MarkerSplitter {
    marker: Vec<u8>,
    user: CappedBuffer,
    /// A tail of what arrived so far that could be the start of the marker.
    held: Vec<u8>,
    frame: Option<CappedBuffer>,
    frame_cap: usize,
}

impl MarkerSplitter {
    pub fn new(marker: &[u8], user_cap: usize, frame_cap: usize) -> Self {
        Self {
            marker: marker.to_vec(),
            user: CappedBuffer::new(user_cap),
            held: Vec::new(),
            frame: None,
            frame_cap,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if let Some(frame) = &mut self.frame {
            frame.push(chunk);
            return;
        }
        let m = self.marker.len();
        let held = std::mem::take(&mut self.held);
        // A marker that starts in the held tail ends within this chunk's first m-1 bytes.
        let mut head = held.clone();
        head.extend_from_slice(&chunk[..chunk.len().min(m - 1)]);
        if let Some(pos) = find(&head, &self.marker) {
            self.user.push(&head[..pos]);
            self.start_frame(&chunk[pos + m - held.len()..]);
            return;
        }
        if chunk.len() < m - 1 {
            // The whole chunk is in `head`; keep what could still become the marker.
            self.hold_back(&head);
            return;
        }
        self.user.push(&held);
        match find(chunk, &self.marker) {
            Some(pos) => {
                self.user.push(&chunk[..pos]);
                self.start_frame(&chunk[pos + m..]);
            }
            None => self.hold_back(chunk),
        }
    }

    /// The stream ended: whatever was held back was plain output.
    pub fn finish(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.user.push(&held);
    }

    pub fn user_output(&self) -> &CappedBuffer {
        &self.user
    }

    pub fn into_user_output(self) -> CappedBuffer {
        self.user
    }

    /// The bytes after the marker, or `None` when no marker was seen.
    pub fn frame(&self) -> Option<&CappedBuffer> {
        self.frame.as_ref()
    }

    fn start_frame(&mut self, rest: &[u8]) {
        let mut frame = CappedBuffer::new(self.frame_cap);
        frame.push(rest);
        self.frame = Some(frame);
    }

    fn hold_back(&mut self, data: &[u8]) {
        let keep = longest_suffix_prefix(data, &self.marker);
        let (output, tail) = data.split_at(data.len() - keep);
        self.user.push(output);
        self.held = tail.to_vec();
    }
}

impl Capture for MarkerSplitter {
    fn push(&mut self, bytes: &[u8]) {
        MarkerSplitter::push(self, bytes);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The length of the longest proper prefix of `marker` that `data` ends with.
fn longest_suffix_prefix(data: &[u8], marker: &[u8]) -> usize {
    (1..marker.len().min(data.len() + 1))
        .rev()
        .find(|&k| data.ends_with(&marker[..k]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER: &[u8] = b"\x1eMARK\x1e";

    fn split(chunks: &[&[u8]], user_cap: usize, frame_cap: usize) -> MarkerSplitter {
        let mut splitter = MarkerSplitter::new(MARKER, user_cap, frame_cap);
        for chunk in chunks {
            splitter.push(chunk);
        }
        splitter.finish();
        splitter
    }

    #[test]
    fn capped_buffer_keeps_the_start_and_counts_the_rest() {
        let mut buffer = CappedBuffer::new(5);
        buffer.push(b"abc");
        assert!(!buffer.truncated());
        buffer.push(b"defgh");
        assert_eq!(buffer.bytes(), b"abcde");
        assert!(buffer.truncated());
        assert_eq!(buffer.dropped, 3);
    }

    #[test]
    fn tail_buffer_keeps_the_end() {
        let mut tail = TailBuffer::new(5);
        tail.push(b"abc");
        assert_eq!(tail.to_text(), "abc");
        tail.push(b"defg");
        assert_eq!(tail.to_text(), "cdefg");
        tail.push(b"0123456789");
        assert_eq!(tail.to_text(), "56789");
    }

    #[test]
    fn lossy_text_survives_a_cut_character() {
        let mut buffer = CappedBuffer::new(4);
        buffer.push("aé€".as_bytes());
        assert_eq!(buffer.to_text(), "aé\u{fffd}");
    }

    #[test]
    fn splits_output_from_frame_in_one_chunk() {
        let s = split(&[b"hello\n\x1eMARK\x1e{\"x\":1}\n"], 100, 100);
        assert_eq!(s.user_output().bytes(), b"hello\n");
        assert_eq!(s.frame().unwrap().bytes(), b"{\"x\":1}\n");
    }

    #[test]
    fn finds_the_marker_across_every_possible_cut() {
        let whole: &[u8] = b"out\x1e put\x1eMARK\x1e{\"ok\":true}";
        for a in 0..=whole.len() {
            for b in a..=whole.len() {
                let s = split(&[&whole[..a], &whole[a..b], &whole[b..]], 100, 100);
                assert_eq!(s.user_output().bytes(), b"out\x1e put", "cuts at {a},{b}");
                assert_eq!(s.frame().unwrap().bytes(), b"{\"ok\":true}", "cuts at {a},{b}");
            }
        }
    }

    #[test]
    fn byte_by_byte_works_too() {
        let whole: &[u8] = b"\x1e\x1eMA\x1eMARK\x1eF";
        let chunks: Vec<&[u8]> = whole.chunks(1).collect();
        let s = split(&chunks, 100, 100);
        assert_eq!(s.user_output().bytes(), b"\x1e\x1eMA");
        assert_eq!(s.frame().unwrap().bytes(), b"F");
    }

    #[test]
    fn a_partial_marker_at_the_end_is_plain_output() {
        let s = split(&[b"abc\x1eMAR"], 100, 100);
        assert_eq!(s.user_output().bytes(), b"abc\x1eMAR");
        assert!(s.frame().is_none());
    }

    #[test]
    fn output_and_frame_are_capped_separately() {
        let s = split(&[b"0123456789", b"\x1eMARK\x1e", b"abcdefgh"], 4, 6);
        assert_eq!(s.user_output().bytes(), b"0123");
        assert!(s.user_output().truncated());
        assert_eq!(s.frame().unwrap().bytes(), b"abcdef");
        assert!(s.frame().unwrap().truncated());
    }

    #[test]
    fn a_flood_is_counted_not_kept() {
        let mut splitter = MarkerSplitter::new(MARKER, 1000, 1000);
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..1600 {
            splitter.push(&chunk);
        }
        splitter.push(b"\x1eMARK\x1e{}");
        splitter.finish();
        assert_eq!(splitter.user_output().bytes().len(), 1000);
        assert_eq!(splitter.user_output().dropped, 1600 * 64 * 1024 - 1000);
        assert!(splitter.user.kept.capacity() < 64 * 1024);
        assert_eq!(splitter.frame().unwrap().bytes(), b"{}");
    }
}
