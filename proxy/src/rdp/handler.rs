//! One accepted RDP connection up to the MCS phase: read the client's hello, pick the target,
//! ask the policy (before any byte reaches the target), terminate TLS toward the contractor,
//! open the server leg (TLS, pinned certificate, then CredSSP with the injected credentials
//! when the server selects NLA), then hand both legs to [`super::session`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ironrdp_pdu::nego::{ConnectionConfirm, FailureCode, SecurityProtocol};
use policy::{Decision, Denial, Protocol, Request, Rule, TargetRef};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tracing::{Instrument, info, info_span, warn};

use super::channels::ChannelRules;
use super::credssp::{self, Account, NlaAcceptor, NlaError, Step};
use super::framing;
use super::mitm::{Mitm, MitmConfig, Secret, TargetCredentials};
use super::negotiation::{self, ClientHello, ConnectionRequestInfo};
use super::nla_client::{ClientStep, NlaClient, NlaClientError};
use super::pins::{self, PinCheck};
use super::relay::LogonCheck;
use super::session::{self, Relay};
use crate::services::{Services, SessionMeta};

/// Time a client has to send its hello and finish TLS; a silent peer must not hold a slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time to reach the target and finish its TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes buffered while waiting for the client's hello: a preconnection PDU and one X.224
/// frame at most.
const MAX_HELLO_BUFFER: usize = negotiation::MAX_PCB_LEN + framing::MAX_FRAME_LEN;

/// What the client's first bytes told us.
#[derive(Debug, Default)]
pub(crate) struct Hello {
    pub(crate) pcb_target: Option<String>,
    pub(crate) request: Option<ConnectionRequestInfo>,
}

/// Handles one connection; errors are logged by the caller.
pub async fn handle(stream: TcpStream, peer: SocketAddr, services: Arc<Services>) -> Result<()> {
    let span =
        info_span!("session", proto = "rdp", client_ip = %peer.ip(), user = tracing::field::Empty);
    handle_inner(stream, peer, services).instrument(span).await
}

