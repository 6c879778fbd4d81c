//! The raw TCP listener of one target: accept, tune the socket, spawn a session with the
//! target as the configuration in force describes it.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::client::ClientIo;
use crate::session::{self, Via};

/// Accepts native viewers for `instance` until shutdown or `stop` (the target was
/// removed by a reload).
pub async fn serve(
    app: Arc<App>,
    instance: String,
    listener: TcpListener,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            a = crate::net::accept(&listener, &app.shutdown, &instance) => a,
            () = stop.cancelled() => None,
        };
        let Some((stream, peer)) = accepted else {
            return;
        };
        let Some(target) = app.config().target(&instance).cloned() else {
            tracing::info!(%instance, "target removed; listener closed");
            return;
        };
        crate::net::configure_socket(&stream);
        let app2 = app.clone();
        let target = target.clone();
        app.shutdown.spawn(session::serve::<tokio::net::TcpStream>(
            app2,
            ClientIo::Tcp(stream),
            peer,
            Via::Tcp,
            target,
        ));
    }
}
