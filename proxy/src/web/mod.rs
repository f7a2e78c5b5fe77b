//! The web UI (`listen.web`): auditors and security staff browse sessions, verify and download
//! recordings, review denials and stop live sessions; contractors see their own sessions.
//!
//! Server-rendered HTML with a small stylesheet, no JavaScript framework. Every handler checks
//! the caller's role itself (see [`auth::Caller`]); a session the caller may not see is a 404,
//! so ids cannot be probed. Served over TLS with Sekisho's identity; without one, only on a
//! loopback address.

mod access;
mod auth;
mod bundle;
mod cookies;
mod denials;
mod denials_csv;
mod export;
mod filters;
mod html;
mod i18n;
mod layout;
mod pages;
mod playback;
mod player_page;
mod reviews;
mod search;
mod session_list;
mod verify_cache;
mod watch;

pub use crate::recordings::MAX_RECORDING_BYTES;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's headers, counted from the connection's start
/// and again from the end of each response (an idle keep-alive connection is closed then).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request may take from its headers to its response's headers: reading the body
/// (a login form) and the handler's work. A recording download streams after that and is
/// not cut. Generous: seeking far into a large graphical recording decodes a lot.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Connections open at once on one listener (web UI or metrics). The UI serves a handful of
/// auditors; each connection holds a task and up to hyper's read buffer (~400 KiB), so this
/// bounds memory to ~100 MiB even when every slot is busy.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections open at once from one client address: a browser opens about six, so this
/// leaves room for several people behind one NAT while one address cannot take every slot.
pub const MAX_CONNECTIONS_PER_ADDR: usize = 32;
/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The web listeners' limits: the constants above, shorter in tests.
#[derive(Debug, Clone, Copy)]
pub struct WebLimits {
    /// See [`TLS_HANDSHAKE_TIMEOUT`].
    pub tls_handshake_timeout: Duration,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`MAX_CONNECTIONS_PER_ADDR`].
    pub max_connections_per_addr: usize,
}

impl Default for WebLimits {
    fn default() -> Self {
        WebLimits {
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
            header_read_timeout: HEADER_READ_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_addr: MAX_CONNECTIONS_PER_ADDR,
        }
    }
}

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
    /// Connections closed at once because every slot was taken (exported in `/metrics`).
    refused_total: AtomicU64,
    /// Connections closed at once because their address had all its slots.
    refused_per_addr: AtomicU64,
    /// The last terminal recording opened by the player, keyed by session and file size (a
    /// live recording grows): decoding builds seek checkpoints once, not on every slider move.
    player_cache: std::sync::Mutex<Option<PlayerCacheEntry>>,
    /// Held while a terminal recording is decoded into `player_cache`: a second request for
    /// the same recording (the page's prefetch and its first `/screen`) waits and finds it
    /// cached instead of decoding it again beside the first.
    player_decoding: tokio::sync::Mutex<()>,
    /// Decoded graphical recordings at the positions they reached (seeking, playing).
    replays: std::sync::Mutex<playback::ReplayCache>,
    /// Followed replays of watched live graphical sessions (the live view).
    live: std::sync::Mutex<watch::LiveCache>,
    /// Verdicts on recording files, by file version: the session page verifies a recording
    /// once, not on every view.
    verified: verify_cache::VerifyCache,
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
            refused_total: AtomicU64::new(0),
            refused_per_addr: AtomicU64::new(0),
            player_cache: std::sync::Mutex::new(None),
            player_decoding: tokio::sync::Mutex::new(()),
            replays: std::sync::Mutex::new(playback::ReplayCache::default()),
            live: std::sync::Mutex::new(watch::LiveCache::default()),
            verified: verify_cache::VerifyCache::default(),
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
        .route("/sessions", get(session_list::sessions))
        .route("/sessions/{id}", get(pages::session))
        .route("/sessions/{id}/recording", get(pages::recording))
        .route("/sessions/{id}/kill", post(pages::kill))
        .route("/sessions/{id}/play", get(player_page::play))
        .route("/sessions/{id}/screen", get(pages::screen))
        .route("/sessions/{id}/frame", get(playback::frame))
        .route("/sessions/{id}/timeline", get(playback::timeline))
        .route("/sessions/{id}/search", get(playback::search))
        .route("/sessions/{id}/bundle", get(bundle::bundle))
        .route("/sessions/{id}/export/{format}", get(export::export))
        .route("/sessions/{id}/watch", get(watch::watch))
        .route("/sessions/{id}/watch/screen", get(watch::screen))
        .route("/sessions/{id}/watch/frame", get(watch::frame))
        .route("/sessions/{id}/watch/leave", post(watch::leave))
        .route("/search", get(search::page_handler))
        .route("/denials", get(denials::denials))
        .route("/denials.csv", get(denials_csv::csv))
        .route("/denials/{id}/review", post(reviews::review))
        .route("/events/{id}/review", post(reviews::review_event))
        .route("/live", get(pages::live))
        .route("/metrics", get(pages::metrics_with_token))
        .route("/assets/style.css", get(pages::style))
        .route("/assets/player.js", get(pages::player_js))
        .route("/assets/watch.js", get(pages::watch_js))
        .route("/assets/favicon.svg", get(pages::favicon))
        .with_state(state)
}

