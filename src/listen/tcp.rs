//! The raw TCP listener of one target: accept, tune the socket, spawn a session.

use std::sync::Arc;
use std::time::Duration;

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
        let (stream, peer) = tokio::select! {
            _ = app.shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, %instance, "accept failed; if this is EMFILE, raise the file descriptor limit");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
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
