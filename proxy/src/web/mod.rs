//! The web UI (`listen.web`): auditors and security staff browse sessions, verify and download
//! recordings, review denials and stop live sessions; contractors see their own sessions.
//!
//! Server-rendered HTML with a small stylesheet, no JavaScript framework. Every handler checks
//! the caller's role itself (see [`auth::Caller`]); a session the caller may not see is a 404,
//! so ids cannot be probed. Served over TLS with Sekisho's identity; without one, only on a
//! loopback address.

mod auth;
mod i18n;
mod pages;
mod playback;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Result;
use axum::Router;
use axum::routing::{get, post};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, trace, warn};

use crate::services::Services;

/// How long a client has to finish the TLS handshake: a stalled handshake must not hold a task.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The client's address, attached to every request by [`serve`] (rate limits per address).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Shared state of the web UI.
pub struct WebState {
    services: Arc<Services>,
    /// Logged-in browser sessions and the login rate limiter.
    auth: auth::AuthStore,
    /// The instance's public key: recordings signed by any other key are tampered.
    verifying_key: Option<ed25519_dalek::VerifyingKey>,
    /// Whether cookies get `Secure` (served over TLS).
    secure_cookies: bool,
    /// Catalogue errors seen by web handlers (exported in `/metrics`).
    catalogue_errors: AtomicU64,
    /// The last terminal recording opened by the player, keyed by session and file size (a
    /// live recording grows): decoding builds seek checkpoints once, not on every slider move.
    player_cache: std::sync::Mutex<Option<PlayerCacheEntry>>,
    /// Decoded graphical recordings at the positions they reached (seeking, playing).
    replays: std::sync::Mutex<playback::ReplayCache>,
    /// Matrix card challenges and lockouts: the process-wide guard in service, so failures
    /// over SSH and over the web count together.
    matrix: Arc<crate::auth::matrix_card::MatrixGuard>,
    /// Failed logins and lockouts: the process-wide throttle in service, shared with SSH
    /// and RDP.
    throttle: Arc<crate::auth::throttle::Throttle>,
    /// Matrix card passes: the process-wide registry in service (the VNC and RDP doors read
    /// it).
    second_factors: Arc<crate::auth::second_factor::SecondFactors>,
}

/// The authentication state a [`WebState`] shares with the other doors (or, in tests, keeps
/// to itself).
struct SharedAuth {
    matrix: Arc<crate::auth::matrix_card::MatrixGuard>,
    throttle: Arc<crate::auth::throttle::Throttle>,
    second_factors: Arc<crate::auth::second_factor::SecondFactors>,
}

/// One decoded recording kept for the player: (session, file size, replay).
type PlayerCacheEntry = (
    policy::SessionId,
    u64,
    Arc<player::terminal::TerminalReplay>,
);

impl WebState {
    /// The web UI's state over `services`. `secure_cookies` is true when served over TLS.
    pub fn new(services: Arc<Services>, secure_cookies: bool) -> Arc<Self> {
        let key_path = services.inventory().storage().signing_key.clone();
        let verifying_key = match recorder::signing::load(&key_path) {
            Ok(k) => Some(k.verifying_key()),
            Err(e) => {
                warn!(error = %e, "Cannot read the signing key: recordings are checked against the key in their trailer only");
                None
            }
        };
        let shared = SharedAuth {
            matrix: crate::auth::matrix_card::process_guard(),
            throttle: Arc::clone(services.throttle()),
            second_factors: Arc::clone(services.second_factors()),
        };
        Self::build(services, secure_cookies, verifying_key, shared)
    }

    /// Like [`WebState::new`] with an explicit trusted key, and a matrix card guard, throttle
    /// (with the inventory's `[auth]` limits) and card pass registry of its own (tests: one
    /// test's lockout must not leak into another's).
    pub fn with_key(
        services: Arc<Services>,
        secure_cookies: bool,
        verifying_key: Option<ed25519_dalek::VerifyingKey>,
    ) -> Arc<Self> {
        let shared = SharedAuth {
            matrix: Arc::new(crate::auth::matrix_card::MatrixGuard::new()),
            throttle: Arc::new(crate::auth::throttle::Throttle::new(
                *services.inventory().auth(),
            )),
            second_factors: Arc::new(crate::auth::second_factor::SecondFactors::new()),
        };
        Self::build(services, secure_cookies, verifying_key, shared)
    }

    fn build(
        services: Arc<Services>,
        secure_cookies: bool,
        verifying_key: Option<ed25519_dalek::VerifyingKey>,
        shared: SharedAuth,
    ) -> Arc<Self> {
        Arc::new(WebState {
            matrix: shared.matrix,
            throttle: shared.throttle,
            second_factors: shared.second_factors,
            services,
            auth: auth::AuthStore::default(),
            verifying_key,
            secure_cookies,
            catalogue_errors: AtomicU64::new(0),
            player_cache: std::sync::Mutex::new(None),
            replays: std::sync::Mutex::new(playback::ReplayCache::default()),
        })
    }
}

/// The web UI's routes.
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/login/card", get(auth::card_page).post(auth::card_answer))
        .route("/logout", post(auth::logout))
        .route("/lang/{code}", get(pages::set_lang))
        .route("/sessions", get(pages::sessions))
        .route("/sessions/{id}", get(pages::session))
        .route("/sessions/{id}/recording", get(pages::recording))
        .route("/sessions/{id}/kill", post(pages::kill))
        .route("/sessions/{id}/play", get(pages::play))
        .route("/sessions/{id}/screen", get(pages::screen))
        .route("/sessions/{id}/frame", get(playback::frame))
        .route("/sessions/{id}/timeline", get(playback::timeline))
        .route("/sessions/{id}/search", get(playback::search))
        .route("/denials", get(pages::denials))
        .route("/live", get(pages::live))
        .route("/metrics", get(pages::metrics))
        .route("/assets/style.css", get(pages::style))
        .route("/assets/player.js", get(pages::player_js))
        .with_state(state)
}

/// Serves the web UI on `listener` until `shutdown`: over TLS with Sekisho's identity, or,
/// without one, plain HTTP on a loopback address only.
pub async fn serve(
    listener: TcpListener,
    services: Arc<Services>,
    shutdown: CancellationToken,
) -> Result<()> {
    let tls = services.tls_acceptor();
    let local = listener.local_addr()?;
    if tls.is_none() && !local.ip().is_loopback() {
        // Passwords and session cookies must not cross the network in clear; the other front
        // doors keep running, so the web UI stays off until the TLS identity is fixed.
        error!(%local, "No TLS identity: the web UI stays off (plain HTTP is allowed on loopback only)");
        shutdown.cancelled().await;
        return Ok(());
    }
    if tls.is_none() {
        warn!(%local, "No TLS identity: web UI served over plain HTTP on loopback");
    }
    let state = WebState::new(services, tls.is_some());
    let app = router(state);
    let connections = TaskTracker::new();
    info!(%local, tls = tls.is_some(), "Web UI listening");
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "Cannot accept a web connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = app.clone().layer(axum::Extension(ClientAddr(peer.ip())));
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(stream, app, shutdown, peer).await,
                        Ok(Err(e)) => trace!(%peer, error = %e, "Web TLS handshake failed"),
                        Err(_) => trace!(%peer, "Web TLS handshake timed out"),
                    }
                }
                None => serve_connection(tcp, app, shutdown, peer).await,
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, connections.wait()).await;
    info!("Web UI stopped");
    Ok(())
}

async fn serve_connection<I>(io: I, app: Router, shutdown: CancellationToken, peer: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                trace!(%peer, error = %e, "Web connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

#[cfg(test)]
mod tests;