/// The metrics listener's routes: `/metrics` alone, without authentication.
pub fn metrics_router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/metrics", get(pages::metrics))
        .with_state(state)
}

/// Serves the web UI on `listener` until `shutdown`: over TLS with Sekisho's identity, or,
/// without one, plain HTTP on a loopback address only. With `metrics` (`listen.metrics`),
/// serves `/metrics` there too, in plain HTTP, under the same limits.
pub async fn serve(
    listener: TcpListener,
    metrics: Option<TcpListener>,
    services: Arc<Services>,
    shutdown: CancellationToken,
) -> Result<()> {
    let tls = services.tls_acceptor();
    let limits = WebLimits::default();
    let state = WebState::new(services, tls.is_some());
    let ui = serve_ui(listener, Arc::clone(&state), tls, limits, shutdown.clone());
    match metrics {
        Some(metrics) => {
            let app = metrics_router(Arc::clone(&state));
            let scrape = serve_listener(metrics, app, None, Arc::clone(&state), limits, shutdown);
            let (ui, scrape) = tokio::join!(ui, scrape);
            ui.and(scrape)
        }
        None => ui.await,
    }
}

async fn serve_ui(
    listener: TcpListener,
    state: Arc<WebState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: WebLimits,
    shutdown: CancellationToken,
) -> Result<()> {
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
    let app = router(Arc::clone(&state));
    serve_listener(listener, app, tls, state, limits, shutdown).await
}

/// Accepts connections on `listener` and serves `app` on each until `shutdown`, within
/// `limits`: a connection past a cap is closed at once (the accept loop never waits for a
/// slot, so one client holding its slots cannot stall the others).
async fn serve_listener(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<WebState>,
    limits: WebLimits,
    shutdown: CancellationToken,
) -> Result<()> {
    let local = listener.local_addr()?;
    let request_timeout = limits.request_timeout;
    let app = app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            within(request_timeout, req, next)
        },
    ));
    let slots = Arc::new(ConnectionSlots::new(limits));
    let connections = TaskTracker::new();
    info!(%local, tls = tls.is_some(), "Web listener accepting");
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
        let slot = match slots.take(peer.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                // Closed without a word: a flood must not cost more than the accept.
                let counter = match cap {
                    Cap::Total => &state.refused_total,
                    Cap::PerAddr => &state.refused_per_addr,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                trace!(%peer, ?cap, "Web connection refused: over the cap");
                drop(tcp);
                continue;
            }
        };
        let app = app.clone().layer(axum::Extension(ClientAddr(peer.ip())));
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, app, limits, shutdown, peer).await
                        }
                        Ok(Err(e)) => trace!(%peer, error = %e, "Web TLS handshake failed"),
                        Err(_) => trace!(%peer, "Web TLS handshake timed out"),
                    }
                }
                None => serve_connection(tcp, app, limits, shutdown, peer).await,
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, connections.wait()).await;
    info!(%local, "Web listener stopped");
    Ok(())
}

/// Runs a request within `limit`: reading its body and the handler's work. Past it the
/// client gets 408 and the connection is closed.
async fn within(
    limit: Duration,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            trace!("Web request timed out");
            (
                axum::http::StatusCode::REQUEST_TIMEOUT,
                [(axum::http::header::CONNECTION, "close")],
                "request timed out\n",
            )
                .into_response()
        }
    }
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cap {
    Total,
    PerAddr,
}

/// The connection slots of one listener: in total and per client address.
struct ConnectionSlots {
    total: Arc<tokio::sync::Semaphore>,
    /// Open connections by address.
    /// INVARIANT: holds only addresses with at least one open connection (a [`Slot`] removes
    /// its address when it was the last), so its size is bounded by `max_connections`.
    per_addr: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    max_per_addr: usize,
}

/// One connection's slot, given back when dropped.
struct Slot {
    _total: tokio::sync::OwnedSemaphorePermit,
    per_addr: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ConnectionSlots {
    fn new(limits: WebLimits) -> Self {
        ConnectionSlots {
            total: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
            per_addr: Arc::new(std::sync::Mutex::new(HashMap::new())),
            max_per_addr: limits.max_connections_per_addr,
        }
    }

    /// A slot for a connection from `ip`, or the cap it would pass.
    fn take(&self, ip: IpAddr) -> std::result::Result<Slot, Cap> {
        let mut per_addr = self.per_addr.lock().map_err(|_| Cap::Total)?;
        let open = per_addr.get(&ip).copied().unwrap_or(0);
        if open >= self.max_per_addr {
            return Err(Cap::PerAddr);
        }
        let total = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| Cap::Total)?;
        per_addr.insert(ip, open + 1);
        Ok(Slot {
            _total: total,
            per_addr: Arc::clone(&self.per_addr),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // A poisoned lock (a panic while holding it) leaves the count high: the address
        // loses a slot, which fails closed.
        if let Ok(mut per_addr) = self.per_addr.lock()
            && let Some(open) = per_addr.get_mut(&self.ip)
        {
            *open = open.saturating_sub(1);
            if *open == 0 {
                per_addr.remove(&self.ip);
            }
        }
    }
}

async fn serve_connection<I>(
    io: I,
    app: Router,
    limits: WebLimits,
    shutdown: CancellationToken,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
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
