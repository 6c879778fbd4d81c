//! The RFB handshake on both sides of the proxy, as a typestate: a client is
//! [`Greeted`] (versions exchanged), maybe [`Authenticated`] locally, and only a
//! completed negotiation yields [`Ready`], which the bridge requires. Every failure
//! before `Ready` can be shown to the viewer as a reason in the form its version reads.

use std::future::Future;
use std::net::IpAddr;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::auth;
use super::messages::{PixelFormat, ServerInit, Version, MAX_TEXT};
use crate::client::ClientIo;
use crate::guard::{Guard, Refused};
use crate::redact::Secret;
use crate::ws::WsIo;

/// Security type None.
pub(crate) const NONE: u8 = 1;
/// Security type VNC Authentication.
pub(crate) const VNC_AUTH: u8 = 2;

/// Longest failure reason we pass on from an upstream.
const MAX_REASON: u32 = 4096;

/// A byte channel the handshake runs over (TCP, or a websocket as bytes).
pub trait RfbIo: Send {
    /// Reads exactly `buf.len()` bytes.
    fn read_exact<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'a;
    /// Writes all of `data` and flushes.
    fn write_all<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'a;
}

impl<W: AsyncRead + AsyncWrite + Unpin + Send> RfbIo for ClientIo<W> {
    async fn read_exact<'a>(&'a mut self, buf: &'a mut [u8]) -> std::io::Result<()> {
        match self {
            ClientIo::Tcp(s) => AsyncReadExt::read_exact(s, buf).await.map(|_| ()),
            ClientIo::Ws(ws) => ws.read_exact(buf).await,
        }
    }
    async fn write_all<'a>(&'a mut self, data: &'a [u8]) -> std::io::Result<()> {
        match self {
            ClientIo::Tcp(s) => AsyncWriteExt::write_all(s, data).await,
            ClientIo::Ws(ws) => ws
                .send(Bytes::copy_from_slice(data))
                .await
                .map_err(std::io::Error::other),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> RfbIo for WsIo<S> {
    async fn read_exact<'a>(&'a mut self, buf: &'a mut [u8]) -> std::io::Result<()> {
        WsIo::read_exact(self, buf).await
    }
    async fn write_all<'a>(&'a mut self, data: &'a [u8]) -> std::io::Result<()> {
        self.send(Bytes::copy_from_slice(data))
            .await
            .map_err(std::io::Error::other)
    }
}

/// A handshake failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The client did not send an RFB ProtocolVersion (e.g. HTTP on the VNC port).
    #[error("the client does not speak RFB (it sent {0:?})")]
    NotRfb(String),
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The client's password was wrong.
    #[error("authentication failed: wrong password")]
    ClientAuthFailed,
    /// No password attempt was allowed now (guessing ceilings).
    #[error("{0}")]
    Throttled(Refused),
    /// The upstream VNC server refused before authentication, with its reason.
    #[error("the console refused the connection: {0}")]
    UpstreamRefused(String),
    /// The upstream rejected authentication.
    #[error("the console rejected authentication{}", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    UpstreamAuthFailed(Option<String>),
    /// The upstream wants a password tcvnc does not have.
    #[error("the console asks for a VNC password: set upstream_password_file for this target")]
    UpstreamNeedsPassword,
    /// No security type tcvnc can complete or relay.
    #[error(
        "the console offers security types {offered:?}, none of which tcvnc can complete here{why}"
    )]
    Unsupported {
        /// What the upstream offered.
        offered: Vec<u8>,
        /// Extra explanation.
        why: String,
    },
}

/// The client has our version and we have theirs.
#[derive(Debug)]
pub struct Greeted {
    /// The version both sides use with this client.
    pub version: Version,
}

/// The client proved the local password; its SecurityResult is still owed.
#[derive(Debug)]
pub struct Authenticated {
    /// The client's version.
    pub version: Version,
}

/// Both handshakes are complete: bytes may flow. Only this module makes one.
#[derive(Debug)]
pub struct Ready {
    /// What was negotiated, for the log.
    pub security: &'static str,
}

