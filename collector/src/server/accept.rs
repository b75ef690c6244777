//! The accept loop and the steps of one connection (the order is in the module doc of
//! [`server`](super)): a thin driver, each step's rule in its own module.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::caps::{ConnectionCaps, GlobalSlot, SourceSlot, counted_as};
use super::io::{BodyDeadline, Prefixed, SendDeadline, SendStalled};
use super::proxy_protocol::{self, Decoded, Header, ProxyError};
use super::source::{ClientSource, resolve};
use super::{MAX_BUFFER_BYTES, Settings};
use crate::metrics::{ConnectionRefusal, Metrics};

/// How long the loop pauses after `accept` fails for want of a resource (file descriptors,
/// memory), so that it does not spin; the connections already open keep being served.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// A bound listener and what each of its connections needs.
#[derive(Debug)]
pub(crate) struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    router: Router,
    settings: Settings,
    caps: ConnectionCaps,
    metrics: Arc<Metrics>,
    tls: Option<TlsAcceptor>,
    http: http1::Builder,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("settings", &self.settings).field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

/// How a connection ended early.
enum Closed {
    /// Refused or cut by a rule: counted.
    Refused(ConnectionRefusal),
    /// The client went away or broke the protocol in an ordinary way: not counted.
    Quietly,
}

impl From<ConnectionRefusal> for Closed {
    fn from(reason: ConnectionRefusal) -> Self {
        Closed::Refused(reason)
    }
}

impl Server {
    /// Serve `router` on `listener`, over TLS if `tls` is given.
    pub(crate) fn new(
        listener: TcpListener,
        router: Router,
        settings: Settings,
        tls: Option<Arc<rustls::ServerConfig>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut http = http1::Builder::new();
        // Both limits: hyper may read past `max_buf_size` into spare capacity before it checks,
        // so the head's own limit is what makes a 33 KiB head a 431.
        http.timer(TokioTimer::new())
            .header_read_timeout(settings.header_timeout)
            .max_buf_size(MAX_BUFFER_BYTES)
            .max_header_size(MAX_BUFFER_BYTES);
        let caps = ConnectionCaps::new(settings.max_connections, settings.max_connections_per_source);
        let shared = Shared { router, caps, metrics, tls: tls.map(TlsAcceptor::from), http, settings };
        Server { listener, shared: Arc::new(shared) }
    }

    /// Accept until `shutdown` completes, then close the listener and wait for every connection
    /// to finish (idle ones close at once, busy ones after their response).
    pub(crate) async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Server { listener, shared } = self;
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    tracing::error!("accepting connections failed: {e}; pausing {ACCEPT_ERROR_PAUSE:?}");
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                        () = &mut shutdown => break,
                    }
                }
            };
            let Some(slot) = shared.caps.global() else {
                refuse_now(&stream);
                shared.metrics.record_connection_refused(ConnectionRefusal::GlobalLimit);
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(Arc::clone(&shared).connection(stream, peer, graceful.watcher(), slot));
        }
        drop(listener);
        graceful.shutdown().await;
    }
}

