//! The TLS client stream of the upstream console connection, on rustls's unbuffered API.
//!
//! tokio-rustls drives rustls's buffered connection, which reads ciphertext from the socket
//! 4 KiB per system call and copies each decrypted record twice before the caller sees it.
//! On the download path (console → viewer, nearly every byte tcvnc moves) those reads were
//! most of the proxy's system calls. Here the socket is read up to 64 KiB at a time into
//! one buffer, the records are decrypted where they lie, and each record's plaintext goes
//! straight into the caller's buffer; writes are encrypted straight into one outgoing
//! buffer, several small slices of a vectored write gathered into one record.
//!
//! Memory follows the traffic: an idle connection holds no buffer (the receive buffer is
//! taken when the socket becomes readable, the send buffer when there is something to
//! send); reads take [`SMALL`] at a time, and [`LARGE`] while data flows (a whole TLS
//! record must fit, so a record larger than the small buffer grows it too).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::client::UnbufferedClientConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls_pki_types::ServerName;
use std::future::Future;

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Buffer size while idle.
const SMALL: usize = 4 * 1024;
/// Buffer size while data flows: 64 KiB of reads plus room for a partial largest record
/// (TLS 1.2 allows 2^14 + 2048 bytes of ciphertext and a 5-byte header).
const LARGE: usize = 64 * 1024 + 18 * 1024 + 512;
/// Plaintext encrypted per call of `poll_write`.
const WRITE_CHUNK: usize = 64 * 1024;
/// Slices of a vectored write are gathered into one record up to this size.
const GATHER: usize = 16 * 1024;
/// Ciphertext overhead allowed per record (header, tag, content type, TLS 1.2's explicit
/// nonce), with a margin.
const RECORD_OVERHEAD: usize = 64;

/// A zero-filled buffer whose length is its usable capacity, grown and shrunk as a whole.
#[derive(Debug, Default)]
struct Buf {
    mem: Vec<u8>,
    /// Start of the bytes not yet consumed.
    start: usize,
    /// End of the bytes held.
    end: usize,
}

impl Buf {
    fn held(&self) -> usize {
        self.end - self.start
    }

    /// Makes room for `want` more bytes after `end`: moves what is held to the front and,
    /// when that is not enough, grows to hold it (at least to `min_size`).
    fn room_for(&mut self, want: usize, min_size: usize) {
        if self.start > 0 && self.mem.len() - self.end < want {
            self.mem.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.mem.len() - self.end < want {
            let size = (self.end + want).max(min_size);
            let mut fresh = vec![0; size];
            fresh[..self.end].copy_from_slice(&self.mem[..self.end]);
            self.mem = fresh;
        }
    }

    /// Drops back to `size` when nothing is held and the buffer is larger.
    fn shrink_when_empty(&mut self, size: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.mem.len() > size {
                self.mem = vec![0; size];
            }
        }
    }
}

/// The receive buffer: ciphertext read straight into spare capacity (no zero-filling, so
/// a buffer taken for each burst costs an allocation, not a pass over it).
#[derive(Debug, Default)]
struct InBuf {
    mem: BytesMut,
    /// Start of the bytes not yet processed.
    start: usize,
}

impl InBuf {
    fn held(&self) -> usize {
        self.mem.len() - self.start
    }

    /// Makes room for `want` more bytes (at least `min_size` in all): the processed front
    /// is dropped and, where the allocation allows, the rest moves to its start.
    fn room_for(&mut self, want: usize, min_size: usize) {
        if self.start > 0 {
            self.mem.advance(self.start);
            self.start = 0;
        }
        let want = want.max(min_size.saturating_sub(self.mem.len()));
        if self.mem.capacity() - self.mem.len() < want {
            self.mem.reserve(want);
        }
    }

    /// Drops the buffer when nothing is held and it is larger than `size`.
    fn shrink_when_empty(&mut self, size: usize) {
        if self.held() == 0 {
            self.mem.clear();
            self.start = 0;
            if self.mem.capacity() > size {
                self.mem = BytesMut::with_capacity(size);
            }
        }
    }
}

