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

use super::AppState;
use super::redirect::{self, FastPath};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::future::RouteFuture;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::Service;

/// How long a client may take to send a request's headers (slow-loris protection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves on `listener` until `shutdown` completes, then stops accepting and gives open
/// connections up to `timeout` to finish their requests. Returns whether they did.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
    timeout: Duration,
) -> bool {
    let router = super::router(state.clone());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
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
        match redirect::fast_path(&self.state, &request, self.peer.ip()) {
            FastPath::Answered(response) => Answer::Ready(Some(response)),
            FastPath::Miss(site, code, visitor) => Answer::Loading(Box::pin(
                redirect::answer_miss(self.state.clone(), site, code, request, visitor),
            )),
            // `Router` is always ready; calling it on a clone is what axum::serve does.
            FastPath::NotMine => {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(self.peer));
                Answer::Routed(self.router.clone().call(request))
            }
        }
    }
}

/// The response future: already answered, loading a missed code, or routed.
enum Answer {
    Ready(Option<hyper::Response<Body>>),
    Loading(Pin<Box<dyn Future<Output = hyper::Response<Body>> + Send>>),
    Routed(RouteFuture<Infallible>),
}

impl Future for Answer {
    type Output = Result<hyper::Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Ready(response) => Poll::Ready(Ok(response
                .take()
                .expect("response future polled after completion"))),
            Answer::Loading(future) => future.as_mut().poll(cx).map(Ok),
            Answer::Routed(future) => Pin::new(future).poll(cx),
        }
    }
}
