//! RDP inline proxy.
//!
//! Layout (house style 2, 15, 16): the sans-IO core — [`framing`], [`negotiation`],
//! [`channels`], [`client_info`], [`accept`] (the contractor's MCS sequence up to the logon,
//! answered by Sekisho), [`connect`] (the same sequence toward the target), [`mitm`] (the
//! relay phase), [`credssp`] (NLA as server, contractor leg), [`nla_client`] (NLA as client,
//! server leg) — has no tokio and is unit- and property-tested. The async adapters are thin:
//! [`contractor_leg`] and [`server_leg`] move bytes for those machines, [`handler`] orders
//! the steps (authenticate first, then dial), and [`session`] relays, the only module that
//! talks to the recording.

pub mod accept;
pub mod channels;
pub mod client_info;
pub mod connect;
pub mod contractor_leg;
pub mod credssp;
pub mod error;
pub mod framing;
pub mod handler;
pub mod link;
pub mod mitm;
pub mod negotiation;
pub mod nla_client;
pub mod relay;
pub mod server_leg;
pub mod server_tls;
pub mod session;
#[cfg(test)]
mod test_pdus;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::services::Services;

/// Accepts RDP connections on `listener` until `shutdown`; each runs in its own task, tracked
/// by `services.tasks()` so shutdown waits for recordings to be sealed.
pub async fn serve(
    listener: TcpListener,
    services: Arc<Services>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // `[limits] rdp_connections`, handshaking or relaying; beyond it new connections wait in
    // the accept queue.
    let limit = Arc::new(Semaphore::new(
        services.inventory().limits().rdp_connections as usize,
    ));
    info!(addr = %listener.local_addr()?, "RDP front door listening");
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            p = Arc::clone(&limit).acquire_owned() => p?,
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "RDP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        stream.set_nodelay(true).ok();
        let services2 = Arc::clone(&services);
        services.tasks().spawn(
            async move {
                if let Err(e) = handler::handle(stream, peer, services2).await {
                    warn!(error = %format!("{e:#}"), "RDP connection ended with an error");
                }
                drop(permit);
            }
            .instrument(info_span!("rdp-connection", %peer)),
        );
    }
}
