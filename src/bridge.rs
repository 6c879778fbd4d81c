//! The byte pumps between a client (raw TCP or a browser websocket) and the upstream
//! console websocket, in one task: bounded buffers (a slow side stops the other side's
//! reads, so backpressure reaches the sender), small reads coalesced, flush after each
//! batch, keepalive pings with a cap on unanswered ones, idle and maximum-length limits.
//! It reports why it ended; the session decides what to tell each side.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientIo, ClientReader, ClientWriter, In, CHUNK};
use crate::rfb::handshake::Ready;
use crate::ws::{Recv, WsIo, WsReader, WsWriter, CLOSE_NORMAL, PROTOCOL_ERROR};

/// Close code: internal error (what the viewer gets when the console failed).
const CLOSE_ERROR: u16 = 1011;

/// Limits for one bridge.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Ping interval towards the upstream (zero: none).
    pub keepalive: Duration,
    /// Unanswered pings before the upstream is declared dead.
    pub max_unanswered_pings: u32,
    /// No traffic either way for this long ends the session (zero: never).
    pub idle_timeout: Duration,
    /// The session ends after this long (zero: never).
    pub max_duration: Duration,
}

/// Byte counters of one session, readable while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes sent to the upstream.
    pub to_upstream: AtomicU64,
    /// Bytes written to the client.
    pub to_client: AtomicU64,
    /// Bytes received from the upstream.
    pub from_upstream: AtomicU64,
    /// The most upstream bytes ever held inside tcvnc (received, not yet written).
    pub max_buffered: AtomicU64,
}

impl Counters {
    fn upstream_in(&self, n: usize) {
        let total = self.from_upstream.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let held = total.saturating_sub(self.to_client.load(Ordering::Relaxed));
        self.max_buffered.fetch_max(held, Ordering::Relaxed);
    }
}

/// Why a bridge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client closed normally.
    ClientClosed,
    /// The client connection failed.
    ClientLost(String),
    /// The upstream sent a close frame (code, reason) or ended the stream.
    UpstreamClosed(Option<(u16, String)>),
    /// The upstream connection failed.
    UpstreamLost(String),
    /// The upstream stopped answering pings.
    PingTimeout,
    /// No traffic for the idle timeout.
    Idle,
    /// The maximum session length was reached.
    MaxDuration,
    /// The session was cancelled (shutdown or takeover).
    Cancelled,
}

/// Milliseconds since the bridge started at the last byte either way.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    /// The console → viewer pump is blocked writing to a slow viewer; it reads no pongs
    /// meanwhile, so unanswered pings prove nothing about the console.
    writing_to_client: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.last_ms.load(Ordering::Relaxed);
            tokio::time::sleep_until(self.start + Duration::from_millis(last) + idle).await;
            if self.last_ms.load(Ordering::Relaxed) == last {
                return;
            }
        }
    }
}

/// Client → upstream, and the keepalive pings (they share the upstream's sending half).
async fn client_to_upstream<W, U>(
    client: &mut ClientReader<'_, W>,
    upstream: &mut WsWriter<U>,
    limits: Limits,
    activity: &Activity,
    counters: &Counters,
) -> End
where
    W: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let keepalive = if limits.keepalive.is_zero() {
        Duration::from_secs(86_400)
    } else {
        limits.keepalive
    };
    let mut ping = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = BytesMut::new();
    loop {
        // Every branch is cancel-safe: a timer tick, a notification, a socket/websocket read.
        tokio::select! {
            _ = ping.tick(), if !limits.keepalive.is_zero() => {
                if activity.writing_to_client.load(Ordering::Relaxed) {
                    continue;
                }
                if upstream.unanswered_pings() >= limits.max_unanswered_pings {
                    return End::PingTimeout;
                }
                if let Err(e) = upstream.ping().await {
                    return End::UpstreamLost(e.to_string());
                }
            }
            () = upstream.control_wanted() => {
                if let Err(e) = upstream.flush().await {
                    return End::UpstreamLost(e.to_string());
                }
            }
            r = client.recv(&mut buf) => match r {
                In::Data(data) => {
                    activity.touch();
                    let mut sent = data.len() as u64;
                    if let Err(e) = data.feed_to(upstream).await {
                        return End::UpstreamLost(e.to_string());
                    }
                    // Coalesce: whatever else the client already sent goes in the same flush.
                    let mut end = None;
                    while sent < CHUNK as u64 {
                        match client.recv(&mut buf).now_or_never() {
                            Some(In::Data(more)) => {
                                sent += more.len() as u64;
                                if let Err(e) = more.feed_to(upstream).await {
                                    return End::UpstreamLost(e.to_string());
                                }
                            }
                            Some(In::Closed) => {
                                end = Some(End::ClientClosed);
                                break;
                            }
                            Some(In::Failed(e)) => {
                                end = Some(End::ClientLost(e));
                                break;
                            }
                            None => break,
                        }
                    }
                    if let Err(e) = upstream.flush().await {
                        return End::UpstreamLost(e.to_string());
                    }
                    counters.to_upstream.fetch_add(sent, Ordering::Relaxed);
                    if let Some(end) = end {
                        return end;
                    }
                }
                In::Closed => return End::ClientClosed,
                In::Failed(e) => return End::ClientLost(e),
            },
        }
    }
}

