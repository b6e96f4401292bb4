//! One per-tool container and its channel: its supervisor's attached stdin
//! and stdout, shared by every call in flight, each frame naming its call.
//! A writer task owns stdin, a reader task owns the output and hands each
//! call its bytes; the container is removed when the last holder lets go.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bollard::container::LogOutput;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::frames::{self, FrameReader};
use crate::container::ContainerSpec;
use crate::container::lease::{Lease, Output, OwnedContainer, Stdin};
use crate::container::source::ColdStart;
use crate::error::ExecError;

/// The supervisor's own words on stderr, kept for the log: its failures.
const MAX_DIAGNOSTIC_BYTES: usize = 2000;

type CallSender = mpsc::UnboundedSender<Vec<u8>>;

/// The calls in flight, by id, and whether the channel still works.
#[derive(Default)]
struct Calls {
    open: Mutex<HashMap<u64, CallSender>>,
    closed: AtomicBool,
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CallSender>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The channel is gone: every call in flight sees its end.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.lock().clear();
    }
}

pub struct ToolContainer {
    container: OwnedContainer,
    input: mpsc::UnboundedSender<Vec<u8>>,
    calls: Arc<Calls>,
    next_call: AtomicU64,
    places: Arc<Semaphore>,
    max_calls: usize,
    last_used: Mutex<Instant>,
    tasks: [JoinHandle<()>; 2],
}

impl ToolContainer {
    /// Starts the container (counted against the container cap) and its channel.
    pub async fn start(cold: &ColdStart, spec: &ContainerSpec, max_calls: usize) -> Result<Self, ExecError> {
        let slot = cold.reserve()?;
        let Lease {
            container,
            stdin,
            output,
            ..
        } = cold.start(spec, slot).await?;
        let calls = Arc::new(Calls::default());
        let (input, inbox) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_all(stdin, inbox, Arc::clone(&calls)));
        let reader = tokio::spawn(read_all(output, Arc::clone(&calls), container.id().to_owned()));
        Ok(Self {
            container,
            input,
            calls,
            next_call: AtomicU64::new(1),
            places: Arc::new(Semaphore::new(max_calls)),
            max_calls,
            last_used: Mutex::new(Instant::now()),
            tasks: [writer, reader],
        })
    }

    pub fn id(&self) -> &str {
        self.container.id()
    }

    pub fn container(&self) -> &OwnedContainer {
        &self.container
    }

    /// Whether the container's channel has ended (it exited or was removed).
    pub fn is_closed(&self) -> bool {
        self.calls.closed.load(Ordering::Acquire)
    }

    /// Whether no call has run for `idle` and none is running.
    pub fn idle_for(&self, idle: std::time::Duration) -> bool {
        let last = *self.last_used.lock().unwrap_or_else(PoisonError::into_inner);
        self.calls.lock().is_empty() && last.elapsed() >= idle
    }

    /// The calls running in it (places taken).
    pub fn busy(&self) -> usize {
        self.max_calls.saturating_sub(self.places.available_permits())
    }

    /// A place among the calls it runs at once (waits while all are taken).
    pub async fn place(&self) -> Result<OwnedSemaphorePermit, ExecError> {
        Arc::clone(&self.places)
            .acquire_owned()
            .await
            .map_err(|_| ExecError::Internal("a per-tool container closed its places".into()))
    }

    /// Sends a call's envelope; its records arrive on the returned call.
    pub fn open(&self, envelope: &[u8]) -> Result<OpenCall<'_>, ExecError> {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (sender, records) = mpsc::unbounded_channel();
        self.calls.lock().insert(id, sender);
        *self.last_used.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let call = OpenCall {
            id,
            owner: self,
            records,
            settled: false,
        };
        if self.is_closed() || self.input.send(frames::call(id, envelope)).is_err() {
            return Err(ExecError::ContainerGone);
        }
        Ok(call)
    }
}

impl Drop for ToolContainer {
    fn drop(&mut self) {
        // The container goes with `container`; its streams with these.
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// One call in flight. Dropping it before its outcome arrived (a timeout,
/// a caller gone) tells the supervisor to end it.
pub struct OpenCall<'a> {
    id: u64,
    owner: &'a ToolContainer,
    records: mpsc::UnboundedReceiver<Vec<u8>>,
    settled: bool,
}

impl OpenCall<'_> {
    /// The call's next bytes of records; `None` once the channel is gone.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.records.recv().await
    }

    /// Its outcome is in: the supervisor has ended it already.
    pub fn settled(&mut self) {
        self.settled = true;
    }
}

impl Drop for OpenCall<'_> {
    fn drop(&mut self) {
        self.owner.calls.lock().remove(&self.id);
        *self.owner.last_used.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        if !self.settled {
            let _ = self.owner.input.send(frames::cancel(self.id));
        }
    }
}

async fn write_all(mut stdin: Stdin, mut inbox: mpsc::UnboundedReceiver<Vec<u8>>, calls: Arc<Calls>) {
    while let Some(frame) = inbox.recv().await {
        if let Err(e) = stdin.write_all(&frame).await {
            tracing::warn!(error = %e, "cannot write to a per-tool container; retiring it");
            calls.close();
            return;
        }
    }
}

async fn read_all(mut output: Output, calls: Arc<Calls>, container: String) {
    let mut frames = FrameReader::default();
    let mut diagnostics = Vec::new();
    while let Some(item) = output.next().await {
        match item {
            Ok(LogOutput::StdOut { message }) => {
                let open = calls.lock();
                let pushed = frames.push(&message, &mut |call, bytes| {
                    if let Some(sender) = open.get(&call) {
                        let _ = sender.send(bytes.to_vec());
                    }
                });
                drop(open);
                if let Err(e) = pushed {
                    tracing::warn!(%container, error = %e, "a per-tool container broke its framing; retiring it");
                    break;
                }
            }
            Ok(LogOutput::StdErr { message }) => {
                let room = MAX_DIAGNOSTIC_BYTES.saturating_sub(diagnostics.len());
                diagnostics.extend_from_slice(&message[..message.len().min(room)]);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%container, error = %e, "a per-tool container's output broke");
                break;
            }
        }
    }
    if !diagnostics.is_empty() {
        let said = String::from_utf8_lossy(&diagnostics);
        tracing::warn!(%container, harness = %said.trim(), "a per-tool container's harness ended");
    }
    calls.close();
}
