//! Output capture with fixed memory: however much a process prints, we keep
//! at most a cap per stream and only count the rest.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