/// A TLS client connection over TCP, driven through rustls's unbuffered API.
pub struct TlsClient {
    tcp: TcpStream,
    conn: UnbufferedClientConnection,
    /// Ciphertext received and not yet processed.
    incoming: InBuf,
    /// Plaintext decrypted but not yet read (a record larger than the reader's buffer, or
    /// one decrypted while writing).
    plain: Buf,
    /// Ciphertext to send.
    outgoing: Buf,
    /// The last read from the socket filled what was offered: data is flowing.
    flowing: bool,
    /// The last write was a large one: uploads are flowing.
    bulk_writes: bool,
    /// The peer's close_notify was received (or the socket ended).
    eof: bool,
    /// Our close_notify is queued.
    closing: bool,
    /// A TLS failure: every later call repeats it.
    failed: Option<String>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("incoming", &self.incoming.held())
            .field("plain", &self.plain.held())
            .field("outgoing", &self.outgoing.held())
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

/// What one step of the connection's state machine asks for.
enum Step {
    /// Records were processed; go on.
    Progress,
    /// A complete record is missing: read from the socket.
    NeedData,
    /// The handshake is over and nothing is pending: application data may be written.
    Writable,
    /// Both sides sent close_notify: nothing more moves.
    Closed,
}

fn tls_error(e: &rustls::Error) -> io::Error {
    let kind = if no_suite(e) {
        io::ErrorKind::Unsupported
    } else {
        io::ErrorKind::InvalidData
    };
    io::Error::new(kind, e.to_string())
}

/// Whether the peer refused the handshake for want of a cipher suite in common (it
/// answers `handshake_failure` or `insufficient_security` to an offer it cannot meet).
fn no_suite(e: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        e,
        rustls::Error::AlertReceived(A::HandshakeFailure | A::InsufficientSecurity)
            | rustls::Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon)
    )
}

/// Whether a [`TlsClient::connect`] error says the peer and we had no cipher suite in
/// common (worth a retry with a wider offer).
pub fn no_common_suite(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
}

