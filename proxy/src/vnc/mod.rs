//! VNC graphical consoles ([RFC 6143]): the contractor's viewer connects to Sekisho's VNC
//! listener with a one-time ticket as the VNC password; Sekisho asks the policy, connects to
//! the VM's console on its hypervisor and relays, recording the screen and input and cutting
//! the clipboard.
//!
//! - [`tickets`]: the one-time ticket store (issued by the SSH front door's `console TARGET`).
//! - [`handler`]: one viewer connection: RFB server handshake, policy, upstream handshake.
//! - [`session`]: the recorded relay.
//! - [`encodings`]: what the console is offered (the viewer's decodable encodings, ZRLE first).
//! - [`qmp`]: one-time console passwords set through QEMU's monitor (`target.vnc_qmp`).
//!
//! The RFB codec itself is `player::rfb` (sans-IO, shared with the player).
//!
//! [RFC 6143]: https://www.rfc-editor.org/rfc/rfc6143

mod conn;
mod encodings;
pub mod handler;
mod hold;
pub mod qmp;
pub mod session;
pub mod tickets;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::services::Services;
use tickets::TicketStore;

/// Accepts viewers on `listener` until `shutdown`, with the instance's shared ticket store.
pub async fn serve(
    listener: TcpListener,
    services: Arc<Services>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_with(listener, services, tickets::shared(), shutdown).await
}

/// [`serve`] with an explicit ticket store.
pub async fn serve_with(
    listener: TcpListener,
    services: Arc<Services>,
    tickets: Arc<TicketStore>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // `[limits] vnc_connections`: a console session costs two sockets, a recording and up to
    // two `MAX_MESSAGE_LEN` buffers.
    let limit = Arc::new(Semaphore::new(
        services.inventory().limits().vnc_connections as usize,
    ));
    info!(addr = %listener.local_addr()?, "VNC listener started");
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(v) => v,
                Err(e) => {
                    warn!(error = %e, "VNC accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            warn!(client_ip = %peer.ip(), "Too many VNC connections; refusing");
            drop(stream);
            continue;
        };
        stream.set_nodelay(true).ok();
        let services2 = Arc::clone(&services);
        let tickets = Arc::clone(&tickets);
        let shutdown = shutdown.clone();
        let span = info_span!("vnc", client_ip = %peer.ip());
        services.tasks().spawn(
            async move {
                let _permit = permit;
                handler::handle(stream, peer, services2, tickets, shutdown).await;
            }
            .instrument(span),
        );
    }
}