impl Shared {
    async fn connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, watcher: Watcher, _slot: GlobalSlot) {
        let _open = self.metrics.connection_open();
        if let Err(Closed::Refused(reason)) = self.steps(stream, peer, watcher).await {
            self.metrics.record_connection_refused(reason);
        }
    }

    async fn steps(self: &Arc<Self>, mut stream: TcpStream, peer: SocketAddr, watcher: Watcher) -> Result<(), Closed> {
        let (prefix, hop, _source_slot) = self.admit(&mut stream, peer.ip()).await?;
        let stream = Prefixed::new(prefix, stream);
        match &self.tls {
            None => self.http(stream, hop, watcher).await,
            Some(acceptor) => {
                let handshake = tokio::time::timeout(self.settings.tls_handshake_timeout, acceptor.accept(stream)).await;
                match handshake {
                    Ok(Ok(tls)) => self.http(tls, hop, watcher).await,
                    // Connected and left without a byte: a port check, not an attack.
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Closed::Quietly),
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake failed: {e}");
                        Err(ConnectionRefusal::TlsHandshakeFailed.into())
                    }
                    Err(_) => Err(ConnectionRefusal::TlsHandshakeTimeout.into()),
                }
            }
        }
    }

    /// Steps 2 and 3: who sent this connection, under which source slot, and the bytes read
    /// while finding out.
    async fn admit(&self, stream: &mut TcpStream, peer: IpAddr) -> Result<(Bytes, IpAddr, Option<SourceSlot>), Closed> {
        let peer = peer.to_canonical();
        let trusted = &self.settings.trusted_proxies;
        let peer_is_proxy = trusted.contains(peer);
        let slot = self.source_slot(stream, peer)?;
        if !self.settings.proxy_protocol {
            return Ok((Bytes::new(), peer, slot));
        }
        let read = tokio::time::timeout(self.settings.header_timeout, read_proxy_header(stream)).await;
        let (header, rest) = match read {
            Err(_) => return Err(ConnectionRefusal::HeaderTimeout.into()),
            Ok(Err(ProxyRead::Closed)) => return Err(Closed::Quietly),
            Ok(Err(ProxyRead::Invalid(e))) if peer_is_proxy => {
                tracing::warn!("a trusted proxy sent a bad PROXY header: {e}");
                return Err(ConnectionRefusal::ProxyHeaderInvalid.into());
            }
            Ok(Err(ProxyRead::Invalid(_))) => return Err(ConnectionRefusal::ProxyHeaderUntrusted.into()),
            Ok(Ok(read)) => read,
        };
        match (peer_is_proxy, header) {
            (false, None) => Ok((rest, peer, slot)),
            (false, Some(_)) => Err(ConnectionRefusal::ProxyHeaderUntrusted.into()),
            (true, None) => Err(ConnectionRefusal::ProxyHeaderMissing.into()),
            (true, Some(Header::Local)) => Ok((rest, peer, None)),
            (true, Some(Header::Proxied { source, .. })) => {
                let client = source.ip().to_canonical();
                Ok((rest, client, self.source_slot(stream, client)?))
            }
        }
    }

    /// A per-source slot for a connection from (or on behalf of) `addr`, if it is counted.
    fn source_slot(&self, stream: &TcpStream, addr: IpAddr) -> Result<Option<SourceSlot>, Closed> {
        let Some(counted) = counted_as(addr, &self.settings.trusted_proxies) else { return Ok(None) };
        match self.caps.source(counted) {
            Some(slot) => Ok(Some(slot)),
            None => {
                refuse_now(stream);
                Err(ConnectionRefusal::SourceLimit.into())
            }
        }
    }

    /// Step 5: HTTP/1.1 until the client or a timeout ends it, or a drain closes it.
    async fn http<I>(self: &Arc<Self>, io: I, hop: IpAddr, watcher: Watcher) -> Result<(), Closed>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let requested = Arc::new(AtomicBool::new(false));
        let service = {
            let (shared, requested) = (Arc::clone(self), Arc::clone(&requested));
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                requested.store(true, Ordering::Relaxed);
                let settings = &shared.settings;
                // Behind a PROXY-protocol balancer TLS ends here, so every HTTP header is the
                // client's own: the PROXY header alone names the client (a `LOCAL` one, the proxy).
                let source = if settings.proxy_protocol {
                    hop.to_canonical()
                } else {
                    resolve(hop, request.headers(), &settings.trusted_proxies, settings.forwarded_header)
                };
                request.extensions_mut().insert(ClientSource(source));
                let request = request.map(|body| {
                    if body.is_end_stream() { Body::empty() } else { Body::new(BodyDeadline::new(body, settings.body_timeout)) }
                });
                tower_service::Service::call(&mut shared.router.clone(), request)
            })
        };
        let io = TokioIo::new(SendDeadline::new(io, self.settings.send_timeout));
        match watcher.watch(self.http.serve_connection(io, service)).await {
            Ok(()) => Ok(()),
            Err(e) if SendStalled::caused(&e) => Err(ConnectionRefusal::SendStalled.into()),
            // After a first request, a header timeout is a kept-alive connection left idle.
            Err(e) if e.is_timeout() && !requested.load(Ordering::Relaxed) => Err(ConnectionRefusal::HeaderTimeout.into()),
            Err(e) => {
                tracing::debug!("connection ended: {e}");
                Err(Closed::Quietly)
            }
        }
    }
}

enum ProxyRead {
    Closed,
    Invalid(ProxyError),
}

impl From<std::io::Error> for ProxyRead {
    fn from(_: std::io::Error) -> Self {
        ProxyRead::Closed
    }
}

/// Read until the first bytes decide: a complete PROXY header (and the bytes after it), none
/// (and the bytes read), or a bad one. Bounded by the codec's length limits.
async fn read_proxy_header(stream: &mut TcpStream) -> Result<(Option<Header>, Bytes), ProxyRead> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        match proxy_protocol::decode(&buf).map_err(ProxyRead::Invalid)? {
            Decoded::Complete { header, len } => return Ok((Some(header), buf.split_off(len).freeze())),
            Decoded::NotProxy => return Ok((None, buf.freeze())),
            Decoded::Incomplete => {}
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ProxyRead::Closed);
        }
    }
}

/// Reset rather than close: a refused connection leaves no TIME_WAIT behind on the collector.
fn refuse_now(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Errors of one connection that `accept` reports (it was reset before being accepted): the
/// listener itself is fine.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset)
}