impl TlsClient {
    /// Runs the TLS handshake with `name` over `tcp`.
    ///
    /// # Errors
    /// The TLS failure (certificate problems included) or the socket's error, as
    /// `io::Error`s whose text is rustls's.
    pub async fn connect(
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
        tcp: TcpStream,
    ) -> io::Result<TlsClient> {
        let conn = UnbufferedClientConnection::new(config, name).map_err(|e| tls_error(&e))?;
        let mut s = TlsClient {
            tcp,
            conn,
            incoming: InBuf::default(),
            plain: Buf::default(),
            outgoing: Buf::default(),
            flowing: false,
            bulk_writes: false,
            eof: false,
            closing: false,
            failed: None,
        };
        loop {
            match s.step(None)? {
                Step::Progress => {}
                Step::Writable => break,
                Step::Closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the gateway closed the TLS connection during its handshake",
                    ))
                }
                Step::NeedData => {
                    s.flush_outgoing().await?;
                    let n = std::future::poll_fn(|cx| Pin::new(&mut s).poll_fill(cx)).await?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the gateway closed the connection during the TLS handshake",
                        ));
                    }
                }
            }
        }
        s.flush_outgoing().await?;
        // What the handshake grew is given back when the first read finds the socket
        // idle (see `poll_fill`).
        Ok(s)
    }

    /// Sends what `outgoing` holds (the handshake's records).
    async fn flush_outgoing(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_send(cx)).await
    }

    /// Processes what `incoming` holds until the state machine wants something: decrypted
    /// records go into `out` (the reader's buffer) as far as they fit, the rest into
    /// `plain`; handshake and alert records are encoded into `outgoing`.
    fn step(&mut self, mut out: Option<&mut ReadBuf<'_>>) -> io::Result<Step> {
        if let Some(f) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, f.clone()));
        }
        let inc = &mut self.incoming;
        let UnbufferedStatus { mut discard, state } =
            self.conn.process_tls_records(&mut inc.mem[inc.start..]);
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                inc.start += discard;
                self.failed = Some(e.to_string());
                return Err(tls_error(&e));
            }
        };
        let step = match state {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    let record = record.map_err(|e| tls_error(&e))?;
                    discard += record.discard;
                    let payload = record.payload;
                    let direct = match out.as_deref_mut() {
                        Some(buf) => {
                            let n = payload.len().min(buf.remaining());
                            buf.put_slice(&payload[..n]);
                            n
                        }
                        None => 0,
                    };
                    let rest = &payload[direct..];
                    if !rest.is_empty() {
                        self.plain.room_for(rest.len(), 0);
                        let p = &mut self.plain;
                        p.mem[p.end..p.end + rest.len()].copy_from_slice(rest);
                        p.end += rest.len();
                    }
                }
                Step::Progress
            }
            ConnectionState::EncodeTlsData(mut encode) => {
                let o = &mut self.outgoing;
                o.room_for(SMALL, 0);
                loop {
                    match encode.encode(&mut o.mem[o.end..]) {
                        Ok(n) => {
                            o.end += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(s)) => {
                            o.room_for(s.required_size, 0);
                        }
                        Err(e) => {
                            return Err(io::Error::other(format!("TLS encode: {e}")));
                        }
                    }
                }
                Step::Progress
            }
            ConnectionState::TransmitTlsData(transmit) => {
                // The bytes are in `outgoing`, which every path sends before it waits
                // for the peer (the handshake loop, reads and flushes).
                transmit.done();
                Step::Progress
            }
            ConnectionState::BlockedHandshake => Step::NeedData,
            // rustls yields this only once every complete record was processed.
            ConnectionState::WriteTraffic(_) => Step::Writable,
            ConnectionState::PeerClosed => {
                self.eof = true;
                Step::Progress
            }
            ConnectionState::Closed => {
                self.eof = true;
                Step::Closed
            }
            _ => {
                return Err(io::Error::other("unexpected TLS state for a client"));
            }
        };
        self.incoming.start += discard;
        Ok(step)
    }

    /// Reads ciphertext from the socket into `incoming`: as much as fits in the large
    /// buffer while data flows, a small read while idle.
    fn poll_fill(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let inc = &mut this.incoming;
        if !this.flowing && inc.held() == 0 {
            // Idle: no buffer is held until the socket has something to read.
            inc.shrink_when_empty(0);
            ready!(this.tcp.poll_read_ready(cx))?;
        }
        // A partial record's header tells how much it needs.
        let held = &inc.mem[inc.start..];
        let record = if held.len() >= 5 {
            5 + usize::from(u16::from_be_bytes([held[3], held[4]]))
        } else {
            0
        };
        let want =
            if this.flowing { 64 * 1024 } else { SMALL }.max(record.saturating_sub(held.len()));
        let size = if this.flowing || record > SMALL {
            LARGE
        } else {
            SMALL
        };
        inc.room_for(want, size);
        let offered = inc.mem.capacity() - inc.mem.len();
        let n = ready!(std::pin::pin!(this.tcp.read_buf(&mut inc.mem)).poll(cx))?;
        this.flowing = n == offered && n >= 2048;
        Poll::Ready(Ok(n))
    }

    /// Sends what `outgoing` holds.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.outgoing.held() > 0 {
            let o = &mut self.outgoing;
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &o.mem[o.start..o.end]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            o.start += n;
        }
        // An idle connection holds no send buffer; one that sends in bulk keeps its own.
        let keep = if self.outgoing.mem.len() > SMALL && self.bulk_writes {
            LARGE
        } else {
            0
        };
        self.outgoing.shrink_when_empty(keep);
        Poll::Ready(Ok(()))
    }

    /// Encrypts `data` (at most [`WRITE_CHUNK`] of it) into `outgoing` as one or more
    /// records. Returns how much was taken.
    fn encrypt(&mut self, data: &[u8]) -> io::Result<usize> {
        let data = &data[..data.len().min(WRITE_CHUNK)];
        loop {
            match self.step(None)? {
                Step::Progress => continue,
                Step::NeedData | Step::Writable => break,
                Step::Closed => return Err(io::ErrorKind::BrokenPipe.into()),
            }
        }
        let inc = &mut self.incoming;
        let UnbufferedStatus { discard, state } =
            self.conn.process_tls_records(&mut inc.mem[inc.start..]);
        inc.start += discard;
        let Ok(ConnectionState::WriteTraffic(mut traffic)) = state else {
            return Err(io::Error::other(
                "the TLS connection cannot send (handshake not complete or closed)",
            ));
        };
        self.bulk_writes = data.len() >= GATHER;
        let need = data.len() + (data.len() / (16 * 1024) + 1) * RECORD_OVERHEAD;
        let o = &mut self.outgoing;
        o.room_for(need, if need > SMALL { LARGE } else { 0 });
        match traffic.encrypt(data, &mut o.mem[o.end..]) {
            Ok(n) => {
                o.end += n;
                Ok(data.len())
            }
            Err(EncryptError::InsufficientSize(s)) => {
                o.room_for(s.required_size, 0);
                let n = traffic
                    .encrypt(data, &mut o.mem[o.end..])
                    .map_err(|e| io::Error::other(format!("TLS encrypt: {e}")))?;
                o.end += n;
                Ok(data.len())
            }
            Err(e) => Err(io::Error::other(format!("TLS encrypt: {e}"))),
        }
    }
}

