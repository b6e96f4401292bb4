//! Feeding a process's stdin and collecting its stdout and stderr — the
//! same for a container's attach and for an exec.

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::container::lease::{Output, Stdin};
use crate::output::Capture;

/// Writes `input` and closes stdin, so the process sees end of input. A
/// process that dies early closes the pipe: that shows in its outcome.
pub async fn feed(mut stdin: Stdin, input: Vec<u8>) {
    let written = async {
        stdin.write_all(&input).await?;
        stdin.shutdown().await
    };
    if let Err(e) = written.await {
        tracing::debug!(error = %e, "stdin closed early");
    }
}

/// Where a process's stdout and stderr go as they arrive.
pub trait Sink {
    fn stdout(&mut self, bytes: &[u8]);
    fn stderr(&mut self, bytes: &[u8]);
    /// Whether everything that matters has arrived, so reading may stop
    /// before the process closes its output.
    fn complete(&self) -> bool {
        false
    }
}

impl Sink for (&mut dyn Capture, &mut dyn Capture) {
    fn stdout(&mut self, bytes: &[u8]) {
        self.0.push(bytes);
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.1.push(bytes);
    }
}

/// Reads stdout and stderr until the process closes them.
pub async fn collect(output: Output, stdout: &mut dyn Capture, stderr: &mut dyn Capture) {
    collect_into(output, &mut (stdout, stderr)).await;
}

/// Reads stdout and stderr until the process closes them or `sink` is
/// complete; true in the second case.
pub async fn collect_into(mut output: Output, sink: &mut impl Sink) -> bool {
    while let Some(item) = output.next().await {
        match item {
            Ok(bollard::container::LogOutput::StdOut { message }) => sink.stdout(&message),
            Ok(bollard::container::LogOutput::StdErr { message }) => sink.stderr(&message),
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "an output stream broke; keeping what arrived");
                return false;
            }
        }
        if sink.complete() {
            return true;
        }
    }
    false
}
