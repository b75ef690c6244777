//! Thin wrappers around a connection's byte stream and a request's body.
//!
//! - [`Prefixed`] gives back the bytes read while looking for a PROXY header, so TLS and HTTP see
//!   the stream as the client sent it.
//! - [`SendDeadline`] fails a write, flush or shutdown that made no progress for the send timeout:
//!   a client that stops reading a response (a "slow read") would otherwise hold its connection,
//!   its buffers and its handler for ever.
//! - [`BodyDeadline`] fails a request body that has not ended by its deadline, on every route: a
//!   client that trickles a small JSON body a byte a minute would otherwise hold a handler (the
//!   ingest route has its own, shorter bound in `payload`, which answers `408` first).
//!
//! A request head needs no wrapper: hyper bounds its wait (the header timeout).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream whose first bytes were already read: they are read again first.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The error a stalled send ends the connection with; found again in hyper's error chain to
/// count the connection as `send_stalled`.
#[derive(Debug, thiserror::Error)]
#[error("the client read nothing for {0:?}")]
pub(crate) struct SendStalled(pub(crate) Duration);

impl SendStalled {
    /// Is `error`, or anything it was caused by, a stalled send?
    pub(crate) fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(e) = next {
            if e.is::<SendStalled>()
                || e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()).is_some_and(|i| i.is::<SendStalled>())
            {
                return true;
            }
            next = e.source();
        }
        false
    }
}

/// A stream whose writes fail after `timeout` without progress.
#[derive(Debug)]
pub(crate) struct SendDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write is pending; allocated on the first stall and reused.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<S> SendDeadline<S> {
    pub(crate) fn new(inner: S, timeout: Duration) -> Self {
        SendDeadline { inner, timeout, timer: None, armed: false }
    }

    /// Map the inner poll: progress disarms the clock, a pending write arms it (once) and fails
    /// when it runs out.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.armed = false;
            return polled;
        }
        let deadline = Instant::now() + self.timeout;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        ready!(timer.as_mut().poll(cx));
        self.armed = false;
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, SendStalled(self.timeout))))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

/// The error a body past its deadline ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not end within {0:?}")]
pub(crate) struct BodyTooSlow(pub(crate) Duration);

/// A request body that fails once its deadline has passed.
#[derive(Debug)]
pub(crate) struct BodyDeadline<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
}

impl<B> BodyDeadline<B> {
    /// `inner`, to end within `limit` from now.
    pub(crate) fn new(inner: B, limit: Duration) -> Self {
        BodyDeadline { inner, deadline: Box::pin(tokio::time::sleep(limit)), limit }
    }
}

impl<B> Body for BodyDeadline<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTooSlow(self.limit)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn the_prefix_is_read_first_then_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.expect("write");
        drop(client);
        let mut stream = Prefixed::new(Bytes::from_static(b"hello"), server);
        let mut text = String::new();
        stream.read_to_string(&mut text).await.expect("read");
        assert_eq!(text, "hello world");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_fails_after_the_timeout_and_is_recognised() {
        // A 16-byte pipe the other side never reads: the second write can't progress.
        let (_client, server) = tokio::io::duplex(16);
        let mut stream = SendDeadline::new(server, Duration::from_secs(30));
        stream.write_all(&[0; 16]).await.expect("fits the pipe");
        let started = Instant::now();
        let err = stream.write_all(&[0; 16]).await.expect_err("stalled");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30), "paused clock: exactly the timeout");
        assert!(SendStalled::caused(&err));
        assert!(!SendStalled::caused(&io::Error::other("other")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_cut() {
        let (mut client, server) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut buf = [0; 16];
            let mut total = 0;
            // Reads 16 bytes every 20 s: slower than the data comes, faster than the timeout.
            while total < 160 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                total += client.read(&mut buf).await.expect("read");
            }
            total
        });
        let mut stream = SendDeadline::new(server, Duration::from_secs(30));
        stream.write_all(&[7; 160]).await.expect("progress resets the clock");
        assert_eq!(reader.await.expect("reader"), 160);
    }

    /// A body whose frames come from a channel the test holds.
    struct Trickle(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }

    /// Every frame of `body`, or its error.
    async fn collect<B: Body<Data = Bytes> + Unpin>(mut body: B) -> Result<Vec<u8>, B::Error> {
        let mut bytes = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            bytes.extend_from_slice(frame?.data_ref().map_or(&[][..], |d| d.as_ref()));
        }
        Ok(bytes)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_still_trickling_at_its_deadline_fails() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let body = BodyDeadline::new(Trickle(rx), Duration::from_secs(120));
        let sender = tokio::spawn(async move {
            // A byte every 50 s: always "making progress", never done.
            while tx.send(Bytes::from_static(b"{")).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(50)).await;
            }
        });
        let started = Instant::now();
        let err = collect(body).await.expect_err("cut at the deadline");
        assert!(err.is::<BodyTooSlow>(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(120));
        sender.abort();

        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(Bytes::from_static(b"{}")).await.expect("send");
        drop(tx);
        let whole = collect(BodyDeadline::new(Trickle(rx), Duration::from_secs(120))).await.expect("in time");
        assert_eq!(whole, b"{}");
    }
}
