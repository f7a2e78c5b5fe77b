//! One accepted RDP connection, authenticate first: the contractor leg up to the logon
//! ([`super::contractor_leg`]), the policy decision and the logon check, and only then the
//! server leg ([`super::server_leg`]), the recorded session and the relay ([`super::session`]).
//!
//! Before the contractor is authenticated no byte reaches the target, and no recording or live
//! session is opened; decisions and refusals are written to the catalogue all the same. The
//! whole pre-authentication part runs under `auth.preauth_timeout` and holds a place in the
//! door's [`crate::preauth`] caps. Failed logons count in the shared throttle
//! ([`crate::auth::throttle`]); a user with a matrix card must have passed it recently from the
//! same desktop ([`crate::auth::second_factor`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ironrdp_pdu::nego::{FailureCode, SecurityProtocol};
use policy::{Authorized, Denial, Protocol, Request, Rule, TargetRef};
use recorder::catalogue::PinCheck;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::{Instrument, info, info_span, warn};

use super::accept::{ClientLogon, McsAcceptor};
use super::channels::ChannelRules;
use super::connect::McsConnector;
use super::contractor_leg::{self, Prefixed};
use super::credssp::{self, Account, NlaError};
use super::mitm::{Mitm, MitmConfig};
use super::negotiation;
use super::nla_client::NlaClientError;
use super::server_leg;
use super::session::{self, Relay};
use super::types::{Secret, TargetCredentials};
use crate::preauth;
use crate::services::{Admission, Services, SessionMeta};

/// Time to reach the target and finish its TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time for CredSSP and the MCS connection sequence with the target.
const SERVER_SEQUENCE_TIMEOUT: Duration = Duration::from_secs(10);

/// A contractor who passed every check before the target is dialled.
struct Authenticated {
    client: Prefixed<TlsStream<TcpStream>>,
    logon: Box<ClientLogon>,
    /// the only way to the target's endpoint; consumed by opening the session
    admission: Admission,
    credentials: TargetCredentials,
    client_requested: SecurityProtocol,
    client_selected: SecurityProtocol,
}

/// Handles one connection; errors are logged by the caller.
pub async fn handle(stream: TcpStream, peer: SocketAddr, services: Arc<Services>) -> Result<()> {
    let span =
        info_span!("session", proto = "rdp", client_ip = %peer.ip(), user = tracing::field::Empty);
    handle_inner(stream, peer, services).instrument(span).await
}

async fn handle_inner(client: TcpStream, peer: SocketAddr, services: Arc<Services>) -> Result<()> {
    let permit = match preauth::gate(preauth::Door::Rdp).enter(peer.ip()) {
        Ok(p) => p,
        Err(full) => {
            // Not catalogued: a flood would flood the catalogue. The log says it once per try.
            warn!(reason = %full, "RDP connection closed before authentication");
            return Ok(());
        }
    };
    let deadline = services.inventory().auth().preauth_timeout;
    let authenticated =
        match tokio::time::timeout(deadline, authenticate(client, peer, &services)).await {
            Ok(r) => r?,
            Err(_) => {
                let req = unnamed_request(peer.ip(), None);
                refuse(
                    &services,
                    &req,
                    None,
                    Rule::AuthFailed,
                    format!(
                        "RDP connection from {} closed: no logon within {} s",
                        peer.ip(),
                        deadline.as_secs()
                    ),
                )
                .await;
                return Ok(());
            }
        };
    drop(permit);
    match authenticated {
        Some(a) => connect_and_relay(a, &services).await,
        None => Ok(()),
    }
}