impl Ready {
    /// For targets marked `transparent`: no RFB handling at all, a pure byte bridge.
    pub fn transparent() -> Ready {
        Ready {
            security: "transparent",
        }
    }
}

/// Sends our ProtocolVersion (3.8) and reads the client's.
///
/// # Errors
/// [`Error::NotRfb`] when the client sends something else.
pub async fn greet<C: RfbIo>(client: &mut C) -> Result<Greeted, Error> {
    client.write_all(Version::V3_8.bytes()).await?;
    let mut v = [0u8; 12];
    client.read_exact(&mut v).await?;
    match Version::parse(&v) {
        Some(version) => Ok(Greeted { version }),
        None => Err(Error::NotRfb(
            String::from_utf8_lossy(&v)
                .chars()
                .map(|c| if c.is_control() { '.' } else { c })
                .collect(),
        )),
    }
}

fn reason_bytes(code: &[u8], reason: &str) -> Vec<u8> {
    let reason: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT as usize / 4)
        .collect();
    let mut out = code.to_vec();
    out.extend_from_slice(&(reason.len() as u32).to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
    out
}

/// The bytes that refuse a client before reading anything from it: tcvnc announces
/// RFB 3.3, where the server picks the security type, and picks "invalid" with `reason`.
/// Every viewer answers a 3.3 server in 3.3 and reads the reason; nothing needs to be
/// read first, so a refused connection is held for no handshake.
pub(crate) fn refusal_unread(reason: &str) -> Vec<u8> {
    let mut out = Version::V3_3.bytes().to_vec();
    out.extend_from_slice(&reason_bytes(&0u32.to_be_bytes(), reason));
    out
}

impl Greeted {
    /// Refuses the client before security negotiation, with `reason` (3.3: security type
    /// 0 + reason; 3.7 and 3.8: zero security types + reason).
    ///
    /// # Errors
    /// I/O.
    pub async fn refuse<C: RfbIo>(&self, client: &mut C, reason: &str) -> Result<(), Error> {
        let bytes = match self.version {
            Version::V3_3 => reason_bytes(&0u32.to_be_bytes(), reason),
            Version::V3_7 | Version::V3_8 => reason_bytes(&[0], reason),
        };
        client.write_all(&bytes).await?;
        Ok(())
    }

    /// Authenticates the client with the local VNC password, before anything is spent
    /// upstream. The attempt is charged to `guard` before the challenge is issued; a
    /// refused attempt is told why and how long to wait, and a wrong password is answered
    /// at once (the back-off applies to the next attempt, never as a silent delay).
    ///
    /// # Errors
    /// [`Error::ClientAuthFailed`] or [`Error::Throttled`] (the client was told),
    /// protocol or I/O errors.
    pub async fn authenticate<C: RfbIo>(
        self,
        client: &mut C,
        password: &Secret,
        guard: &Guard,
        peer: IpAddr,
        target: &str,
    ) -> Result<Authenticated, Error> {
        self.authenticate_any(client, &[password], guard, peer, target)
            .await
            .map(|(a, _)| a)
    }

    /// [`Greeted::authenticate`] against several passwords (console mode's control and
    /// view-only ones): also returns which one the client gave (its index).
    ///
    /// # Errors
    /// As [`Greeted::authenticate`].
    pub async fn authenticate_any<C: RfbIo>(
        self,
        client: &mut C,
        passwords: &[&Secret],
        guard: &Guard,
        peer: IpAddr,
        target: &str,
    ) -> Result<(Authenticated, usize), Error> {
        let attempt = match guard.begin(peer, target) {
            Ok(a) => a,
            Err(refused) => {
                self.refuse(client, &refused.to_string()).await?;
                return Err(Error::Throttled(refused));
            }
        };
        offer_one(client, self.version, VNC_AUTH).await?;
        let challenge: [u8; 16] = rand::random();
        client.write_all(&challenge).await?;
        let mut answer = [0u8; 16];
        client.read_exact(&mut answer).await?;
        let authed = Authenticated {
            version: self.version,
        };
        let matched = passwords.iter().position(|p| {
            auth::matches(&auth::response(p.expose().as_bytes(), &challenge), &answer)
        });
        if let Some(i) = matched {
            attempt.succeed();
            Ok((authed, i))
        } else {
            let backoff = attempt.fail();
            tracing::warn!(%peer, target, backoff_s = backoff.as_secs(), "wrong VNC password");
            authed
                .refuse(client, "authentication failed: wrong password")
                .await?;
            Err(Error::ClientAuthFailed)
        }
    }
}

