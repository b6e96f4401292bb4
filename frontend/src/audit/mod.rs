//! The audit log: one JSON line per privileged or runtime action —
//! `{timestamp, service, serviceVersion, action, actor, target?, result,
//! details?}` with `result` one of `success`, `error`, `denied`.
//!
//! Callers build an [`AuditEvent`]; [`AuditLog::record`] redacts secret-like
//! keys, stamps and encodes it (cutting an oversized `details`) and hands the
//! line to one background writer thread, so a request never waits for the
//! disk. Write failures (a full disk) are counted in /metrics and logged, and
//! the server keeps running. [`AuditLog::close`] flushes at shutdown.

pub mod redact;
pub mod rotating_file;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{mpsc, oneshot};

use self::rotating_file::RotatingFile;
use crate::config::AuditArgs;
use crate::metrics;

pub const SERVICE: &str = "dynamic-mcp";
/// Events waiting for the writer; beyond this they are dropped (and counted).
const QUEUE: usize = 4096;
/// How long shutdown waits for the writer to flush.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// Actor and target are cut to this many characters if a line is still too long.
const MAX_NAME_CHARS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditResult {
    Success,
    Error,
    Denied,
}

/// One action to audit.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub action: String,
    pub actor: String,
    pub target: Option<String>,
    pub result: AuditResult,
    pub details: Option<Value>,
}

impl AuditEvent {
    pub fn new(action: impl Into<String>, actor: impl Into<String>, result: AuditResult) -> Self {
        Self {
            action: action.into(),
            actor: actor.into(),
            target: None,
            result,
            details: None,
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    timestamp: &'a str,
    service: &'static str,
    service_version: &'static str,
    action: &'a str,
    actor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    result: AuditResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a Value>,
}

/// The JSON line for `event`, at most `max_bytes` long when it can be: an
/// oversized event keeps its other fields, and its details become
/// `{"truncated": true, "originalBytes": <size of the full line>}`.
pub fn encode(event: &AuditEvent, max_bytes: usize, at: OffsetDateTime) -> String {
    let timestamp = at.format(&Rfc3339).unwrap_or_else(|_| at.unix_timestamp().to_string());
    let mut details = event.details.clone();
    if let Some(details) = details.as_mut() {
        redact::redact(details);
    }
    let line = |actor: &str, target: Option<&str>, details: Option<&Value>| {
        serde_json::to_string(&Line {
            timestamp: &timestamp,
            service: SERVICE,
            service_version: env!("CARGO_PKG_VERSION"),
            action: &event.action,
            actor,
            target,
            result: event.result,
            details,
        })
        .unwrap_or_default()
    };
    let full = line(&event.actor, event.target.as_deref(), details.as_ref());
    if full.len() <= max_bytes {
        return full;
    }
    let cut = json!({"truncated": true, "originalBytes": full.len()});
    let shorter = line(&event.actor, event.target.as_deref(), Some(&cut));
    if shorter.len() <= max_bytes {
        return shorter;
    }
    let clip = |text: &str| text.chars().take(MAX_NAME_CHARS).collect::<String>();
    line(
        &clip(&event.actor),
        event.target.as_deref().map(clip).as_deref(),
        Some(&cut),
    )
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the audit log {}: {source}; set MCP_AUDIT_FILE to a writable path, or MCP_AUDIT_ENABLED=false",
    path.display()
)]
pub struct AuditOpenError {
    path: PathBuf,
    source: std::io::Error,
}

enum Message {
    Line(String),
    Close(oneshot::Sender<()>),
}

/// Where audit events go. Cheap to clone; disabled when auditing is off.
#[derive(Clone)]
pub struct AuditLog {
    writer: Option<Arc<Writer>>,
}

struct Writer {
    queue: mpsc::Sender<Message>,
    max_event_bytes: usize,
}

impl AuditLog {
    pub fn disabled() -> Self {
        Self { writer: None }
    }

    /// Opens the file (so a bad path fails at start) and starts the writer thread.
    pub fn start(settings: &AuditArgs) -> Result<Self, AuditOpenError> {
        if !settings.enabled {
            return Ok(Self::disabled());
        }
        let file =
            RotatingFile::open(&settings.file, settings.max_file_bytes, settings.max_files).map_err(|source| {
                AuditOpenError {
                    path: settings.file.clone(),
                    source,
                }
            })?;
        let (queue, lines) = mpsc::channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_lines(file, lines));
        if let Err(source) = spawned {
            return Err(AuditOpenError {
                path: settings.file.clone(),
                source,
            });
        }
        tracing::info!(file = %settings.file.display(), "audit log enabled");
        Ok(Self {
            writer: Some(Arc::new(Writer {
                queue,
                max_event_bytes: settings.max_event_bytes as usize,
            })),
        })
    }