/// The contractor leg up to the checked logon. `None`: refused, reported and closed.
async fn authenticate(
    mut client: TcpStream,
    peer: SocketAddr,
    services: &Arc<Services>,
) -> Result<Option<Authenticated>> {
    let hello = contractor_leg::read_hello(&mut client).await?;
    let request = hello.request.context("no X.224 Connection Request")?;

    // Target: preconnection PDU, then `user+target`, then the original destination.
    let (cookie_user, cookie_target) = match &request.cookie {
        Some(c) => {
            let (u, t) = negotiation::split_user_target(c);
            (Some(u), t)
        }
        None => (None, None),
    };
    let target = match hello.pcb_target.or(cookie_target) {
        Some(name) => Some(TargetRef::Name(name)),
        None => original_destination(&client).map(|a| TargetRef::Address(a.ip())),
    };
    let Some(target) = target else {
        warn!("No target: no preconnection PDU, no user+target, no original destination");
        let _ = services
            .decide(&unnamed_request(peer.ip(), cookie_user))
            .await;
        refuse_negotiation(&mut client, FailureCode::SSL_NOT_ALLOWED_BY_SERVER).await;
        return Ok(None);
    };
    let req = Request {
        protocol: Protocol::Rdp,
        source: peer.ip(),
        target,
        user: cookie_user,
    };

    // The policy decides on the claimed user and the target before any TLS; the logon below
    // must then prove that user.
    let admission = match services.admit(&req).await {
        Ok(admission) => admission,
        Err(denial) => {
            info!(
                rule = denial.rule().as_str(),
                reason = denial.reason(),
                "Connection denied"
            );
            refuse_negotiation(&mut client, FailureCode::SSL_NOT_ALLOWED_BY_SERVER).await;
            return Ok(None);
        }
    };
    let auth = admission.authorized().clone();
    tracing::Span::current().record("user", auth.user());
    let inventory = services.inventory();
    let target = admission.target().clone();
    let credentials = match credentials_for(services, target.credential.as_deref()) {
        Ok(c) => c,
        Err(reason) => {
            let reason = format!("RDP to {} refused: {reason}", target.name);
            refuse(services, &req, Some(&auth), Rule::CredentialMissing, reason).await;
            refuse_negotiation(&mut client, FailureCode::SSL_NOT_ALLOWED_BY_SERVER).await;
            return Ok(None);
        }
    };

    // Contractor leg: NLA against the account's nt_hash when it has one and the client
    // offers it; otherwise TLS, and the Client Info logon is checked against password_hash.
    let user = inventory.user(auth.user()).cloned();
    // A locked-out name or address gets the answer of a wrong password, and its password is
    // not checked: with NLA, CredSSP runs against a hash no password has.
    let locked = services
        .throttle()
        .check(auth.user(), peer.ip(), Instant::now())
        .is_err();
    let nla_account = user.as_ref().and_then(|u| {
        u.nt_hash.as_ref().map(|h| Account {
            user: u.name.clone(),
            nt_hash: if locked {
                unguessable_hash()
            } else {
                *h.expose()
            },
        })
    });
    let client_selected =
        negotiation::select_client_protocol(request.requested, nla_account.is_some())?;
    let nla = match (client_selected, nla_account) {
        (p, _) if p == SecurityProtocol::SSL => None,
        (p, Some(account)) if p == SecurityProtocol::HYBRID || p == SecurityProtocol::HYBRID_EX => {
            Some(account)
        }
        _ => {
            warn!("Client offers only CredSSP, and this account has no nt_hash for NLA");
            refuse_negotiation(&mut client, FailureCode::SSL_REQUIRED_BY_SERVER).await;
            return Ok(None);
        }
    };
    client
        .write_all(&negotiation::connection_confirm(client_selected)?)
        .await?;
    let acceptor = services
        .tls_acceptor()
        .context("no TLS identity for the RDP front door")?;
    let (acceptor, public_key) = contractor_leg::capture_public_key(&acceptor);
    let mut client_tls = acceptor
        .accept(client)
        .await
        .context("client TLS handshake")?;
    let mut leftover = Vec::new();
    let nla_used = nla.is_some();
    if let Some(account) = nla {
        let key = public_key
            .lock()
            .ok()
            .and_then(|k| k.clone())
            .context("no public key for the TLS certificate")?;
        let early_result = client_selected == SecurityProtocol::HYBRID_EX;
        match contractor_leg::accept_nla(&mut client_tls, account, key, early_result).await {
            Ok(rest) => leftover = rest,
            Err(NlaError::LogonRefused) => {
                let reason = format!(
                    "RDP logon of {} to {} refused: {}",
                    auth.user(),
                    target.name,
                    if locked {
                        "locked out after repeated failed logons"
                    } else {
                        "NLA credentials did not match the Sekisho account"
                    }
                );
                logon_failed(services, &req, &auth, locked, reason).await;
                client_tls.shutdown().await.ok();
                return Ok(None);
            }
            Err(e) => return Err(e).context("NLA on the contractor leg"),
        }
    }

    // The MCS sequence, answered by Sekisho, up to the Client Info PDU.
    let rules = ChannelRules::from_policy(inventory.rdp());
    let acceptor = McsAcceptor::new(rules, request.requested);
    let (logon, rest) = match contractor_leg::accept_mcs(&mut client_tls, acceptor, leftover).await
    {
        Ok(x) => x,
        Err(e) => {
            let reason = format!(
                "RDP logon of {} to {} refused: the client's connection sequence could not be \
                 read and checked ({e:#})",
                auth.user(),
                target.name
            );
            refuse(services, &req, Some(&auth), Rule::AuthFailed, reason).await;
            client_tls.shutdown().await.ok();
            return Ok(None);
        }
    };
    // With NLA, CredSSP proved who the contractor is and the Client Info carries no password.
    if !nla_used && (locked || !password_matches(&logon, &auth, user.as_ref()).await) {
        let reason = format!(
            "RDP logon of {} to {} refused: {}",
            auth.user(),
            target.name,
            if locked {
                "locked out after repeated failed logons"
            } else {
                "wrong user name or password in the Client Info PDU"
            }
        );
        logon_failed(services, &req, &auth, locked, reason).await;
        client_tls.shutdown().await.ok();
        return Ok(None);
    }
    services.throttle().record_success(auth.user(), peer.ip());
    // The second factor: RDP has no card step of its own, so a card user must have passed the
    // card at the web UI or the SSH login from this desktop recently. A hop rides on its
    // console session's authentication.
    if auth.console_session().is_none()
        && let Some(denial) = services.second_factor_missing(
            Protocol::Rdp,
            auth.user(),
            peer.ip(),
            &target.name,
            Instant::now(),
        )
    {
        warn!(
            rule = denial.rule().as_str(),
            reason = denial.reason(),
            "RDP connection refused"
        );
        services.record_refusal(None, &denial, &req).await;
        client_tls.shutdown().await.ok();
        return Ok(None);
    }
    Ok(Some(Authenticated {
        client: Prefixed::new(rest, client_tls),
        logon,
        admission,
        credentials,
        client_requested: request.requested,
        client_selected,
    }))
}

