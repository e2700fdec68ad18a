//! The HTTP plumbing every simulated server shares (panel-sim's WHM API, plesk-sim's XML API):
//! the accept loop, hyper's HTTP/1 connections and their graceful shutdown, the down switch, and
//! per request, before anything of it is read, the latency and the fault lottery
//! ([`Plumbing::admit`]). What a request means is the simulator's own [`Service::handle`].
//!
//! Closing a connection without an answer is done by returning [`CloseConnection`] from the
//! service future, which makes hyper drop the connection.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::FaultKind;
use crate::faults::Behaviour;
use crate::metrics::Metrics;

/// The largest request body a simulated server reads.
pub const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// How long shutdown lets in-flight requests finish before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The error a service future returns to make hyper close the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("the simulator closed the connection: {0}")]
pub struct CloseConnection(pub &'static str);

/// What a request gets: an answer, or its connection closed.
pub type Answer = Result<Response<Full<Bytes>>, CloseConnection>;

/// An answer with `status`, `Content-Type: content_type` and `body`.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// What every simulated server has besides its panel's state: the behaviour knobs, the
/// counters and the shutdown flag.
#[derive(Debug)]
pub struct Plumbing {
    behaviour: Mutex<Behaviour>,
    pub metrics: Metrics,
    shutdown: watch::Sender<bool>,
}

/// A request the lottery let through.
#[derive(Debug, Clone, Copy)]
pub enum Admission {
    /// Go on; with `fail_after_work`, answer HTTP 500 once the work is done.
    Proceed {
        fail_after_work: bool,
        /// The latency of each command (operation) the request holds.
        command_latency: Duration,
    },
    /// Answer HTTP 500 at once (in the simulator's own words), doing nothing.
    Http500,
}

impl Plumbing {
    pub fn new(behaviour: Behaviour) -> Self {
        Plumbing {
            behaviour: Mutex::new(behaviour),
            metrics: Metrics::default(),
            shutdown: watch::Sender::new(false),
        }
    }

    pub fn behaviour(&self) -> MutexGuard<'_, Behaviour> {
        self.behaviour.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_down(&self) -> bool {
        self.behaviour().down
    }

    /// Asks the accept loop and every connection to stop.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once shutdown has been requested.
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        // The sender lives in `self`, so this only ends when the flag is set.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Per request, before anything of it is read: refuse it when the server is down (close the
    /// connection), sleep the request latency, draw a fault and count it. A hang holds the
    /// request (until it is over or shutdown) and then closes it; a drop closes it at once.
    pub async fn admit(&self) -> Result<Admission, CloseConnection> {
        let (latency, command_latency, fault, hang_for) = {
            let mut behaviour = self.behaviour();
            if behaviour.down {
                drop(behaviour);
                self.metrics.update(|c| c.down_rejections += 1);
                return Err(CloseConnection("the server is down"));
            }
            (
                behaviour.request_latency,
                behaviour.command_latency,
                behaviour.decide(),
                behaviour.hang_for,
            )
        };
        if latency > Duration::ZERO {
            tokio::time::sleep(latency).await;
        }
        let Some(kind) = fault else {
            return Ok(Admission::Proceed {
                fail_after_work: false,
                command_latency,
            });
        };
        self.metrics.count_fault(kind);
        match kind {
            FaultKind::Http500AfterWork => Ok(Admission::Proceed {
                fail_after_work: true,
                command_latency,
            }),
            FaultKind::Http500 => Ok(Admission::Http500),
            FaultKind::DropConnection => Err(CloseConnection("injected fault: dropped connection")),
            FaultKind::Timeout => {
                tokio::select! {
                    () = tokio::time::sleep(hang_for) => {}
                    () = self.shutdown_requested() => {}
                }
                Err(CloseConnection("injected fault: timeout"))
            }
        }
    }
}

/// A simulated server's answers.
pub trait Service: Send + Sync + 'static {
    /// The simulator's name, for its log lines.
    const NAME: &'static str;

    fn plumbing(&self) -> &Plumbing;

    /// Answers one request (or closes its connection).
    fn handle(self: Arc<Self>, request: Request<Incoming>) -> impl Future<Output = Answer> + Send;
}

/// The task serving a bound listener.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Running {
    /// Binds `listen` and serves `service` on the current Tokio runtime until its
    /// [`Plumbing::request_shutdown`].
    pub async fn start<S: Service>(listen: SocketAddr, service: Arc<S>) -> io::Result<Running> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, service));
        tracing::debug!(%addr, "{} listening", S::NAME);
        Ok(Running {
            addr,
            task: Mutex::new(Some(task)),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the server task to end (after a shutdown request: up to the 2 s grace).
    pub async fn join(&self) {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn accept_loop<S: Service>(listener: TcpListener, service: Arc<S>) {
    let plumbing = service.plumbing();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = plumbing.shutdown_requested() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    if plumbing.is_down() {
                        plumbing.metrics.update(|c| c.down_rejections += 1);
                        drop(stream);
                        continue;
                    }
                    connections.spawn(serve_connection(stream, Arc::clone(&service)));
                }
                Err(error) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(%error, "{} accept failed", S::NAME);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

async fn serve_connection<S: Service>(stream: TcpStream, service: Arc<S>) {
    let handler = Arc::clone(&service);
    let handler = service_fn(move |request| Arc::clone(&handler).handle(request));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), handler);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = service.plumbing().shutdown_requested() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
