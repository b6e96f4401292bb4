//! What the balancer sees of one executor: its channel, which reports a
//! failed connection (taking the executor out of rotation and marking the
//! call as one that never reached it), with its load counted as the
//! responses it is still streaming. It knows the executor only as
//! [`FailureReport`], so the rotation (`member.rs`) can hold endpoints.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use dynamic_mcp_common::internal_auth::InternalChannel;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;
use tower::BoxError;
use tower::Service;
use tower::load::PendingRequests;
use tower::load::completion::TrackCompletion;
use tower::load::pending_requests::Handle;

/// Where a channel reports a transport failure: the executor it leads to.
pub trait FailureReport: Send + Sync {
    /// The executor is gone or unreachable, because of `why`.
    fn transport_failed(&self, why: &str);
}

/// An executor's channel that reports its own failures to the rotation.
#[derive(Clone)]
pub struct MemberChannel {
    inner: InternalChannel,
    member: Arc<dyn FailureReport>,
}

impl MemberChannel {
    pub fn new(inner: InternalChannel, member: Arc<dyn FailureReport>) -> Self {
        Self { inner, member }
    }
}

impl Service<http::Request<Body>> for MemberChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(|e| self.reported(e.into()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let response = self.inner.call(request);
        let this = self.clone();
        Box::pin(async move {
            match response.await {
                Ok(response) => Ok(response.map(Body::new)),
                Err(e) => Err(this.reported(e.into())),
            }
        })
    }
}

impl MemberChannel {
    /// A transport failure (not a gRPC error: those are answers) means the
    /// executor is gone or unreachable; one before the request was sent is
    /// marked [`NotReached`].
    fn reported(&self, error: BoxError) -> BoxError {
        self.member.transport_failed(&error.to_string());
        if !chain(error.as_ref()).any(|e| e.is::<tonic::ConnectError>()) {
            return error;
        }
        let mut status = Status::unavailable(format!("cannot connect to the executor: {error}"));
        status.set_source(Arc::new(NotReached(error)));
        Box::new(status)
    }
}

/// The call failed to connect, so the executor never saw it.
#[derive(Debug, thiserror::Error)]
#[error("the call never reached the executor")]
struct NotReached(#[source] BoxError);

/// Whether `status` says its call never reached an executor (safe to retry).
pub fn never_reached(status: &Status) -> bool {
    chain(status).any(|e| e.is::<NotReached>())
}

fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// An executor as the balancer holds it, loaded by its open responses.
pub type Endpoint = PendingRequests<MemberChannel, UntilBodyEnds>;

pub fn endpoint(channel: MemberChannel) -> Endpoint {
    PendingRequests::new(channel, UntilBodyEnds)
}

/// A call counts as load until its response body is done or dropped: a
/// run's stream lasts as long as the run.
#[derive(Debug, Clone, Copy)]
pub struct UntilBodyEnds;

impl TrackCompletion<Handle, http::Response<Body>> for UntilBodyEnds {
    type Output = http::Response<Body>;

    fn track_completion(&self, handle: Handle, response: http::Response<Body>) -> Self::Output {
        response.map(|body| Body::new(Tracked { body, _handle: handle }))
    }
}

/// A body holding its call's load handle.
struct Tracked {
    body: Body,
    _handle: Handle,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