async fn handle_inner(
    mut client: TcpStream,
    peer: SocketAddr,
    services: Arc<Services>,
) -> Result<()> {
    let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_hello(&mut client))
        .await
        .map_err(|_| anyhow!("client sent no connection request in time"))??;
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
        let req = Request {
            protocol: Protocol::Rdp,
            source: peer.ip(),
            target: TargetRef::Name(String::new()),
            user: cookie_user,
        };
        let _ = services.decide(&req).await;
        return refuse(&mut client, FailureCode::SSL_NOT_ALLOWED_BY_SERVER).await;
    };
    let req = Request {
        protocol: Protocol::Rdp,
        source: peer.ip(),
        target,
        user: cookie_user.clone(),
    };

    // The policy decides before any byte reaches the target.
    let auth = match services.decide(&req).await {
        Decision::Allow(auth) => auth,
        Decision::Deny(denial) => {
            info!(
                rule = denial.rule().as_str(),
                reason = denial.reason(),
                "Connection denied"
            );
            return refuse(&mut client, FailureCode::SSL_NOT_ALLOWED_BY_SERVER).await;
        }
    };
    tracing::Span::current().record("user", auth.user());
    let inventory = services.inventory();
    let target = inventory
        .target(auth.target())
        .with_context(|| format!("target {} vanished from the inventory", auth.target()))?
        .clone();
    let credentials = match credentials_for(&services, target.credential.as_deref()) {
        Ok(c) => c,
        Err(reason) => {
            let denial = Denial::new(
                Rule::CredentialMissing,
                format!("RDP to {} refused: {reason}", target.name),
                Some(auth.user().to_owned()),
                Some(auth.contractor().to_owned()),
                Some(target.name.clone()),
            );
            warn!(target = %target.name, reason = denial.reason(), "Connection refused");
            services.record_refusal(None, &denial, &req).await;
            return refuse(&mut client, FailureCode::SSL_NOT_ALLOWED_BY_SERVER).await;
        }
    };

    // Contractor leg: NLA against the account's nt_hash when it has one and the client
    // offers it; otherwise TLS, and the Client Info logon is checked against password_hash.
    let user = inventory.user(auth.user()).cloned();
    let nla_account = user.as_ref().and_then(|u| {
        u.nt_hash.as_ref().map(|h| Account {
            user: u.name.clone(),
            nt_hash: *h.expose(),
        })
    });
    let client_protocol =
        negotiation::select_client_protocol(request.requested, nla_account.is_some())?;
    let nla = match (client_protocol, nla_account) {
        (p, _) if p == SecurityProtocol::SSL => None,
        (p, Some(account)) if p == SecurityProtocol::HYBRID || p == SecurityProtocol::HYBRID_EX => {
            Some(account)
        }
        _ => {
            warn!("Client offers only CredSSP, and this account has no nt_hash for NLA");
            return refuse(&mut client, FailureCode::SSL_REQUIRED_BY_SERVER).await;
        }
    };
    client
        .write_all(&negotiation::connection_confirm(client_protocol)?)
        .await?;
    let acceptor = services
        .tls_acceptor()
        .context("no TLS identity for the RDP front door")?;
    let (acceptor, public_key) = capture_public_key(&acceptor);
    let mut client_tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(client))
        .await
        .map_err(|_| anyhow!("client TLS handshake timed out"))?
        .context("client TLS handshake")?;
    let mut leftover = Vec::new();
    let nla_done = match nla {
        None => false,
        Some(account) => {
            let key = public_key
                .lock()
                .ok()
                .and_then(|k| k.clone())
                .context("no public key for the TLS certificate")?;
            let early_result = client_protocol == SecurityProtocol::HYBRID_EX;
            let result = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                accept_nla(&mut client_tls, account, key, early_result),
            )
            .await
            .map_err(|_| anyhow!("CredSSP timed out"))?;
            match result {
                Ok(rest) => {
                    leftover = rest;
                    true
                }
                Err(NlaError::LogonRefused) => {
                    let denial = Denial::new(
                        Rule::AuthFailed,
                        format!(
                            "RDP logon of {} to {} refused: NLA credentials did not match the Sekisho account",
                            auth.user(),
                            target.name
                        ),
                        Some(auth.user().to_owned()),
                        Some(auth.contractor().to_owned()),
                        Some(target.name.clone()),
                    );
                    warn!(rule = denial.rule().as_str(), "NLA logon refused");
                    services.record_refusal(None, &denial, &req).await;
                    client_tls.shutdown().await.ok();
                    return Ok(());
                }
                Err(e) => return Err(e).context("NLA on the contractor leg"),
            }
        }
    };

    // Server leg.
    let addr = SocketAddr::new(target.address, target.rdp_port);
    let (server_tls, server_protocol) =
        tokio::time::timeout(CONNECT_TIMEOUT, connect_server(addr, &credentials))
            .await
            .map_err(|_| anyhow!("connecting to {addr} timed out"))??;
    let cert = server_tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .context("the server presented no certificate")?;
    let pin = pins::check_and_pin(&pins::pins_path(services.data_dir()), &target.name, &cert)?;
    if pin == PinCheck::Changed {
        let denial = Denial::new(
            Rule::RdpServerCertChanged,
            format!(
                "RDP to {} refused: its TLS certificate differs from the one pinned on first use; \
                 an administrator must check the server and remove its pin from {}",
                target.name,
                pins::pins_path(services.data_dir()).display()
            ),
            Some(auth.user().to_owned()),
            Some(auth.contractor().to_owned()),
            Some(target.name.clone()),
        );
        warn!(target = %target.name, rule = denial.rule().as_str(), "Server certificate changed; refusing");
        services.record_refusal(None, &denial, &req).await;
        bail!("{}", denial.reason());
    }

    // NLA toward the target, only after its certificate passed the pin check: CredSSP binds
    // the exchange to that certificate's key, and the password must not go to an impostor.
    let mut server_tls = server_tls;
    if server_protocol == SecurityProtocol::HYBRID {
        let key = credssp::cert_public_key(&cert)
            .context("cannot read the public key of the server's certificate")?;
        let result = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            connect_nla(&mut server_tls, &credentials, key, &target.name),
        )
        .await
        .map_err(|_| anyhow!("CredSSP with {} timed out", target.name))?;
        match result {
            Ok(()) => {}
            Err(NlaClientError::Refused) => {
                let denial = Denial::new(
                    Rule::CredentialRefused,
                    format!(
                        "RDP to {} refused: the server refused the injected credentials ({})",
                        target.name,
                        target.credential.as_deref().unwrap_or_default()
                    ),
                    Some(auth.user().to_owned()),
                    Some(auth.contractor().to_owned()),
                    Some(target.name.clone()),
                );
                warn!(
                    target = %target.name,
                    rule = denial.rule().as_str(),
                    "NLA on the server leg: the server refused the injected credentials"
                );
                services.record_refusal(None, &denial, &req).await;
                client_tls.shutdown().await.ok();
                return Ok(());
            }
            Err(e) => {
                return Err(e).with_context(|| format!("NLA on the server leg to {}", target.name));
            }
        }
    }

    let mut meta = SessionMeta::default();
    for (k, v) in [
        (
            "rdp.client_requested_protocols",
            format!("{:#x}", request.requested.bits()),
        ),
        (
            "rdp.client_selected_protocol",
            format!("{:#x}", client_protocol.bits()),
        ),
        (
            "rdp.server_selected_protocol",
            format!("{:#x}", server_protocol.bits()),
        ),
        ("rdp.io_channel_default", "1003".to_owned()),
        ("rdp.wire_channel", session::WIRE_CHANNEL.to_string()),
        ("rdp.compression", "none".to_owned()),
        ("rdp.drawing_orders", "none".to_owned()),
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
        .open_session(&auth, &req, meta)
        .await
        .context("cannot open the recorded session")?;
    if pin == PinCheck::FirstUse {
        live.event(
            recorder::format::EventKind::Policy,
            &format!(
                "rdp.server-cert-pinned: certificate of {} pinned on first use",
                target.name
            ),
        )
        .await?;
    }

    let rules = {
        let rdp = inventory.rdp();
        ChannelRules {
            allow_static_channels: rdp.allow_static_channels.clone(),
            deny_dynamic_channels: rdp.deny_dynamic_channels.clone(),
        }
    };
    let mitm = Mitm::new(MitmConfig {
        rules,
        client_requested: request.requested,
        server_selected: server_protocol,
        inject: Some(credentials),
    });
    let expected_user = auth.user().to_owned();
    let logon: LogonCheck = Box::new(move |name: &str, password: &Secret| {
        let (name, _) = negotiation::split_user_target(name);
        let hash = (name == expected_user)
            .then(|| user.as_ref().and_then(|u| u.password_hash.clone()))
            .flatten();
        let password = Secret::new(password.expose());
        Box::pin(async move {
            let Some(hash) = hash else {
                return false;
            };
            // argon2 on the blocking pool, through the shared bounded working memory.
            tokio::task::spawn_blocking(move || {
                crate::auth::verify_password(&hash, password.expose())
            })
            .await
            .unwrap_or(false)
        })
    });
    info!(target = %target.name, %addr, "Relaying");
    session::run(
        Relay {
            live,
            mitm,
            // NLA already proved who the contractor is; the Client Info then carries no password.
            logon: (!nla_done).then_some(logon),
        },
        Prefixed::new(leftover, client_tls),
        server_tls,
    )
    .await
}