impl AsyncRead for TlsClient {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Bytes put into `buf` must be reported with `Ready`: a `Pending` answer would
        // lose them.
        let before = buf.filled().len();
        loop {
            if this.plain.held() > 0 {
                let p = &mut this.plain;
                let n = p.held().min(buf.remaining());
                buf.put_slice(&p.mem[p.start..p.start + n]);
                p.start += n;
                p.shrink_when_empty(0);
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            // Decrypt every complete record that fits.
            let need_data = loop {
                match this.step(Some(&mut *buf))? {
                    Step::Progress if buf.remaining() == 0 || this.plain.held() > 0 => {
                        break false;
                    }
                    Step::Progress if this.eof => break false,
                    Step::Progress => {}
                    Step::Closed => break false,
                    Step::NeedData | Step::Writable => break true,
                }
            };
            // Handshake answers (a key update) go out as soon as they are made; a socket
            // that cannot take them now gets them with the next write.
            if this.outgoing.held() > 0 {
                if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            if buf.filled().len() > before || this.plain.held() > 0 {
                if !this.flowing {
                    this.incoming.shrink_when_empty(0);
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if !need_data {
                continue;
            }
            let n = ready!(Pin::new(&mut *this).poll_fill(cx))?;
            if n == 0 {
                this.eof = true;
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the gateway closed the connection without a TLS close_notify",
                )));
            }
        }
    }
}

impl AsyncWrite for TlsClient {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // Back-pressure: what was encrypted before goes out first.
        if this.outgoing.held() >= WRITE_CHUNK {
            ready!(this.poll_send(cx))?;
        }
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        let bufs = &bufs[first..];
        let taken = if bufs.len() == 1 || bufs[0].len() >= GATHER {
            this.encrypt(&bufs[0])?
        } else {
            // Small slices (a frame header and its payload) become one record.
            let total = bufs.iter().map(|b| b.len()).sum::<usize>().min(GATHER);
            let mut gathered = Vec::with_capacity(total);
            for b in bufs {
                let n = b.len().min(GATHER - gathered.len());
                gathered.extend_from_slice(&b[..n]);
                if gathered.len() == GATHER {
                    break;
                }
            }
            this.encrypt(&gathered)?
        };
        // Start sending now; what the socket cannot take yet goes with the next call or
        // the flush.
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing && this.failed.is_none() {
            this.closing = true;
            let inc = &mut this.incoming;
            let UnbufferedStatus { discard, state } =
                this.conn.process_tls_records(&mut inc.mem[inc.start..]);
            if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
                inc.start += discard;
                let o = &mut this.outgoing;
                o.room_for(RECORD_OVERHEAD, 0);
                if let Ok(n) = traffic.queue_close_notify(&mut o.mem[o.end..]) {
                    o.end += n;
                }
            }
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}
