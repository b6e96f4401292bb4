//! The gRPC edge: requests in, `ExecError`s out as statuses. The work is in
//! `run.rs` (tool runs), `deps/` (installs) and `session/` (sessions).
//!
//! Unary calls are cancelled by dropping their future when the caller goes
//! away; everything they started (an install container, a session command)
//! is removed or killed from `Drop`, so that is enough.

use std::sync::Arc;

use dynamic_mcp_proto::v1::executor_server::Executor;
use dynamic_mcp_proto::v1::{
    DescribeSandboxRequest, ExecInSessionRequest, ExecInSessionResponse, ListSessionsRequest, ListSessionsResponse,
    PrepareToolRequest, PrepareToolResponse, RunEvent, RunJsInSessionRequest, RunJsInSessionResponse, RunOutcome,
    RunStarted, RunToolRequest, SandboxDescription, StartSessionRequest, StartSessionResponse, StopSessionRequest,
    StopSessionResponse, run_event,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::egress::{EventSink, SinkCloser, closable};
use crate::error::ExecError;
use crate::run::Runner;
use crate::session::Sessions;

pub struct ExecutorService {
    runner: Arc<Runner>,
    sessions: Arc<Sessions>,
    description: SandboxDescription,
}

impl ExecutorService {
    pub fn new(runner: Arc<Runner>, sessions: Arc<Sessions>, description: SandboxDescription) -> Self {
        Self {
            runner,
            sessions,
            description,
        }
    }
}

#[tonic::async_trait]
impl Executor for ExecutorService {
    async fn prepare_tool(
        &self,
        request: Request<PrepareToolRequest>,
    ) -> Result<Response<PrepareToolResponse>, Status> {
        let prepared = self.runner.prepare(request.into_inner()).await;
        if let Err(e) = &prepared {
            log_error(e, "tool not prepared");
        }
        Ok(Response::new(prepared?))
    }

    async fn describe_sandbox(
        &self,
        _request: Request<DescribeSandboxRequest>,
    ) -> Result<Response<SandboxDescription>, Status> {
        Ok(Response::new(self.description.clone()))
    }

    type RunToolStream = ReceiverStream<Result<RunEvent, Status>>;

    /// Sends `started`, then exactly one `finished` (or an error). If the
    /// caller drops the stream, the run is dropped and its container removed.
    async fn run_tool(&self, request: Request<RunToolRequest>) -> Result<Response<Self::RunToolStream>, Status> {
        let plan = self.runner.plan(request.into_inner())?;
        let span = tracing::info_span!("run", tool = %plan.tool_name, revision = plan.revision);
        // Room for `started` and egress events, so sending them never waits.
        let (events, receiver) = mpsc::channel(EVENTS_BUFFERED);
        let runner = Arc::clone(&self.runner);
        tokio::spawn(
            async move {
                let started = events.clone();
                let (egress, egress_closer) = egress_forwarder(events.clone());
                let run = runner.run(
                    plan,
                    move |container_id| {
                        let _ = started.try_send(Ok(event(run_event::Event::Started(RunStarted {
                            container_id: container_id.to_owned(),
                        }))));
                    },
                    egress,
                );
                tokio::select! {
                    () = events.closed() => tracing::info!("the caller went away; run cancelled"),
                    result = run => {
                        log_result(&result);
                        egress_closer.close();
                        let _ = events.send(result.map(finished).map_err(Status::from)).await;
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn start_session(
        &self,
        request: Request<StartSessionRequest>,
    ) -> Result<Response<StartSessionResponse>, Status> {
        let request = request.into_inner();
        let session = self
            .sessions
            .start(
                &request.owner,
                request.image.as_deref(),
                request.timeout_ms,
                request.network.as_ref(),
            )
            .await
            .inspect_err(|e| log_error(e, "session not started"))?;
        Ok(Response::new(StartSessionResponse { session: Some(session) }))
    }

    async fn exec_in_session(
        &self,
        request: Request<ExecInSessionRequest>,
    ) -> Result<Response<ExecInSessionResponse>, Status> {
        let request = request.into_inner();
        let (owner, id) = (request.owner.clone(), request.session_id.clone());
        let span = tracing::info_span!("exec", session = %request.session_id, commands = request.commands.len());
        let response = self.sessions.exec(request).instrument(span.clone()).await;
        span.in_scope(|| match &response {
            Ok(r) => tracing::info!(ran = r.results.len(), skipped = r.skipped, "session exec finished"),
            Err(e) => log_error(e, "session exec failed"),
        });
        let mut response = response?;
        response.egress = self.sessions.take_egress(&owner, &id);
        Ok(Response::new(response))
    }

    async fn run_js_in_session(
        &self,
        request: Request<RunJsInSessionRequest>,
    ) -> Result<Response<RunJsInSessionResponse>, Status> {
        let request = request.into_inner();
        let (owner, id) = (request.owner.clone(), request.session_id.clone());
        let span = tracing::info_span!("run_js", session = %request.session_id);
        let outcome = self.sessions.run_js(request).instrument(span.clone()).await;
        span.in_scope(|| log_result(&outcome));
        Ok(Response::new(RunJsInSessionResponse {
            outcome: Some(outcome?),
            egress: self.sessions.take_egress(&owner, &id),
        }))
    }

    async fn stop_session(
        &self,
        request: Request<StopSessionRequest>,
    ) -> Result<Response<StopSessionResponse>, Status> {
        let request = request.into_inner();
        self.sessions.stop(&request.owner, &request.session_id).await?;
        Ok(Response::new(StopSessionResponse {}))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let sessions = self.sessions.list(&request.into_inner().owner)?;
        Ok(Response::new(ListSessionsResponse { sessions }))
    }
}

/// Events a run may have in flight to a slow caller; egress events beyond
/// it are dropped (each is logged here anyway).
const EVENTS_BUFFERED: usize = 256;

/// Egress events into the run's stream, until the outcome is sent.
fn egress_forwarder(events: mpsc::Sender<Result<RunEvent, Status>>) -> (EventSink, SinkCloser) {
    closable(move |egress| {
        if events.try_send(Ok(event(run_event::Event::Egress(egress)))).is_err() {
            tracing::warn!("an egress event was not delivered: the caller is behind");
        }
    })
}

fn event(event: run_event::Event) -> RunEvent {
    RunEvent { event: Some(event) }
}

fn finished(outcome: RunOutcome) -> RunEvent {
    event(run_event::Event::Finished(outcome))
}

/// Never the code, args or output: only what happened.
fn log_result(result: &Result<RunOutcome, ExecError>) {
    match result {
        Ok(outcome) => tracing::info!(
            status = outcome.status().as_str_name(),
            duration_ms = outcome.duration_ms,
            exit_code = outcome.exit_code,
            "run finished"
        ),
        Err(e) => log_error(e, "run failed"),
    }
}

/// A refused request is routine; a failure of Docker or the executor is not.
fn log_error(error: &ExecError, what: &str) {
    if error.is_failure() {
        tracing::warn!(%error, "{what}");
    } else {
        tracing::info!(%error, "{what}");
    }
}
