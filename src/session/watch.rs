//! Noticing a client that leaves while tcvnc works for it (claiming the console, waiting
//! for budget, minting, dialling, the console's handshake), when nothing else reads from
//! it. A viewer that has sent its version waits for the security types and sends nothing,
//! so the only thing to see is its end: EOF or a reset on TCP, a close frame (answered at
//! once) or a broken stream on a websocket. Bytes that do arrive are kept for the
//! handshake and watching stops (a client that speaks is there).

use tokio::io::{AsyncRead, AsyncWrite};

use crate::client::ClientIo;
use crate::outcome::{Gone, CLOSE_NORMAL};
use crate::ws::Recv;

/// Resolves when the client is gone; pends forever while it is there (or once it sent
/// data). Cancel-safe: dropping it loses nothing.
pub async fn gone<W>(client: &mut ClientIo<W>) -> Gone
where
    W: AsyncRead + AsyncWrite + Unpin + Send,
{
    match client {
        ClientIo::Tcp(s) => {
            let mut probe = [0u8; 1];
            match s.peek(&mut probe).await {
                Ok(0) => Gone::Closed,
                Ok(_) => std::future::pending().await,
                Err(e) => Gone::Lost(e.to_string()),
            }
        }
        ClientIo::Ws(ws) => match ws.recv().await {
            Recv::Data(d) => {
                ws.unread(d);
                std::future::pending().await
            }
            Recv::Closed(_) => {
                // Answer the close frame (RFC 6455 §5.5.1) at once.
                ws.close(CLOSE_NORMAL, "").await;
                Gone::Closed
            }
            Recv::Failed(e) => Gone::Lost(e),
        },
    }
}
