//! Bodies the proxy sends on: passed through as they are, buffered (so the
//! placeholders in a request can be replaced), or redacted on the fly.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::events::Reason;
use super::rewrite::Redactor;

/// Every body the proxy answers with or forwards.
pub type ProxyBody = BoxBody<Bytes, BodyError>;
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The most request body an intercepted request may have: it is held in
/// memory while its placeholders are replaced.
pub const MAX_BUFFERED_BODY: usize = 16 << 20;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

pub fn passed(body: Incoming) -> ProxyBody {
    body.map_err(BodyError::from).boxed()
}

/// The whole body, up to [`MAX_BUFFERED_BODY`].
pub async fn buffered(body: Incoming) -> Result<Bytes, Unbuffered> {
    match Limited::new(body, MAX_BUFFERED_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Unbuffered::TooLarge),
        Err(e) => Err(Unbuffered::Broken(e.to_string())),
    }
}

/// Why a body could not be buffered.
#[derive(Debug)]
pub enum Unbuffered {
    TooLarge,
    Broken(String),
}

impl Unbuffered {
    pub fn reason(&self) -> Reason {
        match self {
            Self::TooLarge => Reason::BodyTooLarge,
            Self::Broken(_) => Reason::BadRequest,
        }
    }

    pub fn why(&self) -> String {
        match self {
            Self::TooLarge => format!(
                "a request body that goes through the proxy's secret handling may have at most {MAX_BUFFERED_BODY} bytes"
            ),
            Self::Broken(why) => format!("the request body could not be read ({why})"),
        }
    }
}

/// `inner` with every secret value replaced by its placeholder.
pub fn redacted(inner: Incoming, redactor: Redactor) -> ProxyBody {
    Redacted {
        inner,
        redactor,
        done: false,
    }
    .boxed()
}

struct Redacted {
    inner: Incoming,
    redactor: Redactor,
    done: bool,
}

impl Body for Redacted {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers are dropped: what is held back must come first.
                    let Ok(data) = frame.into_data() else { continue };
                    let out = this.redactor.push(&data);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => {
                    this.done = true;
                    let rest = this.redactor.finish();
                    return Poll::Ready((!rest.is_empty()).then(|| Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // Placeholders and values differ in length.
        SizeHint::default()
    }
}
