//! Keeping something alive for as long as a response is being sent: a
//! connection's "request in progress" mark, or a long-lived stream's slot
//! under its cap. The response body owns the guard, so it is released when
//! the body has been sent or dropped (the client went away), never earlier.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// `response` with `guard` dropped only when its body is done.
pub fn until_sent<G: Send + Unpin + 'static>(response: Response, guard: G) -> Response {
    response.map(|body| Body::new(Held { body, _guard: guard }))
}

struct Held<G> {
    body: Body,
    _guard: G,
}

impl<G> http_body::Body for Held<G>
where
    G: Send + Unpin + 'static,
{
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
