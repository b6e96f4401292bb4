//! The channel of balanced calls: tower's p2c balancer over the executors
//! in rotation, behind a buffer so that clients can share it.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::util::BoxService;
use tower::{BoxError, Service, ServiceExt};

use super::endpoint::MemberChannel;
use super::member::{Discovered, Member, Rotation};

/// Calls waiting for the balancer beyond this many wait for room.
const BUFFERED_CALLS: usize = 1024;

type Request = http::Request<Body>;
type Response = http::Response<Body>;

/// Sends each call to an executor in rotation; while none is, to the first
/// configured one, so that the caller learns at once why it fails instead
/// of waiting for an executor to come back.
#[derive(Clone)]
pub struct RunChannel {
    balanced: Buffer<Request, BoxFuture<'static, Result<Response, BoxError>>>,
    fallback: MemberChannel,
    rotation: Arc<Rotation>,
}

impl RunChannel {
    pub fn new(discovered: Discovered, fallback: &Arc<Member>, rotation: Arc<Rotation>) -> Self {
        let balance = Balance::new(discovered);
        Self {
            balanced: Buffer::new(BoxService::new(balance), BUFFERED_CALLS),
            fallback: fallback.channel(),
            rotation,
        }
    }
}

impl Service<Request> for RunChannel {
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is the chosen service's, awaited in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if self.rotation.size() > 0 {
            Box::pin(self.balanced.clone().oneshot(request))
        } else {
            Box::pin(self.fallback.clone().oneshot(request))
        }
    }
}