impl Authenticated {
    /// SecurityResult "failed", with `reason` for 3.8 clients.
    ///
    /// # Errors
    /// I/O.
    pub async fn refuse<C: RfbIo>(&self, client: &mut C, reason: &str) -> Result<(), Error> {
        let bytes = match self.version {
            Version::V3_8 => reason_bytes(&1u32.to_be_bytes(), reason),
            Version::V3_3 | Version::V3_7 => 1u32.to_be_bytes().to_vec(),
        };
        client.write_all(&bytes).await?;
        Ok(())
    }
}

/// What the upstream server said first.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamOffer {
    /// The version spoken with the upstream.
    pub version: Version,
    /// Offered security types (3.3: the one the server chose).
    pub types: Vec<u8>,
}

async fn read_reason<U: RfbIo>(up: &mut U) -> Result<String, Error> {
    let mut len = [0u8; 4];
    up.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > MAX_REASON {
        return Err(Error::Protocol(format!(
            "failure reason of {len} bytes exceeds {MAX_REASON}"
        )));
    }
    let mut buf = vec![0u8; len as usize];
    up.read_exact(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf)
        .chars()
        .filter(|c| !c.is_control())
        .collect())
}

/// Reads the upstream's version, answers it, and reads the security types it offers.
///
/// # Errors
/// [`Error::UpstreamRefused`] with the server's reason, protocol or I/O errors.
pub(crate) async fn upstream_start<U: RfbIo>(up: &mut U) -> Result<UpstreamOffer, Error> {
    let mut v = [0u8; 12];
    up.read_exact(&mut v).await?;
    let version = Version::parse(&v).ok_or_else(|| {
        Error::Protocol(format!(
            "the console did not send an RFB version (got {:?})",
            String::from_utf8_lossy(&v)
        ))
    })?;
    up.write_all(version.bytes()).await?;
    let types = match version {
        Version::V3_3 => {
            let mut t = [0u8; 4];
            up.read_exact(&mut t).await?;
            match u32::from_be_bytes(t) {
                0 => return Err(Error::UpstreamRefused(read_reason(up).await?)),
                n @ 1..=255 => vec![n as u8],
                n => {
                    return Err(Error::Protocol(format!(
                        "security type {n} from an RFB 3.3 server"
                    )))
                }
            }
        }
        Version::V3_7 | Version::V3_8 => {
            let mut n = [0u8];
            up.read_exact(&mut n).await?;
            if n[0] == 0 {
                return Err(Error::UpstreamRefused(read_reason(up).await?));
            }
            let mut types = vec![0u8; usize::from(n[0])];
            up.read_exact(&mut types).await?;
            types
        }
    };
    Ok(UpstreamOffer { version, types })
}

async fn upstream_result<U: RfbIo>(up: &mut U, version: Version) -> Result<(), Error> {
    let mut r = [0u8; 4];
    up.read_exact(&mut r).await?;
    match u32::from_be_bytes(r) {
        0 => Ok(()),
        _ if version == Version::V3_8 => {
            Err(Error::UpstreamAuthFailed(Some(read_reason(up).await?)))
        }
        _ => Err(Error::UpstreamAuthFailed(None)),
    }
}

