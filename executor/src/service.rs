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
    PrepareToolRequest, PrepareToolResponse, RunEvent, RunJsInSessionRequest, RunOutcome, RunStarted, RunToolRequest,
    SandboxDescription, StartSessionRequest, StartSessionResponse, StopSessionRequest, StopSessionResponse, run_event,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::egress::{EventSink, SinkCloser, closable};
use crate::error::ExecError;
use crate::progress::{self, ProgressSender};
use crate::run::Runner;
use crate::session::Sessions;

type Events = mpsc::Sender<Result<RunEvent, Status>>;

/// Room for `started` and the egress events a run may have in flight to a
/// slow caller, so sending those never waits (egress events beyond it are
/// dropped; each is logged anyway); progress beyond it waits, coalesced.
const EVENT_BUFFER: usize = 256;

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

    /// Sends `started`, the code's progress, then exactly one `finished` (or
    /// an error). If the caller drops the stream, the run is dropped and its
    /// container removed.
    async fn run_tool(&self, request: Request<RunToolRequest>) -> Result<Response<Self::RunToolStream>, Status> {
        let plan = self.runner.plan(request.into_inner())?;
        let span = tracing::info_span!("run", tool = %plan.tool_name, revision = plan.revision);
        let runner = Arc::clone(&self.runner);
        let stream = streamed(span, move |started, progress, egress| async move {
            runner.run(plan, |id| started.send(id), progress, egress).await
        });
        Ok(Response::new(stream))
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

    type RunJsInSessionStream = ReceiverStream<Result<RunEvent, Status>>;

    /// As `run_tool`; `started` names the session's container.
    async fn run_js_in_session(
        &self,
        request: Request<RunJsInSessionRequest>,
    ) -> Result<Response<Self::RunJsInSessionStream>, Status> {
        let request = request.into_inner();
        let (owner, id) = (request.owner.clone(), request.session_id.clone());
        let span = tracing::info_span!("run_js", session = %request.session_id);
        let plan = self
            .sessions
            .plan_js(request)
            .inspect_err(|e| span.in_scope(|| log_error(e, "run_js refused")))?;
        let sessions = Arc::clone(&self.sessions);
        let stream = streamed(span, move |started, progress, egress| async move {
            let outcome = sessions.run_js(plan, |id| started.send(id), progress).await;
            // The session's proxy outlives the call: what it decided meanwhile.
            sessions.take_egress(&owner, &id).into_iter().for_each(|e| egress(e));
            outcome
        });
        Ok(Response::new(stream))
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

/// What tells the caller the run's container is there.
struct StartedSender(Events);

impl StartedSender {
    fn send(self, container_id: &str) {
        let _ = self.0.try_send(Ok(event(run_event::Event::Started(RunStarted {
            container_id: container_id.to_owned(),
        }))));
    }
}

/// Runs `run` in a task of its own and streams its events (`stream_run`);
/// `run` gets what announces `started`, where its progress goes and where
/// its egress events go.
fn streamed<F, Fut>(span: tracing::Span, run: F) -> ReceiverStream<Result<RunEvent, Status>>
where
    F: FnOnce(StartedSender, ProgressSender, EventSink) -> Fut + Send + 'static,
    Fut: Future<Output = Result<RunOutcome, ExecError>> + Send,
{
    let (events, receiver) = mpsc::channel(EVENT_BUFFER);
    tokio::spawn(
        async move {
            let started = StartedSender(events.clone());
            stream_run(events, |progress, egress| run(started, progress, egress)).await;
        }
        .instrument(span),
    );
    ReceiverStream::new(receiver)
}

/// Runs `run`, passing its progress and egress events on as they come,
/// then its outcome; stops (dropping the run) as soon as the caller goes away.
async fn stream_run<F, Fut>(events: Events, run: F)
where
    F: FnOnce(ProgressSender, EventSink) -> Fut,
    Fut: Future<Output = Result<RunOutcome, ExecError>>,
{
    let (sender, mut receiver) = progress::channel();
    let forward = {
        let events = events.clone();
        async move {
            while let Some(report) = receiver.next().await {
                if events
                    .send(Ok(event(run_event::Event::Progress(report))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    };
    // The forwarder ends once the run has dropped its sender and the last
    // report is out, so that report comes before `finished`.
    let (egress, egress_closer) = egress_forwarder(events.clone());
    let work = async { tokio::join!(run(sender, egress), forward).0 };
    tokio::select! {
        () = events.closed() => tracing::info!("the caller went away; run cancelled"),
        result = work => {
            log_result(&result);
            egress_closer.close();
            let _ = events.send(result.map(finished).map_err(Status::from)).await;
        }
    }
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