/// Reports a failed logon: the `auth.failed` row, and (unless the name or address is locked
/// out already) a failure in the shared throttle, whose lockouts become audit events.
async fn logon_failed(
    services: &Services,
    req: &Request,
    auth: &Authorized,
    locked: bool,
    reason: String,
) {
    refuse(services, req, Some(auth), Rule::AuthFailed, reason).await;
    if !locked {
        let lockouts = services
            .throttle()
            .record_failure(auth.user(), req.source, Instant::now());
        services
            .lockouts_started(&lockouts, Protocol::Rdp, req.source)
            .await;
    }
}

/// An NT hash no password has in practice (random), for CredSSP while a logon is locked out.
fn unguessable_hash() -> [u8; 16] {
    rand::random()
}

/// Whether the Client Info names the decided user with their password (argon2, on the
/// blocking pool through the shared bounded working memory).
async fn password_matches(
    logon: &ClientLogon,
    auth: &Authorized,
    user: Option<&policy::User>,
) -> bool {
    let (name, _) = negotiation::split_user_target(&logon.username);
    let Some(hash) = (name == auth.user())
        .then(|| user.and_then(|u| u.password_hash.clone()))
        .flatten()
    else {
        return false;
    };
    let password = Secret::new(logon.password.expose());
    tokio::task::spawn_blocking(move || crate::auth::verify_password(&hash, password.expose()))
        .await
        .unwrap_or(false)
}

