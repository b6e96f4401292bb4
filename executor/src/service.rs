//! The gRPC edge: requests in, `ExecError`s out as statuses. The work is in
//! `run.rs` and `policy.rs`.

use std::sync::Arc;

use dynamic_mcp_proto::v1::executor_server::Executor;
use dynamic_mcp_proto::v1::{
    PrepareToolRequest, PrepareToolResponse, RunEvent, RunOutcome, RunStarted, RunToolRequest, run_event,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::run::{self, Runner};

pub struct ExecutorService {
    runner: Arc<Runner>,
}

impl ExecutorService {
    pub fn new(runner: Arc<Runner>) -> Self {
        Self { runner }
    }
}

#[tonic::async_trait]
impl Executor for ExecutorService {
    async fn prepare_tool(
        &self,
        request: Request<PrepareToolRequest>,
    ) -> Result<Response<PrepareToolResponse>, Status> {
        let request = request.into_inner();
        let resolved = run::prepare(
            self.runner.policy(),
            request.image.as_deref(),
            request.timeout_ms,
            &request.dependencies,
        )?;
        Ok(Response::new(PrepareToolResponse {
            image: resolved.image,
            timeout_ms: resolved.timeout_ms,
        }))
    }

    type RunToolStream = ReceiverStream<Result<RunEvent, Status>>;

    /// Sends `started`, then exactly one `finished` (or an error). If the
    /// caller drops the stream, the run is dropped and its container removed.
    async fn run_tool(&self, request: Request<RunToolRequest>) -> Result<Response<Self::RunToolStream>, Status> {
        let plan = self.runner.plan(request.into_inner())?;
        let span = tracing::info_span!("run", tool = %plan.tool_name, revision = plan.revision);
        // Room for both events, so sending `started` never waits.
        let (events, receiver) = mpsc::channel(2);
        let runner = Arc::clone(&self.runner);
        tokio::spawn(
            async move {
                let started = events.clone();
                let run = runner.run(plan, move |container_id| {
                    let _ = started.try_send(Ok(event(run_event::Event::Started(RunStarted {
                        container_id: container_id.to_owned(),
                    }))));
                });
                tokio::select! {
                    () = events.closed() => tracing::info!("the caller went away; run cancelled"),
                    result = run => {
                        log_result(&result);
                        let _ = events.send(result.map(finished).map_err(Status::from)).await;
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

fn event(event: run_event::Event) -> RunEvent {
    RunEvent { event: Some(event) }
}

fn finished(outcome: RunOutcome) -> RunEvent {
    event(run_event::Event::Finished(outcome))
}

/// Never the code, args or output: only what happened.
fn log_result(result: &Result<RunOutcome, crate::error::ExecError>) {
    match result {
        Ok(outcome) => tracing::info!(
            status = outcome.status().as_str_name(),
            duration_ms = outcome.duration_ms,
            exit_code = outcome.exit_code,
            "run finished"
        ),
        Err(e) => tracing::warn!(error = %e, "run failed"),
    }
}