/// Completes the upstream's security itself: None when offered, else VNC Authentication
/// with `password`.
///
/// # Errors
/// [`Error::UpstreamNeedsPassword`], [`Error::Unsupported`], authentication failures.
pub(crate) async fn upstream_authenticate<U: RfbIo>(
    up: &mut U,
    offer: &UpstreamOffer,
    password: Option<&Secret>,
) -> Result<&'static str, Error> {
    let chosen = if offer.types.contains(&NONE) {
        NONE
    } else if offer.types.contains(&VNC_AUTH) {
        if password.is_none() {
            return Err(Error::UpstreamNeedsPassword);
        }
        VNC_AUTH
    } else {
        return Err(Error::Unsupported {
            offered: offer.types.clone(),
            why: " (tcvnc completes None or VNC Authentication)".into(),
        });
    };
    if offer.version != Version::V3_3 {
        up.write_all(&[chosen]).await?;
    }
    if chosen == VNC_AUTH {
        let mut challenge = [0u8; 16];
        up.read_exact(&mut challenge).await?;
        let pw = password.map(|p| p.expose().as_bytes()).unwrap_or_default();
        up.write_all(&auth::response(pw, &challenge)).await?;
        upstream_result(up, offer.version).await?;
        Ok("VNC Authentication by tcvnc")
    } else {
        if offer.version == Version::V3_8 {
            upstream_result(up, offer.version).await?;
        }
        Ok("None")
    }
}

impl Greeted {
    /// Console mode, without a local password: security type None, then SecurityResult
    /// OK (3.8). The client's ClientInit comes next; tcvnc answers with its own ServerInit.
    ///
    /// # Errors
    /// I/O, or a client that chose another type (told).
    pub async fn accept<C: RfbIo>(self, client: &mut C) -> Result<Ready, Error> {
        offer_one(client, self.version, NONE).await?;
        if self.version == Version::V3_8 {
            client.write_all(&0u32.to_be_bytes()).await?;
        }
        Ok(Ready { security: "None" })
    }
}

/// Console mode's side of the console after security: ClientInit (shared, so another
/// client of the same server is not cut off), then the console's ServerInit, its name
/// read up to [`MAX_TEXT`] bytes.
///
/// # Errors
/// I/O, or a name over the bound.
pub(crate) async fn upstream_init<U: RfbIo>(up: &mut U) -> Result<ServerInit, Error> {
    up.write_all(&[1]).await?;
    let mut head = [0u8; 24];
    up.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[20], head[21], head[22], head[23]]);
    if len > MAX_TEXT {
        return Err(Error::Protocol(format!(
            "the console's desktop name is {len} bytes long (at most {MAX_TEXT})"
        )));
    }
    let mut name = vec![0u8; len as usize];
    up.read_exact(&mut name).await?;
    let mut pf = [0u8; 16];
    pf.copy_from_slice(&head[4..20]);
    Ok(ServerInit {
        width: u16::from_be_bytes([head[0], head[1]]),
        height: u16::from_be_bytes([head[2], head[3]]),
        format: PixelFormat::from_bytes(&pf),
        name: String::from_utf8_lossy(&name).into_owned(),
    })
}

impl Authenticated {
    /// The client authenticated locally and the upstream is done: SecurityResult OK.
    ///
    /// # Errors
    /// I/O.
    pub async fn finish<C: RfbIo>(self, client: &mut C) -> Result<Ready, Error> {
        client.write_all(&0u32.to_be_bytes()).await?;
        Ok(Ready {
            security: "VNC Authentication (local password)",
        })
    }
}

/// Offers the client exactly `kind` and reads its choice (3.7/3.8); 3.3 is told.
async fn offer_one<C: RfbIo>(client: &mut C, version: Version, kind: u8) -> Result<(), Error> {
    match version {
        Version::V3_3 => client.write_all(&u32::from(kind).to_be_bytes()).await?,
        Version::V3_7 | Version::V3_8 => {
            client.write_all(&[1, kind]).await?;
            let mut choice = [0u8];
            client.read_exact(&mut choice).await?;
            if choice[0] != kind {
                if version == Version::V3_8 {
                    client
                        .write_all(&reason_bytes(
                            &1u32.to_be_bytes(),
                            "unsupported security type",
                        ))
                        .await?;
                }
                return Err(Error::Protocol(format!(
                    "client chose security type {} (offered {kind})",
                    choice[0]
                )));
            }
        }
    }
    Ok(())
}