/// The server leg, the recorded session and the relay, for an authenticated contractor.
async fn connect_and_relay(a: Authenticated, services: &Arc<Services>) -> Result<()> {
    let Authenticated {
        mut client,
        logon,
        admission,
        credentials,
        client_requested,
        client_selected,
    } = a;
    let auth = admission.authorized().clone();
    let req = admission.request().clone();
    let target = admission.target().clone();
    let addr = admission.rdp_endpoint();
    let (mut server_tls, server_protocol) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        server_leg::connect_server(&admission, &credentials),
    )
    .await
    .map_err(|_| anyhow!("connecting to {addr} timed out"))??;
    let cert = server_tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .context("the server presented no certificate")?;
    let pin = services
        .pins()
        .check_certificate(&addr.to_string(), &target.name, &cert)
        .await?;
    if let PinCheck::Changed { pinned } = &pin {
        let reason = format!(
            "RDP to {} refused: its TLS certificate ({}) differs from the one pinned on first \
             use ({pinned}); an administrator must check the server, then `sekisho pins forget \
             {addr}`",
            target.name,
            crate::pins::certificate_fingerprint(&cert),
        );
        refuse(
            services,
            &req,
            Some(&auth),
            Rule::RdpServerCertChanged,
            reason,
        )
        .await;
        client.shutdown().await.ok();
        bail!("the certificate of {} changed", target.name);
    }

    // NLA toward the target, only after its certificate passed the pin check: CredSSP binds
    // the exchange to that certificate's key, and the password must not go to an impostor.
    if server_protocol == SecurityProtocol::HYBRID {
        let key = credssp::cert_public_key(&cert)
            .context("cannot read the public key of the server's certificate")?;
        let result = tokio::time::timeout(
            SERVER_SEQUENCE_TIMEOUT,
            server_leg::connect_nla(&mut server_tls, &credentials, key, &target.name),
        )
        .await
        .map_err(|_| anyhow!("CredSSP with {} timed out", target.name))?;
        match result {
            Ok(()) => {}
            Err(NlaClientError::Refused) => {
                let reason = format!(
                    "RDP to {} refused: the server refused the injected credentials ({})",
                    target.name,
                    target.credential.as_deref().unwrap_or_default()
                );
                refuse(services, &req, Some(&auth), Rule::CredentialRefused, reason).await;
                client.shutdown().await.ok();
                return Ok(());
            }
            Err(e) => {
                return Err(e).with_context(|| format!("NLA on the server leg to {}", target.name));
            }
        }
    }

    // The MCS sequence with the target, ending with the Client Info carrying the injected
    // credential.
    let username = logon.username.clone();
    let handshake = logon.handshake;
    // The player maps the recorded scan codes through this layout for the typed-text index.
    let keyboard_layout = handshake
        .connect_initial
        .conference_create_request
        .gcc_blocks()
        .core
        .keyboard_layout;
    let transcript = handshake.transcript.clone();
    let handshake_events = handshake.events.clone();
    let (connector, connect_initial) =
        McsConnector::start(handshake, server_protocol, Some(credentials))?;
    let (connected, server_rest) = tokio::time::timeout(
        SERVER_SEQUENCE_TIMEOUT,
        server_leg::connect_mcs(&mut server_tls, connector, &connect_initial),
    )
    .await
    .map_err(|_| anyhow!("the MCS sequence with {} timed out", target.name))?
    .with_context(|| format!("MCS connection sequence with {}", target.name))?;

    let mut meta = SessionMeta::default();
    for (k, v) in [
        (
            "rdp.client_requested_protocols",
            format!("{:#x}", client_requested.bits()),
        ),
        (
            "rdp.client_selected_protocol",
            format!("{:#x}", client_selected.bits()),
        ),
        (
            "rdp.server_selected_protocol",
            format!("{:#x}", server_protocol.bits()),
        ),
        ("rdp.io_channel_default", "1003".to_owned()),
        ("rdp.wire_channel", session::WIRE_CHANNEL.to_string()),
        ("rdp.compression", "none".to_owned()),
        ("rdp.drawing_orders", "none".to_owned()),
        (
            player::typed::rdp::KEYBOARD_LAYOUT_KEY,
            format!("{keyboard_layout:#x}"),
        ),
    ] {
        meta.protocol_metadata.insert(k.to_owned(), v);
    }
    // A hop is linked to its console in the recording as in the catalogue, so the recording
    // alone tells an auditor which console session the RDP session rode on.
    if let Some(console) = auth.console_session() {
        meta.protocol_metadata
            .insert("console_session".to_owned(), console.to_string());
        meta.detail = Some(format!("hop from console session {console}"));
    }
    let live = services
        .open_admitted(admission, meta)
        .await
        .context("cannot open the recorded session")?;
    if pin == PinCheck::FirstUse {
        live.event(
            recorder::format::EventKind::Policy,
            &format!(
                "rdp.server-cert-pinned: certificate of {} ({addr}) pinned on first use: {}",
                target.name,
                crate::pins::certificate_fingerprint(&cert)
            ),
        )
        .await?;
    }
    session::record_handshake(
        &live,
        &session::Handshake {
            connect_initial: &connect_initial,
            transcript: &transcript,
            client_info_redacted: &connected.client_info_redacted,
            events: &handshake_events,
            negotiated: &connected.link.negotiated,
            username: &username,
        },
    )
    .await?;

    let rules = ChannelRules::from_policy(services.inventory().rdp());
    let mitm = Mitm::new(MitmConfig { rules }, connected.link);
    info!(target = %target.name, %addr, "Relaying");
    session::run(
        Relay { live, mitm },
        client,
        Prefixed::new(server_rest, server_tls),
    )
    .await
}

