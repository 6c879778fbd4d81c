//! How a bridged session ends: the label for metrics, the words for the log, and what
//! each side is sent (close codes and reasons; the gateway always hears why).

use tokio::io::{AsyncRead, AsyncWrite};

use crate::bridge::{End, Limits};
use crate::client::ClientIo;
use crate::outcome;

pub(super) fn close_label(end: &End, shutting_down: bool) -> &'static str {
    match end {
        End::ClientClosed => "viewer_closed",
        End::ClientLost(_) => "viewer_lost",
        End::UpstreamClosed(_) => "console_closed",
        End::UpstreamLost(_) => "console_lost",
        End::PingTimeout => "ping_timeout",
        End::Idle => "idle_timeout",
        End::MaxDuration => "max_duration",
        End::Cancelled if shutting_down => "shutdown",
        End::Cancelled => "taken_over",
    }
}

pub(super) fn describe(end: &End, shutting_down: bool) -> String {
    match end {
        End::ClientClosed => "viewer closed".into(),
        End::ClientLost(e) => format!("viewer lost: {e}"),
        End::UpstreamClosed(Some((code, reason))) => format!("console closed ({code} {reason})"),
        End::UpstreamClosed(None) => "console closed".into(),
        End::UpstreamLost(e) => format!("console connection lost: {e}"),
        End::PingTimeout => "console stopped answering pings".into(),
        End::Idle => "idle timeout".into(),
        End::MaxDuration => "maximum session length reached".into(),
        End::Cancelled if shutting_down => "shutdown".into(),
        End::Cancelled => "taken over by another viewer".into(),
    }
}

pub(super) async fn close<W, U>(
    client: &mut ClientIo<W>,
    up: &mut crate::ws::WsIo<U>,
    end: &End,
    shutting_down: bool,
    limits: Limits,
) where
    W: AsyncRead + AsyncWrite + Unpin + Send,
    U: AsyncRead + AsyncWrite + Unpin,
{
    use outcome::*;
    match end {
        End::ClientClosed => {
            up.close(CLOSE_NORMAL, "viewer disconnected").await;
            // Answer a browser's close frame (RFC 6455 §5.5.1), so it sees a clean close.
            client.close(CLOSE_NORMAL, "").await;
        }
        End::ClientLost(_) => up.close(CLOSE_NORMAL, "viewer disconnected").await,
        End::UpstreamClosed(Some((1000, _))) | End::UpstreamClosed(None) => {
            client
                .close(CLOSE_NORMAL, "console closed the connection")
                .await;
            up.close(CLOSE_NORMAL, "").await;
        }
        End::UpstreamClosed(Some((code, reason))) => {
            client
                .close(
                    CLOSE_ERROR,
                    &format!("console closed the connection ({code} {reason})"),
                )
                .await;
            up.close(CLOSE_NORMAL, "").await;
        }
        End::UpstreamLost(_) => {
            client
                .close(CLOSE_ERROR, "connection to the console lost")
                .await
        }
        End::PingTimeout => {
            client
                .close(
                    CLOSE_ERROR,
                    &format!(
                        "the console stopped answering pings ({} unanswered)",
                        limits.max_unanswered_pings
                    ),
                )
                .await;
        }
        End::Idle => {
            let reason = format!("idle for {} s", limits.idle_timeout.as_secs());
            up.close(CLOSE_NORMAL, &reason).await;
            client.close(CLOSE_NORMAL, &reason).await;
        }
        End::MaxDuration => {
            let reason = "maximum session length reached";
            up.close(CLOSE_NORMAL, reason).await;
            client.close(CLOSE_NORMAL, reason).await;
        }
        End::Cancelled if shutting_down => {
            up.close(CLOSE_GOING_AWAY, "tcvnc is shutting down").await;
            client
                .close(CLOSE_GOING_AWAY, "tcvnc is shutting down")
                .await;
        }
        End::Cancelled => {
            up.close(CLOSE_NORMAL, "console taken over").await;
            client
                .close(CLOSE_NORMAL, "console taken over by another viewer")
                .await;
        }
    }
}
