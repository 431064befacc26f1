//! The HTTP/1.1 accept loop, with the redirect fast path in front of the router.
//!
//! Every request first meets [`redirect::fast_path`]: a `GET`/`HEAD` of a single path
//! segment that is a plain code is answered right there (from the cache, or with one
//! store read on a miss), without going through axum's routing, middleware and
//! extractors. Everything else goes to [`super::router`], which lists every route,
//! `/{code}` too (reached for percent-encoded codes).
//!
//! Why not `axum::serve`: measured on one core, routing, the boxed middleware and the
//! path extractor were about a fifth of the user-space CPU a cached redirect cost
//! (see docs/benchmarks.md). The loop below is what `axum::serve` does, plus that fast path
//! and hyper's connection settings in one place.
//!
//! What one client can hold, and for how long (the public internet is hostile):
//! - each accepted socket is admitted by [`super::connections::ConnectionGate`] (caps per
//!   address and in all) or closed at once;
//! - headers must arrive within `header_read_timeout_ms` (also the idle time of a
//!   keep-alive connection) and fit in `max_header_bytes` (hyper answers 431), which
//!   also bounds the connection's read buffer;
//! - a request must arrive whole and be answered within `request_timeout_ms`: a body
//!   still missing then gets 408 and the connection is closed, an answer still missing
//!   (hop's fault) gets 503. A cached redirect is answered before any timer is set.
//!   Graceful shutdown waits for in-flight requests, so this also bounds how long a
//!   stalled upload can hold up SIGTERM.
//!
//! Shutdown (see `app::run_server`): first a drain of `shutdown_drain_ms`, during which
//! `/readyz` fails and every answer carries `Connection: close`, while the loop still
//! accepts; then the loop stops accepting and open connections finish their requests.

use super::AppState;
use super::connections::Throttled;
use super::problem::ApiError;
use super::redirect::{self, FastPath};
use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::Service;

/// The smallest read buffer hyper accepts, and enough for a bulk body to stream in
/// large reads; a connection's buffer never grows past `max_header_bytes` or this.
const MIN_READ_BUFFER: usize = 16 * 1024;

/// Serves on `listener` until `shutdown` completes, then stops accepting and gives open
/// connections up to `timeout` to finish their requests. Returns whether they did.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
    timeout: Duration,
) -> bool {
    let router = super::router(state.clone());
    let settings = &state.settings;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_header_size(settings.max_header_bytes)
        .max_buf_size(settings.max_header_bytes.max(MIN_READ_BUFFER));
    let graceful = GracefulShutdown::new();
    let accept_failed = Throttled::new(Duration::from_secs(10));
    let refused = Throttled::new(Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: the connection waits in the
                    // backlog; back off briefly instead of spinning, and say so once in
                    // a while rather than on every attempt.
                    accept_failed.run(|held_back| {
                        tracing::warn!(%error, repeated = held_back, "accept failed");
                    });
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = match state.connections.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                // Closed at once: the socket's descriptor is free again.
                drop(stream);
                refused.run(|held_back| {
                    tracing::warn!(
                        limit = refusal.as_str(),
                        repeated = held_back,
                        open = state.connections.open(),
                        "connection refused"
                    );
                });
                continue;
            }
        };
        // Responses are written whole; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        let service = HopService {
            state: state.clone(),
            router: router.clone(),
            peer,
        };
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Client resets and timeouts end a connection; nothing to report.
            let _ = connection.await;
            drop(admitted);
        });
    }
    tracing::info!("shutting down: finishing in-flight requests");
    drop(listener);
    tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_ok()
}

/// The per-connection service: fast path first, then the router.
#[derive(Clone)]
struct HopService {
    state: AppState,
    router: Router,
    /// The connection's peer, handed to routed requests as `ConnectInfo` (password
    /// attempts are limited per client). Never logged.
    peer: SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for HopService {
    type Response = hyper::Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: hyper::Request<Incoming>) -> Answer {
        let answer = self.answer(request);
        if self.state.is_draining() {
            answer.closing()
        } else {
            answer
        }
    }
}