    /// Queues `event`; never blocks and never fails the caller.
    pub fn record(&self, event: AuditEvent) {
        let Some(writer) = &self.writer else { return };
        let line = encode(&event, writer.max_event_bytes, OffsetDateTime::now_utc());
        if writer.queue.try_send(Message::Line(line)).is_err() {
            metrics::audit_dropped();
            tracing::warn!(action = %event.action, "audit event dropped: the audit writer is behind or stopped");
        }
    }

    /// Writes out everything queued so far, syncs the file and stops the writer.
    pub async fn close(&self) {
        let Some(writer) = &self.writer else { return };
        let (done, flushed) = oneshot::channel();
        if writer.queue.send(Message::Close(done)).await.is_ok()
            && tokio::time::timeout(CLOSE_WITHIN, flushed).await.is_err()
        {
            tracing::warn!("the audit writer did not flush within {} s", CLOSE_WITHIN.as_secs());
        }
    }
}

/// The writer thread: writes each burst of lines, then flushes once.
fn write_lines(mut file: RotatingFile, mut lines: mpsc::Receiver<Message>) {
    let mut failing = false;
    let mut report = |result: std::io::Result<()>| match result {
        Ok(()) if failing => {
            failing = false;
            tracing::info!("audit log writable again");
        }
        Ok(()) => {}
        Err(e) => {
            metrics::audit_write_failed();
            if !failing {
                failing = true;
                tracing::error!("cannot write the audit log: {e}; audit events are being lost");
            }
        }
    };
    while let Some(mut message) = lines.blocking_recv() {
        loop {
            match message {
                Message::Line(line) => report(file.write_line(&line)),
                Message::Close(done) => {
                    report(file.sync());
                    let _ = done.send(());
                    return;
                }
            }
            match lines.try_recv() {
                Ok(next) => message = next,
                Err(_) => break,
            }
        }
        report(file.flush());
    }
    report(file.sync());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn lines_carry_every_field_and_redact_details() {
        let event = AuditEvent::new("tool.create", "alice", AuditResult::Success)
            .target("text.upper")
            .details(json!({"revision": 1, "adminToken": "secret-value"}));
        let line = encode(&event, 20_000, at());
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            json!({"timestamp": "2027-01-15T08:00:00Z", "service": "dynamic-mcp",
                "serviceVersion": env!("CARGO_PKG_VERSION"), "action": "tool.create", "actor": "alice",
                "target": "text.upper", "result": "success",
                "details": {"revision": 1, "adminToken": "[REDACTED]"}})
        );
        assert!(!line.contains("secret-value"));
        let bare = encode(&AuditEvent::new("x", "y", AuditResult::Denied), 20_000, at());
        assert!(!bare.contains("target") && !bare.contains("details"), "{bare}");
    }

    #[test]
    fn oversized_details_are_replaced_and_the_rest_kept() {
        let event = AuditEvent::new("tool.run", "bob", AuditResult::Error)
            .target("big")
            .details(json!({"blob": "x".repeat(5000)}));
        let full_len = encode(&event, usize::MAX, at()).len();
        let line = encode(&event, 1024, at());
        assert!(line.len() <= 1024);
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["details"], json!({"truncated": true, "originalBytes": full_len}));
        assert_eq!(
            (value["action"].as_str(), value["target"].as_str()),
            (Some("tool.run"), Some("big"))
        );
        let long_actor = AuditEvent::new("a", "z".repeat(3000), AuditResult::Denied);
        let value: Value = serde_json::from_str(&encode(&long_actor, 1024, at())).unwrap();
        assert_eq!(value["actor"].as_str().map(str::len), Some(MAX_NAME_CHARS));
    }

    #[tokio::test]
    async fn the_writer_flushes_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuditArgs {
            enabled: true,
            file: dir.path().join("a/audit.log"),
            max_event_bytes: 20_000,
            max_file_bytes: 1 << 20,
            max_files: 5,
        };
        let log = AuditLog::start(&settings).unwrap();
        for n in 0..100 {
            log.record(AuditEvent::new("tool.run", format!("caller-{n}"), AuditResult::Success));
        }
        log.close().await;
        let text = std::fs::read_to_string(&settings.file).unwrap();
        assert_eq!(text.lines().count(), 100);
        assert!(text.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()));
    }

    #[test]
    fn an_unwritable_path_is_a_clear_startup_error() {
        let settings = AuditArgs {
            enabled: true,
            file: "/proc/no-such-dir/audit.log".into(),
            max_event_bytes: 20_000,
            max_file_bytes: 1 << 20,
            max_files: 5,
        };
        let err = AuditLog::start(&settings).err().unwrap().to_string();
        assert!(err.contains("MCP_AUDIT_FILE"), "{err}");
    }
}
