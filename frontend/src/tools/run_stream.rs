//! Following one run's event stream from the executor (RunTool, or
//! RunJsInSession): `started`, the code's `progress` on to the client, its
//! `egress` events, and the single `finished` outcome. Until `started`, a run that installs its
//! dependencies first says so once a second.

use dynamic_mcp_proto::v1::run_event::Event;
use dynamic_mcp_proto::v1::{EgressEvent, RunEvent, RunOutcome, RunStarted};

use crate::error::ToolError;
use crate::progress::{Heartbeat, Progress};

/// The outcome of the run behind `events`. `installing` is the heartbeat's
/// message while the executor may still be installing dependencies;
/// `on_started` sees the `started` event, `on_egress` each egress event.
/// Dropping the future drops the
/// stream, and the executor stops the run.
pub async fn follow(
    mut events: tonic::Streaming<RunEvent>,
    what: &str,
    progress: Option<&Progress>,
    installing: Option<&str>,
    mut on_started: impl FnMut(&RunStarted),
    mut on_egress: impl FnMut(&EgressEvent),
) -> Result<RunOutcome, ToolError> {
    let mut heartbeat = installing
        .zip(progress)
        .map(|(message, progress)| (Heartbeat::new(message), progress));
    loop {
        let event = match &mut heartbeat {
            Some((beats, progress)) => tokio::select! {
                event = events.message() => event,
                () = beats.beat(progress) => continue,
            },
            None => events.message().await,
        };
        match event.map_err(ToolError::executor)?.map(|e| e.event) {
            None => break,
            Some(Some(Event::Started(started))) => {
                heartbeat = None;
                on_started(&started);
            }
            Some(Some(Event::Progress(report))) => {
                if let Some(progress) = progress {
                    progress.report(&report).await;
                }
            }
            Some(Some(Event::Egress(event))) => on_egress(&event),
            Some(Some(Event::Finished(outcome))) => return Ok(outcome),
            Some(None) => {}
        }
    }
    Err(ToolError::executor(tonic::Status::internal(format!(
        "the run of {what} ended without an outcome; try again"
    ))))
}