/// Upstream → client.
async fn upstream_to_client<W, U>(
    upstream: &mut WsReader<U>,
    client: &mut ClientWriter<'_, W>,
    activity: &Activity,
    counters: &Counters,
) -> End
where
    W: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        // Pongs owed to a websocket client go out while waiting for the console.
        let next = loop {
            tokio::select! {
                r = upstream.recv() => break r,
                () = client.control_wanted() => {
                    activity.writing_to_client.store(true, Ordering::Relaxed);
                    if let Err(e) = client.flush().await {
                        return End::ClientLost(e);
                    }
                    activity.writing_to_client.store(false, Ordering::Relaxed);
                }
            }
        };
        let first = match next {
            Recv::Data(d) => d,
            Recv::Closed(c) => return End::UpstreamClosed(c),
            Recv::Failed(e) => return End::UpstreamLost(e),
        };
        activity.touch();
        counters.upstream_in(first.len());
        activity.writing_to_client.store(true, Ordering::Relaxed);
        let mut end = None;
        let written;
        if first.len() >= CHUNK / 4 {
            // Large: write as is, no copy.
            written = first.len() as u64;
            if let Err(e) = client.write(first).await {
                return End::ClientLost(e);
            }
        } else {
            // Small: gather what is already here into one write.
            let mut batch = BytesMut::from(&first[..]);
            while batch.len() < CHUNK {
                match upstream.recv().now_or_never() {
                    Some(Recv::Data(more)) => {
                        counters.upstream_in(more.len());
                        batch.extend_from_slice(&more);
                    }
                    Some(Recv::Closed(c)) => {
                        end = Some(End::UpstreamClosed(c));
                        break;
                    }
                    Some(Recv::Failed(e)) => {
                        end = Some(End::UpstreamLost(e));
                        break;
                    }
                    None => break,
                }
            }
            written = batch.len() as u64;
            if let Err(e) = client.write(batch.freeze()).await {
                return End::ClientLost(e);
            }
        }
        if let Err(e) = client.flush().await {
            return End::ClientLost(e);
        }
        activity.writing_to_client.store(false, Ordering::Relaxed);
        counters.to_client.fetch_add(written, Ordering::Relaxed);
        if let Some(end) = end {
            return end;
        }
    }
}

/// Pumps bytes both ways until one side ends, a limit is hit or `cancel` fires. The two
/// directions run concurrently in this one task, so a side blocked on sending never
/// stops the other direction. `Ready` is the proof that both handshakes are complete
/// (only the RFB handshake module makes one, or a target marked `transparent`).
pub async fn run<W, U>(
    client: &mut ClientIo<W>,
    upstream: &mut WsIo<U>,
    limits: Limits,
    cancel: &CancellationToken,
    counters: &Counters,
    _ready: &Ready,
) -> End
where
    W: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let activity = Activity {
        start,
        last_ms: AtomicU64::new(0),
        writing_to_client: std::sync::atomic::AtomicBool::new(false),
    };
    let (mut cr, mut cw) = client.halves();
    let (ur, uw) = upstream.halves();
    let max = async {
        if limits.max_duration.is_zero() {
            std::future::pending().await
        } else {
            tokio::time::sleep_until(start + limits.max_duration).await
        }
    };
    let idle = async {
        if limits.idle_timeout.is_zero() {
            std::future::pending().await
        } else {
            activity.idle_for(limits.idle_timeout).await
        }
    };
    let end = tokio::select! {
        biased;
        _ = cancel.cancelled() => End::Cancelled,
        _ = max => End::MaxDuration,
        _ = idle => End::Idle,
        e = client_to_upstream(&mut cr, &mut *uw, limits, &activity, counters) => e,
        e = upstream_to_client(&mut *ur, &mut cw, &activity, counters) => e,
    };
    answer_closes(&end, &mut cw, uw).await;
    end
}

/// Sends the close frames the readers owe (RFC 6455 §5.5.1: a close is answered with a
/// close; a violation is closed with its code), before the session closes the rest.
/// When the console broke the websocket protocol, the viewer is told so in words
/// (1011 with what was wrong) while the console gets the violation's code (1002…).
async fn answer_closes<W, U>(
    end: &End,
    client: &mut ClientWriter<'_, W>,
    upstream: &mut WsWriter<U>,
) where
    W: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    const BOUND: Duration = Duration::from_secs(2);
    if upstream.close_owed() {
        let _ = tokio::time::timeout(BOUND, upstream.close(CLOSE_NORMAL, "")).await;
        if let (End::UpstreamLost(e), ClientWriter::Ws(ws)) = (end, &mut *client) {
            if let Some(what) = e.strip_prefix(PROTOCOL_ERROR) {
                let reason = format!("the console broke the websocket protocol{what}");
                let _ = tokio::time::timeout(BOUND, ws.close(CLOSE_ERROR, &reason)).await;
            }
        }
    }
    if let ClientWriter::Ws(ws) = client {
        if ws.close_owed() {
            let _ = tokio::time::timeout(BOUND, ws.close(CLOSE_NORMAL, "")).await;
        }
    }
}
