//! The raw TCP listener of one target: accept, tune the socket, spawn a session with the
//! target as the configuration in force at that accept describes it.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::client::ClientIo;
use crate::session::{self, Via};

/// Accepts native viewers for `instance` until shutdown or `stop` (a reload removed the
/// target or moved its listener). While the config in force has no such target (a
/// socket passed by systemd outlives its target), connections are closed at once.
pub async fn serve(
    app: Arc<App>,
    instance: String,
    listener: TcpListener,
    stop: CancellationToken,
) {
    loop {
        // Cancel-safe: `accept` is; a stopped listener takes no further connection.
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => None,
            a = crate::net::accept(&listener, &app.shutdown, &instance) => a,
        };
        let Some((stream, peer)) = accepted else {
            return;
        };
        let Some(target) = app.config().target(&instance).cloned() else {
            tracing::debug!(%instance, %peer, "no such target in the configuration in force; connection closed");
            continue;
        };
        crate::net::configure_socket(&stream);
        let app2 = app.clone();
        app.shutdown.spawn(session::serve::<tokio::net::TcpStream>(
            app2,
            ClientIo::Tcp(stream),
            peer,
            Via::Tcp,
            target,
            crate::engine::ViewerRole::Control,
        ));
    }
}