/// A stream whose first reads return `prefix`: bytes read past the end of the CredSSP
/// exchange, which belong to the relay.
struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.prefix.get(this.pos..)
            && !rest.is_empty()
        {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            this.pos += n;
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads the preconnection PDU (optional) and the X.224 Connection Request.
pub(crate) async fn read_hello<R: AsyncRead + Unpin>(client: &mut R) -> Result<Hello> {
    let mut buf: Vec<u8> = Vec::new();
    let mut hello = Hello::default();
    loop {
        match negotiation::decode_client_hello(&buf)? {
            Some(ClientHello::Preconnection { target, consumed }) => {
                if hello.pcb_target.is_some() {
                    bail!("second preconnection PDU");
                }
                hello.pcb_target = target;
                buf.drain(..consumed);
                continue;
            }
            Some(ClientHello::ConnectionRequest { request, consumed }) => {
                if consumed != buf.len() {
                    bail!("client sent data after its connection request before the answer");
                }
                hello.request = Some(request);
                return Ok(hello);
            }
            None => {}
        }
        if buf.len() >= MAX_HELLO_BUFFER {
            bail!("client hello larger than {MAX_HELLO_BUFFER} bytes");
        }
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            bail!("client closed before its connection request");
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Writes an X.224 negotiation failure and closes: a prompt, clean refusal.
async fn refuse(client: &mut TcpStream, code: FailureCode) -> Result<()> {
    client
        .write_all(&negotiation::connection_failure(code)?)
        .await?;
    client.shutdown().await.ok();
    Ok(())
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

pub(crate) async fn connect_server(
    addr: SocketAddr,
    credentials: &TargetCredentials,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, SecurityProtocol)> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_nodelay(true).ok();
    // CredSSP when the server wants it (the credentials are injected there), else TLS and
    // the Client Info PDU (xrdp 0.9 selects TLS).
    let offered = if nla_usable(credentials) {
        SecurityProtocol::SSL | SecurityProtocol::HYBRID
    } else {
        SecurityProtocol::SSL
    };
    tcp.write_all(&negotiation::connection_request(
        &credentials.username,
        offered,
    )?)
    .await?;
    let mut buf = Vec::new();
    let frame = loop {
        if let Some((_, len)) = framing::decode(&buf)? {
            break buf.get(..len).map(<[u8]>::to_vec).unwrap_or_default();
        }
        let mut chunk = [0u8; 1024];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            bail!("{addr} closed during negotiation");
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let protocol = match negotiation::decode_connection_confirm(&frame)? {
        ConnectionConfirm::Response { protocol, .. } => protocol,
        ConnectionConfirm::Failure { code } => bail!("{addr} refused the negotiation: {code}"),
    };
    if protocol != SecurityProtocol::SSL
        && !(protocol == SecurityProtocol::HYBRID && offered.contains(protocol))
    {
        bail!("{addr} selected {protocol}, which Sekisho did not offer ({offered})");
    }
    let connector = TlsConnector::from(Arc::new(pins::client_config()?));
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = connector
        .connect(name, tcp)
        .await
        .context("server TLS handshake")?;
    Ok((tls, protocol))
}

/// Whether the target's credentials can be given over CredSSP (NTLM needs a user name).
fn nla_usable(credentials: &TargetCredentials) -> bool {
    !credentials.username.is_empty()
}

/// Runs CredSSP as client over the server leg's TLS stream with the injected credentials.
/// Nothing of it is recorded or logged.
async fn connect_nla<S>(
    tls: &mut S,
    credentials: &TargetCredentials,
    server_public_key: Vec<u8>,
    server_name: &str,
) -> Result<(), NlaClientError>
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let io = |e: std::io::Error| NlaClientError::Protocol(e.to_string());
    let mut client = NlaClient::new(credentials, server_public_key, server_name)?;
    tls.write_all(&client.start()?).await.map_err(io)?;
    tls.flush().await.map_err(io)?;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = loop {
            if let Some(frame) = credssp::take_frame(&mut buf)? {
                break frame;
            }
            let mut chunk = [0u8; 4096];
            let n = match tls.read(&mut chunk).await {
                Ok(n) => n,
                // A server that drops the connection on a wrong password may reset it.
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionReset
                        || e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    0
                }
                Err(e) => return Err(io(e)),
            };
            if n == 0 {
                return Err(client.closed());
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        };
        match client.step(&frame)? {
            ClientStep::Send(bytes) => {
                tls.write_all(&bytes).await.map_err(io)?;
                tls.flush().await.map_err(io)?;
            }
            ClientStep::Finish(bytes) => {
                tls.write_all(&bytes).await.map_err(io)?;
                tls.flush().await.map_err(io)?;
                // Without HYBRID_EX the server says nothing until the MCS Connect Initial.
                if !buf.is_empty() {
                    return Err(NlaClientError::Protocol(
                        "the server sent data after its last TsRequest".to_owned(),
                    ));
                }
                return Ok(());
            }
        }
    }
}

/// Wraps the front door's TLS identity so that the subjectPublicKey of the certificate chosen
/// for this connection is kept: CredSSP binds the NLA exchange to it.
fn capture_public_key(
    acceptor: &tokio_rustls::TlsAcceptor,
) -> (
    tokio_rustls::TlsAcceptor,
    Arc<std::sync::Mutex<Option<Vec<u8>>>>,
) {
    let slot = Arc::new(std::sync::Mutex::new(None));
    let mut config = (**acceptor.config()).clone();
    config.cert_resolver = Arc::new(CaptureKey {
        inner: Arc::clone(&config.cert_resolver),
        slot: Arc::clone(&slot),
    });
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), slot)
}