impl Greeted {
    /// Without a local password: give the client None when tcvnc can complete the
    /// upstream's security itself, else relay VNC Authentication (challenge and answer),
    /// else relay the upstream's types as they are when both sides speak one version.
    ///
    /// # Errors
    /// Handshake failures; when the client can still be told, it was.
    pub(crate) async fn negotiate<C: RfbIo, U: RfbIo>(
        self,
        client: &mut C,
        up: &mut U,
        offer: &UpstreamOffer,
        upstream_password: Option<&Secret>,
    ) -> Result<Ready, Error> {
        let can_complete = offer.types.contains(&NONE)
            || (offer.types.contains(&VNC_AUTH) && upstream_password.is_some());
        if can_complete {
            if let Err(e) = upstream_authenticate(up, offer, upstream_password).await {
                self.refuse(client, &e.to_string()).await?;
                return Err(e);
            }
            offer_one(client, self.version, NONE).await?;
            if self.version == Version::V3_8 {
                client.write_all(&0u32.to_be_bytes()).await?;
            }
            return Ok(Ready {
                security: "None (tcvnc completed the console's security)",
            });
        }
        if offer.types.contains(&VNC_AUTH) {
            // Pass-through: the viewer's password answers the console's challenge.
            offer_one(client, self.version, VNC_AUTH).await?;
            if offer.version != Version::V3_3 {
                up.write_all(&[VNC_AUTH]).await?;
            }
            let mut challenge = [0u8; 16];
            up.read_exact(&mut challenge).await?;
            client.write_all(&challenge).await?;
            let mut answer = [0u8; 16];
            client.read_exact(&mut answer).await?;
            up.write_all(&answer).await?;
            return match upstream_result(up, offer.version).await {
                Ok(()) => {
                    client.write_all(&0u32.to_be_bytes()).await?;
                    Ok(Ready {
                        security: "VNC Authentication (passed through)",
                    })
                }
                Err(e) => {
                    let reason = match &e {
                        Error::UpstreamAuthFailed(Some(r)) if !r.is_empty() => {
                            format!("authentication failed: {r}")
                        }
                        _ => "authentication failed: wrong password".to_owned(),
                    };
                    Authenticated {
                        version: self.version,
                    }
                    .refuse(client, &reason)
                    .await?;
                    Err(e)
                }
            };
        }
        // Some other scheme: relay as is, possible only when both sides speak one version.
        if self.version == offer.version {
            match self.version {
                Version::V3_3 => {
                    client
                        .write_all(&u32::from(offer.types[0]).to_be_bytes())
                        .await?;
                }
                Version::V3_7 | Version::V3_8 => {
                    let mut list = vec![offer.types.len() as u8];
                    list.extend_from_slice(&offer.types);
                    client.write_all(&list).await?;
                    let mut choice = [0u8];
                    client.read_exact(&mut choice).await?;
                    up.write_all(&choice).await?;
                }
            }
            return Ok(Ready {
                security: "relayed as is",
            });
        }
        let e = Error::Unsupported {
            offered: offer.types.clone(),
            why: format!(
                " (the viewer speaks RFB {:?} and the console {:?}; use a viewer that speaks {:?})",
                self.version, offer.version, offer.version
            ),
        };
        self.refuse(client, &e.to_string()).await?;
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An in-memory peer: reads come from `input`, writes go to `output`.
    struct Mem {
        input: std::collections::VecDeque<u8>,
        output: Vec<u8>,
    }

    impl Mem {
        fn new(input: &[u8]) -> Self {
            Mem {
                input: input.iter().copied().collect(),
                output: Vec::new(),
            }
        }
    }

    impl RfbIo for Mem {
        async fn read_exact<'a>(&'a mut self, buf: &'a mut [u8]) -> std::io::Result<()> {
            if self.input.len() < buf.len() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            for b in buf.iter_mut() {
                *b = self.input.pop_front().unwrap_or_default();
            }
            Ok(())
        }
        async fn write_all<'a>(&'a mut self, data: &'a [u8]) -> std::io::Result<()> {
            self.output.extend_from_slice(data);
            Ok(())
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .map(|rt| rt.block_on(f))
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    /// A 4 GiB reason length is refused without allocating it.
    #[test]
    fn huge_reason_refused() {
        let mut input = b"RFB 003.008\n".to_vec();
        input.push(0);
        input.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut up = Mem::new(&input);
        let err = block_on(upstream_start(&mut up)).expect_err("refused");
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    /// Reasons reach each client version in its own form.
    #[test]
    fn refusal_forms() {
        for (v, want) in [
            (
                Version::V3_3,
                [&0u32.to_be_bytes()[..], &3u32.to_be_bytes(), b"why"].concat(),
            ),
            (
                Version::V3_7,
                [&[0u8][..], &3u32.to_be_bytes(), b"why"].concat(),
            ),
            (
                Version::V3_8,
                [&[0u8][..], &3u32.to_be_bytes(), b"why"].concat(),
            ),
        ] {
            let mut c = Mem::new(&[]);
            block_on(Greeted { version: v }.refuse(&mut c, "why")).expect("written");
            assert_eq!(c.output, want, "{v:?}");
        }
        let mut c = Mem::new(&[]);
        block_on(
            Authenticated {
                version: Version::V3_8,
            }
            .refuse(&mut c, "no"),
        )
        .expect("written");
        assert_eq!(
            c.output,
            [&1u32.to_be_bytes()[..], &2u32.to_be_bytes(), b"no"].concat()
        );
        let mut c = Mem::new(&[]);
        block_on(
            Authenticated {
                version: Version::V3_7,
            }
            .refuse(&mut c, "no"),
        )
        .expect("written");
        assert_eq!(c.output, 1u32.to_be_bytes());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Arbitrary bytes from a client: greet never panics and reads at most 12 bytes.
        #[test]
        fn greet_never_panics(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut c = Mem::new(&input);
            let r = block_on(greet(&mut c));
            prop_assert!(input.len() - c.input.len() <= 12);
            if let Ok(g) = r {
                // A greeted client can always be refused.
                block_on(g.refuse(&mut c, "x")).expect("refuse");
            }
        }

        /// Arbitrary bytes from an upstream: the whole upstream side never panics and
        /// never reads more than it was given plus bounded reasons.
        #[test]
        fn upstream_never_panics(
            head in prop_oneof![Just(b"RFB 003.008\n".to_vec()), Just(b"RFB 003.003\n".to_vec()), Just(b"RFB 003.007\n".to_vec()), proptest::collection::vec(any::<u8>(), 12)],
            rest in proptest::collection::vec(any::<u8>(), 0..300),
            password in proptest::option::of("[a-z]{0,10}"),
        ) {
            let input = [head, rest].concat();
            let mut up = Mem::new(&input);
            if let Ok(offer) = block_on(upstream_start(&mut up)) {
                prop_assert!(!offer.types.is_empty());
                let pw = password.map(Secret::new);
                let _ = block_on(upstream_authenticate(&mut up, &offer, pw.as_ref()));
            }
        }

        /// Arbitrary viewer and console bytes through the full negotiation: no panic.
        #[test]
        fn negotiate_never_panics(
            client_in in proptest::collection::vec(any::<u8>(), 0..64),
            up_in in proptest::collection::vec(any::<u8>(), 0..128),
            types in proptest::collection::vec(any::<u8>(), 1..5),
            v in 0..3u8,
        ) {
            let version = [Version::V3_3, Version::V3_7, Version::V3_8][usize::from(v)];
            let offer = UpstreamOffer { version, types };
            let mut c = Mem::new(&client_in);
            let mut up = Mem::new(&up_in);
            let _ = block_on(Greeted { version }.negotiate(&mut c, &mut up, &offer, None));
        }
    }
}
