//! The framing of a per-tool container's stdin and stdout, as in
//! `harness/shared.mjs`: a JSON header line naming the call, then `bytes`
//! bytes. In: a call's envelope, or a cancel. Out: that call's records,
//! which its own `RecordReader` (with its own marker) reads.

use serde::{Deserialize, Serialize};

/// Only the supervisor writes these; a longer header means it is broken.
const MAX_HEADER_BYTES: usize = 1 << 12;

#[derive(Serialize)]
struct CallHeader {
    call: u64,
    bytes: usize,
}

#[derive(Serialize)]
struct CancelHeader {
    cancel: u64,
}

#[derive(Deserialize)]
struct RecordsHeader {
    call: u64,
    #[serde(default)]
    bytes: usize,
}

/// The frame that starts call `id` with its envelope.
pub fn call(id: u64, envelope: &[u8]) -> Vec<u8> {
    let header = CallHeader {
        call: id,
        bytes: envelope.len(),
    };
    let mut frame = serde_json::to_vec(&header).unwrap_or_default();
    frame.push(b'\n');
    frame.extend_from_slice(envelope);
    frame
}

/// The frame that ends call `id` early: its timeout passed, or its caller left.
pub fn cancel(id: u64) -> Vec<u8> {
    let mut frame = serde_json::to_vec(&CancelHeader { cancel: id }).unwrap_or_default();
    frame.push(b'\n');
    frame
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame header from the supervisor is too long")]
    HeaderTooLong,
    #[error("a frame header from the supervisor cannot be read: {0}")]
    BadHeader(String),
}

/// Splits the supervisor's stdout into each call's bytes.
#[derive(Default)]
pub struct FrameReader {
    buffered: Vec<u8>,
    /// The current frame's call and the bytes of it still to come.
    current: Option<(u64, usize)>,
}

impl FrameReader {
    /// Hands each call's bytes to `on` as they arrive (a frame's payload
    /// may come in pieces). After an error the stream cannot be trusted.
    pub fn push(&mut self, mut chunk: &[u8], on: &mut impl FnMut(u64, &[u8])) -> Result<(), FrameError> {
        while !chunk.is_empty() {
            match &mut self.current {
                Some((call, remaining)) => {
                    let (piece, rest) = chunk.split_at((*remaining).min(chunk.len()));
                    *remaining -= piece.len();
                    let call = *call;
                    if *remaining == 0 {
                        self.current = None;
                    }
                    on(call, piece);
                    chunk = rest;
                }
                None => match chunk.iter().position(|&b| b == b'\n') {
                    None => {
                        self.buffered.extend_from_slice(chunk);
                        if self.buffered.len() > MAX_HEADER_BYTES {
                            return Err(FrameError::HeaderTooLong);
                        }
                        return Ok(());
                    }
                    Some(end) => {
                        self.buffered.extend_from_slice(&chunk[..end]);
                        let header: RecordsHeader =
                            serde_json::from_slice(&self.buffered).map_err(|e| FrameError::BadHeader(e.to_string()))?;
                        self.buffered.clear();
                        if header.bytes > 0 {
                            self.current = Some((header.call, header.bytes));
                        }
                        chunk = &chunk[end + 1..];
                    }
                },
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn frame(call: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = format!("{{\"call\":{call},\"bytes\":{}}}\n", payload.len()).into_bytes();
        bytes.extend_from_slice(payload);
        bytes
    }

    fn split(chunks: &[&[u8]]) -> Result<BTreeMap<u64, Vec<u8>>, FrameError> {
        let mut reader = FrameReader::default();
        let mut calls = BTreeMap::<u64, Vec<u8>>::new();
        for chunk in chunks {
            reader.push(chunk, &mut |call, bytes| {
                calls.entry(call).or_default().extend_from_slice(bytes)
            })?;
        }
        Ok(calls)
    }

    #[test]
    fn interleaved_calls_are_split_across_every_cut() {
        let whole = [
            frame(1, b"one-a"),
            frame(2, b"two\n{}"),
            frame(1, b"\nline"),
            frame(3, b""),
        ]
        .concat();
        let expected = BTreeMap::from([(1, b"one-a\nline".to_vec()), (2, b"two\n{}".to_vec())]);
        for a in 0..=whole.len() {
            for b in a..=whole.len() {
                assert_eq!(
                    split(&[&whole[..a], &whole[a..b], &whole[b..]]).unwrap(),
                    expected,
                    "cuts at {a},{b}"
                );
            }
        }
    }

    #[test]
    fn what_the_executor_sends_is_framed_the_same_way() {
        assert_eq!(call(7, b"{}\nx"), b"{\"call\":7,\"bytes\":4}\n{}\nx");
        assert_eq!(cancel(7), b"{\"cancel\":7}\n");
    }

    #[test]
    fn a_broken_stream_is_an_error_not_a_guess() {
        assert!(matches!(split(&[b"not json\n"]), Err(FrameError::BadHeader(_))));
        assert_eq!(split(&[&[b'x'; 5000]]), Err(FrameError::HeaderTooLong));
    }
}
