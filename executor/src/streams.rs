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

/// Reads stdout and stderr until the process closes them.
pub async fn collect(mut output: Output, stdout: &mut dyn Capture, stderr: &mut dyn Capture) {
    while let Some(item) = output.next().await {
        match item {
            Ok(bollard::container::LogOutput::StdOut { message }) => stdout.push(&message),
            Ok(bollard::container::LogOutput::StdErr { message }) => stderr.push(&message),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "an output stream broke; keeping what arrived");
                return;
            }
        }
    }
}
