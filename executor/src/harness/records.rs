//! Reading the supervisor's stdout: a stream of records, each
//! `<marker><header JSON>\n` and, when the header says `bytes`, that many
//! bytes of payload. Only the supervisor writes there (the code's process
//! never holds that stream), so anything else is a fault of the harness;
//! it is kept as stray output rather than lost.

use std::borrow::Cow;

use serde::Deserialize;

/// A header line is small; a thrown error's message and stack are the
/// largest (the supervisor cuts each to 32 KiB characters, escaped in JSON).
const MAX_HEADER_BYTES: usize = 1 << 20;

/// What a record said, as it arrives. Output payloads may come in pieces.
#[derive(Debug, PartialEq)]
pub enum Record<'a> {
    Stdout(&'a [u8]),
    Stderr(&'a [u8]),
    Progress(ProgressReport),
    Done(Done),
    /// Bytes outside any record.
    Stray(Cow<'a, [u8]>),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProgressReport {
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// The last record of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    pub ending: Ending,
    /// Output the supervisor counted past the output cap and did not send.
    pub stdout_dropped: u64,
    pub stderr_dropped: u64,
    /// The call got no realm: none could start (the container's limits).
    pub realm_refused: bool,
}

/// How the code's process ended, as the supervisor saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The code returned; the payload is the JSON the child wrote, or
    /// `None` when it was larger than the result cap.
    Returned {
        format: Format,
        payload: Option<Vec<u8>>,
    },
    Threw {
        name: String,
        message: String,
        stack: String,
    },
    Syntax {
        message: String,
    },
    BadResult {
        message: String,
    },
    /// The process ended without an outcome; 128 + n for signal n.
    Exited {
        code: i64,
    },
    /// The supervisor stopped it at its timeout.
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A JSON value: today's `{ok, result}`.
    Json,
    /// An array of MCP content blocks from the `mcp` helpers.
    Content,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Header {
    Stdout { bytes: usize },
    Stderr { bytes: usize },
    Progress(ProgressReport),
    Done(DoneHeader),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DoneHeader {
    status: String,
    #[serde(default)]
    bytes: usize,
    format: Option<Format>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    stack: String,
    exit_code: Option<i64>,
    #[serde(default)]
    stdout_dropped: u64,
    #[serde(default)]
    stderr_dropped: u64,
    #[serde(default)]
    realm_refused: bool,
}

enum State {
    /// At a record boundary. `held` is a tail that may be the start of the
    /// marker, cut by the chunk boundary.
    Seek {
        held: Vec<u8>,
    },
    Header(Vec<u8>),
    Output {
        stdout: bool,
        remaining: usize,
    },
    Result {
        done: DoneHeader,
        kept: Option<Vec<u8>>,
        remaining: usize,
    },
    /// After `done`: nothing more is read.
    Over,
}

pub struct RecordReader {
    marker: Vec<u8>,
    result_cap: usize,
    state: State,
}

impl RecordReader {
    pub fn new(marker: &str, result_cap: usize) -> Self {
        Self {
            marker: marker.as_bytes().to_vec(),
            result_cap,
            state: State::Seek { held: Vec::new() },
        }
    }

    /// Whether the `done` record has been read whole.
    pub fn is_over(&self) -> bool {
        matches!(self.state, State::Over)
    }

    pub fn push<'a>(&mut self, mut chunk: &'a [u8], on: &mut impl FnMut(Record<'a>)) {
        while !chunk.is_empty() {
            chunk = match &mut self.state {
                State::Over => return,
                State::Seek { held } => {
                    let held = std::mem::take(held);
                    let (stray, rest) = seek(&self.marker, held, chunk, &mut self.state);
                    if !stray.is_empty() {
                        on(Record::Stray(stray));
                    }
                    rest
                }
                State::Header(line) => match chunk.iter().position(|&b| b == b'\n') {
                    None => {
                        line.extend_from_slice(chunk);
                        if line.len() > MAX_HEADER_BYTES {
                            let line = std::mem::take(line);
                            self.state = State::Seek { held: Vec::new() };
                            on(Record::Stray(Cow::Owned(line)));
                        }
                        &[]
                    }
                    Some(end) => {
                        line.extend_from_slice(&chunk[..end]);
                        let line = std::mem::take(line);
                        self.header(line, on);
                        &chunk[end + 1..]
                    }
                },
                State::Output { stdout, remaining } => {
                    let (piece, rest) = chunk.split_at((*remaining).min(chunk.len()));
                    *remaining -= piece.len();
                    let record = if *stdout {
                        Record::Stdout(piece)
                    } else {
                        Record::Stderr(piece)
                    };
                    if *remaining == 0 {
                        self.state = State::Seek { held: Vec::new() };
                    }
                    on(record);
                    rest
                }
                State::Result { kept, remaining, .. } => {
                    let (piece, rest) = chunk.split_at((*remaining).min(chunk.len()));
                    *remaining -= piece.len();
                    if let Some(kept) = kept {
                        kept.extend_from_slice(piece);
                    }
                    if *remaining == 0
                        && let State::Result { done, kept, .. } = std::mem::replace(&mut self.state, State::Over)
                    {
                        on(Record::Done(finish(done, kept)));
                    }
                    rest
                }
            };
        }
    }

    fn header<'a>(&mut self, line: Vec<u8>, on: &mut impl FnMut(Record<'a>)) {
        self.state = State::Seek { held: Vec::new() };
        match serde_json::from_slice::<Header>(&line) {
            Ok(Header::Stdout { bytes }) if bytes > 0 => {
                self.state = State::Output {
                    stdout: true,
                    remaining: bytes,
                }
            }
            Ok(Header::Stderr { bytes }) if bytes > 0 => {
                self.state = State::Output {
                    stdout: false,
                    remaining: bytes,
                }
            }
            Ok(Header::Stdout { .. } | Header::Stderr { .. }) => {}
            Ok(Header::Progress(report)) => on(Record::Progress(report)),
            Ok(Header::Done(done)) if done.bytes > 0 => {
                let kept = (done.bytes <= self.result_cap).then(|| Vec::with_capacity(done.bytes));
                self.state = State::Result {
                    remaining: done.bytes,
                    kept,
                    done,
                };
            }
            Ok(Header::Done(done)) => {
                self.state = State::Over;
                on(Record::Done(finish(done, None)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the sandbox harness sent a record that cannot be read");
                on(Record::Stray(Cow::Owned(line)));
            }
        }
    }
}

/// Looks for the marker in `held` + `chunk`. Returns the bytes before it
/// (or all that cannot start it) and what follows it in `chunk`; `state`
/// becomes `Header` once it is found, or keeps a possible start in `held`.
fn seek<'a>(marker: &[u8], mut held: Vec<u8>, chunk: &'a [u8], state: &mut State) -> (Cow<'a, [u8]>, &'a [u8]) {
    let m = marker.len();
    let before = held.len();
    if before > 0 {
        // A marker that starts in `held` ends within the chunk's first m - 1 bytes.
        held.extend_from_slice(&chunk[..chunk.len().min(m - 1)]);
        if let Some(pos) = find(&held, marker) {
            held.truncate(pos);
            *state = State::Header(Vec::new());
            return (Cow::Owned(held), &chunk[pos + m - before..]);
        }
        held.truncate(before);
    }
    if let Some(pos) = find(chunk, marker) {
        *state = State::Header(Vec::new());
        let stray = if before == 0 {
            Cow::Borrowed(&chunk[..pos])
        } else {
            held.extend_from_slice(&chunk[..pos]);
            Cow::Owned(held)
        };
        return (stray, &chunk[pos + m..]);
    }
    // Both held and chunk may be only a marker's start, when short.
    held.extend_from_slice(chunk);
    let keep = longest_prefix_suffix(&held, marker);
    let tail = held.split_off(held.len() - keep);
    *state = State::Seek { held: tail };
    (Cow::Owned(held), &[])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The length of the longest proper prefix of `marker` that `data` ends with.
fn longest_prefix_suffix(data: &[u8], marker: &[u8]) -> usize {
    (1..marker.len().min(data.len() + 1))
        .rev()
        .find(|&k| data.ends_with(&marker[..k]))
        .unwrap_or(0)
}

fn finish(done: DoneHeader, payload: Option<Vec<u8>>) -> Done {
    let DoneHeader {
        status,
        format,
        name,
        message,
        stack,
        exit_code,
        stdout_dropped,
        stderr_dropped,
        realm_refused,
        ..
    } = done;
    let ending = match status.as_str() {
        "ok" => Ending::Returned {
            format: format.unwrap_or(Format::Json),
            payload,
        },
        "threw" => Ending::Threw { name, message, stack },
        "syntax" => Ending::Syntax { message },
        "bad_result" => Ending::BadResult { message },
        "exited" => Ending::Exited {
            code: exit_code.unwrap_or(-1),
        },
        "timed_out" => Ending::TimedOut,
        other => Ending::BadResult {
            message: format!("the sandbox harness reported an unknown status '{other}'"),
        },
    };
    Done {
        ending,
        stdout_dropped,
        stderr_dropped,
        realm_refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER: &str = "\u{1e}0123456789abcdef\u{1e}";

    fn record(header: &str, payload: &[u8]) -> Vec<u8> {
        let mut bytes = format!("{MARKER}{header}\n").into_bytes();
        bytes.extend_from_slice(payload);
        bytes
    }

    /// Everything read, as owned values: output per stream, stray bytes, the rest.
    #[derive(Debug, Default, PartialEq)]
    struct Read {
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        stray: Vec<u8>,
        progress: Vec<f64>,
        done: Option<Done>,
    }

    fn read(chunks: &[&[u8]], result_cap: usize) -> Read {
        let mut reader = RecordReader::new(MARKER, result_cap);
        let mut read = Read::default();
        for chunk in chunks {
            reader.push(chunk, &mut |record| match record {
                Record::Stdout(b) => read.stdout.extend_from_slice(b),
                Record::Stderr(b) => read.stderr.extend_from_slice(b),
                Record::Stray(b) => read.stray.extend_from_slice(&b),
                Record::Progress(p) => read.progress.push(p.progress),
                Record::Done(done) => read.done = Some(done),
            });
        }
        assert_eq!(reader.is_over(), read.done.is_some());
        read
    }

    fn stream() -> Vec<u8> {
        [
            record(r#"{"kind":"stdout","bytes":6}"#, b"hello\n"),
            record(r#"{"kind":"progress","progress":1,"total":3,"message":"one"}"#, b""),
            record(r#"{"kind":"stderr","bytes":4}"#, b"warn"),
            record(r#"{"kind":"stdout","bytes":3}"#, b"\x1ex\n"),
            record(
                r#"{"kind":"done","status":"ok","format":"json","bytes":9,"stdoutDropped":5,"stderrDropped":0}"#,
                br#"{"a":[1]}"#,
            ),
            b"after the end".to_vec(),
        ]
        .concat()
    }

    #[test]
    fn records_are_read_across_every_cut() {
        let whole = stream();
        let expected = Read {
            stdout: b"hello\n\x1ex\n".to_vec(),
            stderr: b"warn".to_vec(),
            stray: Vec::new(),
            progress: vec![1.0],
            done: Some(Done {
                ending: Ending::Returned {
                    format: Format::Json,
                    payload: Some(br#"{"a":[1]}"#.to_vec()),
                },
                stdout_dropped: 5,
                stderr_dropped: 0,
                realm_refused: false,
            }),
        };
        for a in (0..=whole.len()).step_by(3) {
            for b in (a..=whole.len()).step_by(7) {
                let got = read(&[&whole[..a], &whole[a..b], &whole[b..]], 100);
                assert_eq!(got, expected, "cuts at {a},{b}");
            }
        }
        let bytewise: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(read(&bytewise, 100), expected);
    }

    #[test]
    fn a_result_over_the_cap_is_counted_not_kept() {
        let whole = record(
            r#"{"kind":"done","status":"ok","format":"content","bytes":10}"#,
            b"0123456789",
        );
        let got = read(&[&whole], 9);
        assert_eq!(
            got.done.unwrap().ending,
            Ending::Returned {
                format: Format::Content,
                payload: None
            }
        );
    }

    #[test]
    fn stray_bytes_and_broken_headers_are_kept_as_stray() {
        let whole = [
            b"node: warning\n".to_vec(),
            record(r#"{"kind":"stdout","bytes":2}"#, b"ok"),
            format!("{MARKER}not json\n").into_bytes(),
            b"\x1e0123".to_vec(),
            record(r#"{"kind":"done","status":"exited","exitCode":137}"#, b""),
        ]
        .concat();
        for cut in 0..whole.len() {
            let got = read(&[&whole[..cut], &whole[cut..]], 10);
            assert_eq!(got.stdout, b"ok", "cut at {cut}");
            assert_eq!(got.stray, b"node: warning\nnot json\x1e0123", "cut at {cut}");
            assert_eq!(got.done.as_ref().unwrap().ending, Ending::Exited { code: 137 });
        }
    }

    #[test]
    fn a_call_that_got_no_realm_says_so() {
        let done = |header: &str| read(&[&record(header, b"")], 10).done.unwrap();
        let refused = done(r#"{"kind":"done","status":"exited","exitCode":137,"realmRefused":true}"#);
        assert!(refused.realm_refused);
        assert_eq!(refused.ending, Ending::Exited { code: 137 });
        assert!(!done(r#"{"kind":"done","status":"exited","exitCode":137}"#).realm_refused);
    }

    #[test]
    fn every_status_is_read() {
        let done = |header: &str| read(&[&record(header, b"")], 10).done.unwrap().ending;
        assert_eq!(
            done(r#"{"kind":"done","status":"threw","name":"TypeError","message":"m","stack":"s"}"#),
            Ending::Threw {
                name: "TypeError".into(),
                message: "m".into(),
                stack: "s".into()
            }
        );
        assert_eq!(
            done(r#"{"kind":"done","status":"syntax","message":"m"}"#),
            Ending::Syntax { message: "m".into() }
        );
        assert_eq!(done(r#"{"kind":"done","status":"timed_out"}"#), Ending::TimedOut);
        assert!(matches!(
            done(r#"{"kind":"done","status":"won"}"#),
            Ending::BadResult { .. }
        ));
    }
}