/// Reports a refusal once: the log line and the catalogue row with its rule (which also
/// counts it in the metrics).
async fn refuse(
    services: &Services,
    req: &Request,
    auth: Option<&Authorized>,
    rule: Rule,
    reason: String,
) {
    let denial = Denial::new(
        rule,
        reason,
        auth.map(|a| a.user().to_owned())
            .or_else(|| req.user.clone()),
        auth.map(|a| a.contractor().to_owned()),
        auth.map(|a| a.target().to_owned()),
    );
    warn!(
        rule = denial.rule().as_str(),
        reason = denial.reason(),
        "RDP connection refused"
    );
    services.record_refusal(None, &denial, req).await;
}

/// A request for a connection whose target is not known (yet).
fn unnamed_request(source: IpAddr, user: Option<String>) -> Request {
    Request {
        protocol: Protocol::Rdp,
        source,
        target: TargetRef::Name(String::new()),
        user,
    }
}

/// Writes an X.224 negotiation failure and closes: a prompt, clean refusal before any TLS.
async fn refuse_negotiation(client: &mut TcpStream, code: FailureCode) {
    if let Ok(pdu) = negotiation::connection_failure(code) {
        let _ = client.write_all(&pdu).await;
    }
    client.shutdown().await.ok();
}

fn credentials_for(services: &Services, name: Option<&str>) -> Result<TargetCredentials, String> {
    let name = name.ok_or_else(|| "the target has no credential configured".to_owned())?;
    let secrets = services
        .secrets()
        .ok_or_else(|| format!("credential {name} is needed but there is no secrets file"))?;
    let cred = secrets
        .credential(name)
        .ok_or_else(|| format!("credential {name} is not in the secrets file"))?;
    let password = cred
        .password
        .as_ref()
        .ok_or_else(|| format!("credential {name} has no password"))?;
    Ok(TargetCredentials {
        username: cred.username.clone(),
        password: Secret::new(password.expose().clone()),
        domain: cred.domain.clone(),
    })
}

/// The original destination of a redirected connection (iptables REDIRECT/DNAT), or `None`
/// when the client dialled the listener itself.
fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    let sin = getsockopt(stream, sockopt::OriginalDst).ok()?;
    let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
    let addr = SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port));
    match stream.local_addr() {
        Ok(local) if local == addr => None,
        _ => Some(addr),
    }
}