#[derive(Debug)]
struct CaptureKey {
    inner: Arc<dyn tokio_rustls::rustls::server::ResolvesServerCert>,
    slot: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

impl tokio_rustls::rustls::server::ResolvesServerCert for CaptureKey {
    fn resolve(
        &self,
        hello: tokio_rustls::rustls::server::ClientHello<'_>,
    ) -> Option<Arc<tokio_rustls::rustls::sign::CertifiedKey>> {
        let key = self.inner.resolve(hello)?;
        if let (Some(spki), Ok(mut slot)) = (key.key.public_key(), self.slot.lock()) {
            *slot = super::credssp::spki_public_key(spki.as_ref());
        }
        Some(key)
    }
}

/// The Early User Authorization Result PDU saying AUTHZ_SUCCESS (MS-RDPBCGR 2.2.10.2): a
/// little-endian u32, zero.
const EARLY_USER_AUTH_SUCCESS: [u8; 4] = 0u32.to_le_bytes();

/// Runs CredSSP as server over the contractor's TLS stream. Nothing of it is recorded.
/// With `early_result` (HYBRID_EX) a successful logon is followed by the Early User
/// Authorization Result PDU, which the client waits for before it goes on.
async fn accept_nla<S>(
    tls: &mut S,
    account: Account,
    public_key: Vec<u8>,
    early_result: bool,
) -> Result<Vec<u8>, NlaError>
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let io = |e: std::io::Error| NlaError::Protocol(e.to_string());
    let mut acceptor = NlaAcceptor::new(account, public_key)?;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = loop {
            if let Some(frame) = credssp::take_frame(&mut buf)? {
                break frame;
            }
            let mut chunk = [0u8; 4096];
            let n = tls.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err(NlaError::Protocol(
                    "client closed during CredSSP".to_owned(),
                ));
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        };
        match acceptor.step(&frame) {
            Step::Reply(bytes) => tls.write_all(&bytes).await.map_err(io)?,
            // Without HYBRID_EX the client sends its MCS Connect Initial right after its
            // last TsRequest, without waiting: what follows belongs to the relay.
            Step::Done(_) => {
                if early_result {
                    tls.write_all(&EARLY_USER_AUTH_SUCCESS).await.map_err(io)?;
                    tls.flush().await.map_err(io)?;
                }
                return Ok(buf);
            }
            Step::Failed(bytes, e) => {
                if !bytes.is_empty() {
                    let _ = tls.write_all(&bytes).await;
                    let _ = tls.flush().await;
                }
                return Err(e);
            }
        }
    }
}
