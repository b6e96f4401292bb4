//! One per-tool container and its channel (`channel.rs`): one Unix socket
//! connection to its supervisor, shared by every call in flight, each frame
//! naming its call. A writer task owns the socket's sending half, a reader
//! task its receiving half and hands each call its bytes; a third keeps the
//! supervisor's stderr (attached) for the log. The container and its
//! channel's directory are removed when the last holder lets go.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bollard::container::LogOutput;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::channel::{self, ChannelListener};
use super::frames::{self, FrameReader};
use crate::container::ContainerSpec;
use crate::container::lease::{Lease, Output, OwnedContainer};
use crate::container::source::ColdStart;
use crate::error::ExecError;
use crate::setting_values::SandboxUser;
use crate::socket_dir::SocketDir;

/// The supervisor's own words on stderr, kept for the log: its failures.
const MAX_DIAGNOSTIC_BYTES: usize = 2000;
/// One read from the channel.
const READ_BYTES: usize = 1 << 16;

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
    /// Takes no new calls; those in flight finish.
    retired: AtomicBool,
    tasks: [JoinHandle<()>; 3],
    /// Removed with the container.
    _channel_dir: SocketDir,
}

impl ToolContainer {
    /// Starts the container (counted against the container cap) and waits
    /// for its supervisor to connect to its channel.
    pub async fn start(
        cold: &ColdStart,
        spec: &ContainerSpec,
        max_calls: usize,
        user: SandboxUser,
    ) -> Result<Self, ExecError> {
        let listener = ChannelListener::open(cold.socket_dirs(), user)?;
        let mut spec = spec.clone();
        spec.channel = Some(listener.mount_source().to_owned());
        let slot = cold.reserve()?;
        // Stdin is not read: the channel carries the calls.
        let Lease { container, output, .. } = cold.start(&spec, slot).await?;
        let calls = Arc::new(Calls::default());
        let (ended, exited) = oneshot::channel();
        let diagnostics = tokio::spawn(keep_diagnostics(
            output,
            Arc::clone(&calls),
            container.id().to_owned(),
            ended,
        ));
        let connected = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = exited => Err(ExecError::Internal(format!(
                "per-tool container {} ended before its harness connected (see the executor's log)",
                container.id()
            ))),
            () = tokio::time::sleep(channel::CONNECT_WITHIN) => Err(ExecError::Internal(format!(
                "the harness of per-tool container {} did not connect within {} s",
                container.id(),
                channel::CONNECT_WITHIN.as_secs()
            ))),
        };
        let (stream, channel_dir) = match connected {
            Ok(connected) => connected,
            Err(e) => {
                diagnostics.abort();
                return Err(e);
            }
        };
        let (from_supervisor, to_supervisor) = stream.into_split();
        let (input, inbox) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_all(to_supervisor, inbox, Arc::clone(&calls)));
        let reader = tokio::spawn(read_all(from_supervisor, Arc::clone(&calls), container.id().to_owned()));
        Ok(Self {
            container,
            input,
            calls,
            next_call: AtomicU64::new(1),
            places: Arc::new(Semaphore::new(max_calls)),
            max_calls,
            last_used: Mutex::new(Instant::now()),
            retired: AtomicBool::new(false),
            tasks: [writer, reader, diagnostics],
            _channel_dir: channel_dir,
        })
    }

    pub fn id(&self) -> &str {
        self.container.id()
    }

    pub fn container(&self) -> &OwnedContainer {
        &self.container
    }

    /// Whether the container's channel has ended (it exited or was removed).
    fn is_closed(&self) -> bool {
        self.calls.closed.load(Ordering::Acquire)
    }

    /// Takes no new calls from now on: it cannot start their realms.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether new calls may go to it: open and not retired.
    pub fn takes_calls(&self) -> bool {
        !self.is_closed() && !self.retired.load(Ordering::Acquire)
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

async fn write_all(mut to: OwnedWriteHalf, mut inbox: mpsc::UnboundedReceiver<Vec<u8>>, calls: Arc<Calls>) {
    while let Some(frame) = inbox.recv().await {
        if let Err(e) = to.write_all(&frame).await {
            tracing::warn!(error = %e, "cannot write to a per-tool container; retiring it");
            calls.close();
            return;
        }
    }
}

/// Hands each call its bytes until the channel ends (the supervisor exited,
/// or broke its framing), then closes the calls.
async fn read_all(mut from: OwnedReadHalf, calls: Arc<Calls>, container: String) {
    let mut frames = FrameReader::default();
    let mut buffer = vec![0; READ_BYTES];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(%container, error = %e, "a per-tool container's channel broke");
                break;
            }
        };
        let open = calls.lock();
        let pushed = frames.push(&buffer[..read], &mut |call, bytes| {
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
    calls.close();
}

/// Keeps what the supervisor says on stderr (its failures) for the log,
/// until the container's output ends: then it has ended, and so have its
/// calls. `ended` hears of it.
async fn keep_diagnostics(mut output: Output, calls: Arc<Calls>, container: String, ended: oneshot::Sender<()>) {
    let mut diagnostics = Vec::new();
    while let Some(item) = output.next().await {
        match item {
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
    let _ = ended.send(());
}
