//! The raw TCP listener of one target: accept, tune the socket, spawn a session.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::bridge::ClientIo;
use crate::daemon::App;
use crate::session::{self, Via};

/// Accepts native viewers for `instance` until shutdown.
pub async fn serve(app: Arc<App>, instance: String, listener: TcpListener) {
    let Some(target) = app.config.target(&instance).cloned() else {
        tracing::error!(%instance, "no target for this listener");
        return;
    };
    loop {
        let Some((stream, peer)) = crate::net::accept(&listener, &app.shutdown, &instance).await
        else {
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