impl HopService {
    fn answer(&self, request: hyper::Request<Incoming>) -> Answer {
        let limit = self.state.settings.request_timeout;
        match redirect::fast_path(&self.state, &request, self.peer.ip()) {
            FastPath::Answered(response) => Answer::Ready(Some(response)),
            FastPath::Miss(site, code, visitor) => {
                let miss = redirect::answer_miss(self.state.clone(), site, code, request, visitor);
                Answer::Waiting(Box::pin(within(limit, None, miss)))
            }
            FastPath::AskCluster(visitor) => {
                let limited = redirect::answer_limited(self.state.clone(), request, visitor);
                Answer::Waiting(Box::pin(within(limit, None, limited)))
            }
            FastPath::NotMine => {
                let (parts, body) = request.into_parts();
                // A body still to come is watched, so that a request past its time
                // can tell a slow client (408) from a slow answer (503).
                let (body, arrived) = if body.is_end_stream() {
                    (Body::new(body), None)
                } else {
                    let arrived = Arc::new(AtomicBool::new(false));
                    let watched = Watched {
                        inner: body,
                        arrived: arrived.clone(),
                    };
                    (Body::new(watched), Some(arrived))
                };
                let mut request = hyper::Request::from_parts(parts, body);
                request.extensions_mut().insert(ConnectInfo(self.peer));
                // `Router` is always ready; calling it on a clone is what axum::serve does.
                let routed = self.router.clone().call(request);
                Answer::Waiting(Box::pin(within(limit, arrived, async move {
                    match routed.await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                })))
            }
        }
    }
}

/// `answer`, unless `limit` passes first: then 408 if the body had not arrived whole
/// (the client's fault; the connection is closed, since the rest of the body would be
/// read as the next request), else 503.
async fn within(
    limit: Duration,
    arrived: Option<Arc<AtomicBool>>,
    answer: impl Future<Output = hyper::Response<Body>>,
) -> hyper::Response<Body> {
    match tokio::time::timeout(limit, answer).await {
        Ok(response) => response,
        Err(_) => {
            let limit_ms = limit.as_millis() as u64;
            let body_missing = arrived.is_some_and(|arrived| !arrived.load(Ordering::Acquire));
            if body_missing {
                tracing::info!(status = 408, limit_ms, "request body too slow");
                let mut response = ApiError::RequestTimeout(limit_ms).into_response();
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                response
            } else {
                // The cause is hop's (a database that does not answer): logged as a 5xx.
                tracing::error!(
                    status = 503,
                    limit_ms,
                    "request not answered within request_timeout_ms"
                );
                ApiError::Unavailable(format!("no answer within {limit_ms} ms")).into_response()
            }
        }
    }
}

/// A request body that records when its last byte has arrived.
struct Watched {
    inner: Incoming,
    arrived: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.arrived.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response future: already answered (a cached redirect: no allocation, no timer),
/// or waiting for a missed code or a routed request, within the request timeout.
enum Answer {
    Ready(Option<hyper::Response<Body>>),
    Waiting(Pin<Box<dyn Future<Output = hyper::Response<Body>> + Send>>),
}

impl Answer {
    /// The same answer with `Connection: close`, so that hyper closes the connection
    /// after it. While a node drains, clients and the balancer's pooled connections
    /// then reconnect (to another node, once the balancer has taken this one out)
    /// instead of holding idle connections that the shutdown would close under them.
    fn closing(self) -> Self {
        let close = |response: &mut hyper::Response<Body>| {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        };
        match self {
            Answer::Ready(Some(mut response)) => {
                close(&mut response);
                Answer::Ready(Some(response))
            }
            Answer::Ready(None) => Answer::Ready(None),
            Answer::Waiting(answer) => Answer::Waiting(Box::pin(async move {
                let mut response = answer.await;
                close(&mut response);
                response
            })),
        }
    }
}

impl Future for Answer {
    type Output = Result<hyper::Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Ready(response) => Poll::Ready(Ok(response
                .take()
                .expect("response future polled after completion"))),
            Answer::Waiting(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}
