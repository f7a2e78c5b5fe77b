//! A headless RDP client for automation and load: `ironrdp-connector` drives the connection
//! sequence (X.224 negotiation, TLS upgrade, MCS, Client Info, licensing, capabilities,
//! finalization) and `ironrdp-session` decodes what the server sends into a [`DecodedImage`]
//! and answers what needs an answer. Sockets are tokio's, TLS is rustls.
//!
//! It is a test client: it accepts any server certificate (Sekisho's front door and the lab's
//! servers are self-signed). It speaks TLS, which is what Sekisho's front door offers to an
//! account without an `nt_hash` and what xrdp 0.9 speaks, and, when asked
//! ([`ConnectOptions::nla`]), also offers NLA: CredSSP with NTLM, bound to the public key of
//! the certificate the server presented. Target selection through Sekisho uses the
//! `user+target` user-name form: ironrdp-connector puts the user name in the X.224 cookie
//! (`mstshash=`), which is where Sekisho reads it, and in the NTLM exchange; it sends no
//! preconnection PDU.
//!
//! One [`RdpSession`] is one connection; it is driven by its owner (no background task), so
//! hundreds of them fit in one runtime.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironrdp_connector::credssp::CredsspSequence;
use ironrdp_connector::{
    ClientConnector, ClientConnectorState, ConnectionOutcome, Credentials, DesktopSize,
    Sequence as _, ServerName,
};
use ironrdp_core::WriteBuf;
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::input::fast_path::{FastPathInputEvent, KeyboardFlags};
use ironrdp_pdu::input::mouse::{MousePdu, PointerFlags};
use ironrdp_pdu::mcs::{DisconnectProviderUltimatum, DisconnectReason, McsMessage};
use ironrdp_pdu::x224::X224;
use ironrdp_pdu::{Action, PduHint, gcc};
use ironrdp_session::image::DecodedImage;
use ironrdp_session::{ActiveStage, ActiveStageBuilder, ActiveStageOutput};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls;

/// What can go wrong with a headless session.
#[derive(Debug, thiserror::Error)]
pub enum RdpClientError {
    /// Socket or TLS I/O.
    #[error("{context}: {source}")]
    Io {
        /// what was being done
        context: &'static str,
        /// the error
        #[source]
        source: std::io::Error,
    },
    /// The rustls client configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The connection sequence failed (refused negotiation, bad PDU, …).
    #[error("RDP connection sequence: {0}")]
    Connector(String),
    /// Decoding or answering server output failed in the active session.
    #[error("RDP session: {0}")]
    Session(String),
    /// A PDU could not be framed or encoded.
    #[error("RDP framing: {0}")]
    Pdu(String),
    /// The server closed the connection.
    #[error("the server closed the connection{0}")]
    Closed(String),
    /// A deadline passed.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The server ended the session (Deactivate All, redirection, disconnect reason).
    #[error("the server ended the session: {0}")]
    Terminated(String),
    /// The final frame could not be written as PNG.
    #[error("PNG: {0}")]
    Png(String),
}

type Result<T, E = RdpClientError> = std::result::Result<T, E>;

fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> RdpClientError {
    move |source| RdpClientError::Io { context, source }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The RDP server, or Sekisho's RDP front door.
    pub addr: SocketAddr,
    /// The user name; through Sekisho `user+target` names the target.
    pub user: String,
    /// The password (the Sekisho account's through Sekisho).
    pub password: String,
    /// The desktop size asked for; the server decides the real one.
    pub width: u16,
    /// See `width`.
    pub height: u16,
    /// Source address to connect from (Sekisho's policy looks at it), e.g. a VDI desktop's
    /// loopback alias; `None` lets the kernel choose.
    pub source: Option<IpAddr>,
    /// Deadline for the whole set-up: TCP connect to the first graphics update.
    pub timeout: Duration,
    /// Offer NLA (CredSSP) as well as TLS; the server chooses.
    pub nla: bool,
    /// How the Client Info PDU is bent on its way out (a hostile or unusual client).
    pub client_info: ClientInfoShape,
    /// The Client Core Data's keyboard layout (input locale; 0x409 US English).
    pub keyboard_layout: u32,
}

/// How the headless client bends its Client Info PDU, to play an unusual or hostile client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientInfoShape {
    /// As ironrdp writes it.
    #[default]
    Plain,
    /// Compression-type bits (`0x1E00`) set without `INFO_COMPRESSION`: legal enough for some
    /// servers, refused by ironrdp's decoder.
    CompressionBits,
    /// A `performanceFlags` bit the specification does not name (`0x200`).
    UnknownPerformanceFlag,
    /// Cut short inside its strings: no server can read it.
    Truncated,
}

impl ClientInfoShape {
    /// Every shape, by the name the command line takes.
    pub const ALL: [(&'static str, ClientInfoShape); 4] = [
        ("plain", ClientInfoShape::Plain),
        ("compression-bits", ClientInfoShape::CompressionBits),
        (
            "unknown-performance-flag",
            ClientInfoShape::UnknownPerformanceFlag,
        ),
        ("truncated", ClientInfoShape::Truncated),
    ];

    /// Bends `frame` when it is the Client Info PDU (an MCS Send Data Request whose security
    /// header says INFO_PKT); other frames come back as they are.
    fn apply(self, frame: &[u8]) -> Result<Vec<u8>> {
        if self == ClientInfoShape::Plain {
            return Ok(frame.to_vec());
        }
        let Ok(X224(McsMessage::SendDataRequest(req))) =
            ironrdp_core::decode::<X224<McsMessage<'_>>>(frame)
        else {
            return Ok(frame.to_vec());
        };
        let mut data = req.user_data.to_vec();
        let u32_at = |d: &[u8], at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
        };
        let is_info = data
            .first()
            .is_some_and(|flags| flags & INFO_PKT_LOW_BYTE != 0);
        if !is_info {
            return Ok(frame.to_vec());
        }
        let bad = |what: &str| RdpClientError::Pdu(format!("cannot bend the Client Info: {what}"));
        match self {
            ClientInfoShape::Plain => {}
            ClientInfoShape::CompressionBits => {
                // Security header (4 bytes), code page (4), then the flags.
                let flags = u32_at(&data, 8).ok_or_else(|| bad("no flags"))?;
                let flags = (flags & !INFO_COMPRESSION) | COMPRESSION_TYPE_MASK;
                data.get_mut(8..12)
                    .ok_or_else(|| bad("no flags"))?
                    .copy_from_slice(&flags.to_le_bytes());
            }
            ClientInfoShape::UnknownPerformanceFlag => {
                // ironrdp writes no reconnect cookie: the performance flags end the PDU.
                let info = ironrdp_core::decode::<ironrdp_pdu::rdp::ClientInfoPdu>(&data)
                    .map_err(|e| bad(&e.to_string()))?;
                let perf = info
                    .client_info
                    .extra_info
                    .optional_data
                    .performance_flags()
                    .ok_or_else(|| bad("no performance flags"))?;
                let at = data.len().checked_sub(4).ok_or_else(|| bad("too short"))?;
                if u32_at(&data, at) != Some(perf.bits()) {
                    return Err(bad("the performance flags are not last"));
                }
                data.get_mut(at..)
                    .ok_or_else(|| bad("too short"))?
                    .copy_from_slice(&(perf.bits() | 0x200).to_le_bytes());
            }
            ClientInfoShape::Truncated => data.truncate(40),
        }
        ironrdp_core::encode_vec(&X224(McsMessage::SendDataRequest(
            ironrdp_pdu::mcs::SendDataRequest {
                initiator_id: req.initiator_id,
                channel_id: req.channel_id,
                user_data: std::borrow::Cow::Owned(data),
            },
        )))
        .map_err(|e| bad(&e.to_string()))
    }
}

/// The low byte of the basic security header's `SEC_INFO_PKT` flag (0x0040).
const INFO_PKT_LOW_BYTE: u8 = 0x40;
/// `INFO_COMPRESSION` of the Client Info flags.
const INFO_COMPRESSION: u32 = 0x80;
/// `CompressionTypeMask` of the Client Info flags.
const COMPRESSION_TYPE_MASK: u32 = 0x1E00;

impl ConnectOptions {
    /// Options with a 1024×768 desktop, no fixed source and a 20 s set-up deadline.
    pub fn new(addr: SocketAddr, user: impl Into<String>, password: impl Into<String>) -> Self {
        ConnectOptions {
            addr,
            user: user.into(),
            password: password.into(),
            width: 1024,
            height: 768,
            source: None,
            timeout: Duration::from_secs(20),
            nla: false,
            client_info: ClientInfoShape::Plain,
            keyboard_layout: 0x409,
        }
    }
}

/// Counters of what the server sent, from the end of the connection sequence on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Decrypted bytes received (the RDP PDUs, after TLS).
    pub bytes: u64,
    /// PDUs received (fast-path and X.224 frames).
    pub pdus: u64,
    /// Graphics updates decoded (one per updated region reported by ironrdp-session).
    pub updates: u64,
    /// Pixels those updates covered; divided by the desktop's area it is how many whole
    /// screens were redrawn.
    pub pixels: u64,
}

/// The state of one connection.
pub struct RdpSession {
    io: Framed<tokio_rustls::client::TlsStream<TcpStream>>,
    stage: ActiveStage,
    image: DecodedImage,
    stats: Stats,
    setup: Duration,
    first_update_at: Instant,
    io_channel_id: u16,
    user_channel_id: u16,
    local: SocketAddr,
}

impl std::fmt::Debug for RdpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdpSession")
            .field("local", &self.local)
            .field("desktop", &(self.image.width(), self.image.height()))
            .field("stats", &self.stats)
            .field("setup", &self.setup)
            .finish()
    }
}

/// A byte stream with a receive buffer that frames RDP PDUs. Reads are cancel safe: bytes read
/// stay in the buffer until a whole PDU is there.
struct Framed<S> {
    stream: S,
    buf: Vec<u8>,
    bytes_in: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    fn new(stream: S) -> Self {
        Framed {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            bytes_in: 0,
        }
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(io("read from the server"))?;
        if n == 0 {
            return Err(RdpClientError::Closed(String::new()));
        }
        self.bytes_in += n as u64;
        self.buf
            .extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(())
    }

    fn take(&mut self, len: usize) -> Result<Vec<u8>> {
        if len > self.buf.len() {
            return Err(RdpClientError::Pdu(format!(
                "frame of {len} bytes with {} buffered",
                self.buf.len()
            )));
        }
        Ok(self.buf.drain(..len).collect())
    }

    /// The next PDU the connector expects (others are dropped, as ironrdp-async does).
    async fn read_by_hint(&mut self, hint: &dyn PduHint) -> Result<Vec<u8>> {
        loop {
            match hint
                .find_size(&self.buf)
                .map_err(|e| RdpClientError::Pdu(e.to_string()))?
            {
                Some((_, 0)) => return Err(RdpClientError::Pdu("zero-length PDU".to_owned())),
                Some((true, len)) if self.buf.len() >= len => return self.take(len),
                Some((false, len)) if self.buf.len() >= len => {
                    self.take(len)?;
                }
                _ => self.fill().await?,
            }
        }
    }

    /// The next fast-path or X.224 PDU.
    async fn read_pdu(&mut self) -> Result<(Action, Vec<u8>)> {
        loop {
            match ironrdp_pdu::find_size(&self.buf)
                .map_err(|e| RdpClientError::Pdu(e.to_string()))?
            {
                Some(info) if self.buf.len() >= info.length => {
                    return Ok((info.action, self.take(info.length)?));
                }
                _ => self.fill().await?,
            }
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(io("write to the server"))?;
        self.stream.flush().await.map_err(io("flush to the server"))
    }
}

/// Accepts any server certificate but checks the handshake signature against it.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(tokio_rustls::TlsConnector::from(Arc::clone(c)));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        .with_no_client_auth();
    // RDP servers (xrdp, FreeRDP) do not resume sessions; a ticket store only costs memory.
    config.resumption = rustls::client::Resumption::disabled();
    let config = Arc::clone(CONFIG.get_or_init(|| Arc::new(config)));
    Ok(tokio_rustls::TlsConnector::from(config))
}

fn config(options: &ConnectOptions) -> ironrdp_connector::Config {
    ironrdp_connector::Config {
        desktop_size: DesktopSize {
            width: options.width,
            height: options.height,
        },
        monitor_layout: None,
        desktop_scale_factor: 0,
        desktop_physical_size: None,
        desktop_orientation: None,
        device_scale_factor: None,
        monitor_extended_layout: None,
        relative_mouse_input: false,
        enable_tls: true,
        enable_credssp: options.nla,
        enable_standard_rdp_security: false,
        credentials: Credentials::UsernamePassword {
            username: options.user.clone(),
            password: options.password.clone(),
        },
        domain: None,
        client_build: 0,
        client_name: "sekisho-headless".to_owned(),
        keyboard_type: gcc::KeyboardType::IBM_ENHANCED,
        keyboard_subtype: 0,
        keyboard_functional_keys_count: 12,
        keyboard_layout: options.keyboard_layout,
        connection_type: gcc::ConnectionType::Lan,
        ime_file_name: String::new(),
        // No codecs: plain bitmap updates, which ironrdp-session (and Sekisho's player)
        // decode without a GFX pipeline.
        bitmap: None,
        dig_product_id: String::new(),
        client_dir: String::new(),
        alternate_shell: String::new(),
        work_dir: String::new(),
        remote_application_mode: false,
        rail_support_level: ironrdp_pdu::rdp::capability_sets::RailSupportLevel::empty(),
        platform: ironrdp_pdu::rdp::capability_sets::MajorPlatformType::UNIX,
        hardware_id: None,
        request_data: None,
        // Log on with the credentials given (xrdp's autorun wants it; Sekisho sets it anyway).
        autologon: true,
        enable_audio_playback: false,
        enable_audio_capture: false,
        performance_flags: Default::default(),
        license_cache: None,
        timezone_info: Default::default(),
        compression_type: None,
        enable_server_pointer: false,
        pointer_software_rendering: false,
        multitransport_flags: None,
        support_dyn_vc_gfx_protocol: false,
    }
}

fn connector_err(e: impl std::fmt::Display) -> RdpClientError {
    RdpClientError::Connector(e.to_string())
}

fn session_err(e: impl std::fmt::Display) -> RdpClientError {
    RdpClientError::Session(e.to_string())
}

/// Drives `connector` through its next step, writing what it answers.
async fn step<S: AsyncRead + AsyncWrite + Unpin>(
    connector: &mut ClientConnector,
    io: &mut Framed<S>,
    buf: &mut WriteBuf,
) -> Result<()> {
    step_shaped(connector, io, buf, ClientInfoShape::Plain).await
}

/// [`step`], with the Client Info PDU bent to `shape` on its way out.
async fn step_shaped<S: AsyncRead + AsyncWrite + Unpin>(
    connector: &mut ClientConnector,
    io: &mut Framed<S>,
    buf: &mut WriteBuf,
    shape: ClientInfoShape,
) -> Result<()> {
    buf.clear();
    let written = match connector.next_pdu_hint() {
        Some(hint) => {
            let pdu = io.read_by_hint(hint).await?;
            connector.step(&pdu, None, buf).map_err(connector_err)?
        }
        None => connector.step_no_input(buf).map_err(connector_err)?,
    };
    if written.size().is_some() {
        io.write_all(&shape.apply(buf.filled())?).await?;
    }
    Ok(())
}

/// The subjectPublicKey of a DER certificate: what CredSSP binds the NLA exchange to.
fn public_key_of(cert: &[u8]) -> Result<Vec<u8>> {
    use x509_cert::der::Decode as _;
    let cert = x509_cert::Certificate::from_der(cert)
        .map_err(|e| RdpClientError::Connector(format!("the server's certificate: {e}")))?;
    Ok(cert
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec())
}

/// Runs NLA: CredSSP with NTLM until the server has the credentials (and, for HYBRID_EX, said
/// yes in its Early User Authorization Result); a refusal is a [`RdpClientError::Connector`].
async fn credssp<S: AsyncRead + AsyncWrite + Unpin>(
    connector: &mut ClientConnector,
    io: &mut Framed<S>,
    options: &ConnectOptions,
    server_public_key: Vec<u8>,
    buf: &mut WriteBuf,
) -> Result<()> {
    let ClientConnectorState::Credssp { selected_protocol } = connector.state else {
        return Err(RdpClientError::Connector(
            "not at the CredSSP stage".to_owned(),
        ));
    };
    let (mut sequence, mut request) = CredsspSequence::init(
        Credentials::UsernamePassword {
            username: options.user.clone(),
            password: options.password.clone(),
        },
        None,
        selected_protocol,
        ServerName::new(options.addr.ip().to_string()),
        server_public_key,
        None,
    )
    .map_err(connector_err)?;
    loop {
        // NTLM needs no network beyond this connection: the generator completes at once.
        let state = sequence
            .process_ts_request(request)
            .resolve_to_result()
            .map_err(|e| RdpClientError::Connector(format!("CredSSP: {e}")))?;
        buf.clear();
        let written = sequence
            .handle_process_result(state, buf)
            .map_err(connector_err)?;
        if written.size().is_some() {
            io.write_all(buf.filled()).await?;
        }
        let Some(hint) = sequence.next_pdu_hint() else {
            break;
        };
        let pdu = io.read_by_hint(hint).await?;
        match sequence
            .decode_server_message(&pdu)
            .map_err(connector_err)?
        {
            Some(next) => request = next,
            None => break,
        }
    }
    connector.mark_credssp_as_done();
    Ok(())
}

/// Connects, runs the whole connection sequence and waits for the first graphics update.
pub async fn connect(options: &ConnectOptions) -> Result<RdpSession> {
    let started = Instant::now();
    tokio::time::timeout(options.timeout, connect_inner(options, started))
        .await
        .map_err(|_| RdpClientError::Timeout("the first graphics update"))?
}

async fn connect_inner(options: &ConnectOptions, started: Instant) -> Result<RdpSession> {
    let socket = if options.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io("socket"))?;
    if let Some(ip) = options.source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(io("bind the source address"))?;
    }
    let tcp = socket.connect(options.addr).await.map_err(io("connect"))?;
    tcp.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
    let local = tcp.local_addr().map_err(io("local address"))?;

    let mut connector = ClientConnector::new(config(options), local);
    let mut buf = WriteBuf::new();
    let mut plain = Framed::new(tcp);
    while !connector.should_perform_security_upgrade() {
        step(&mut connector, &mut plain, &mut buf).await?;
    }
    if !plain.buf.is_empty() {
        return Err(RdpClientError::Pdu(
            "bytes after the Connection Confirm, before TLS".to_owned(),
        ));
    }
    let name = rustls::pki_types::ServerName::IpAddress(options.addr.ip().into());
    let tls = tls_connector()?
        .connect(name, plain.stream)
        .await
        .map_err(io("TLS handshake"))?;
    connector.mark_security_upgrade_as_done();
    let mut io = Framed::new(tls);
    io.bytes_in = plain.bytes_in;
    if connector.should_perform_credssp() {
        let cert = io
            .stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        let key = public_key_of(cert.ok_or_else(|| {
            RdpClientError::Connector("the server presented no certificate".to_owned())
        })?)?;
        credssp(&mut connector, &mut io, options, key, &mut buf).await?;
    }
    let outcome = loop {
        step_shaped(&mut connector, &mut io, &mut buf, options.client_info).await?;
        if let Some(outcome) = connector.state.take_outcome() {
            break outcome;
        }
    };
    let result = match outcome {
        ConnectionOutcome::Connected(r) => r,
        ConnectionOutcome::Redirected(r) => {
            return Err(RdpClientError::Terminated(format!(
                "redirected to session {}",
                r.session_id
            )));
        }
    };
    let io_channel_id = result.io_channel_id;
    let user_channel_id = result.user_channel_id;
    let image = DecodedImage::new(
        PixelFormat::RgbA32,
        result.desktop_size.width,
        result.desktop_size.height,
    );
    let stage = ActiveStageBuilder {
        static_channels: result.static_channels,
        user_channel_id,
        io_channel_id,
        message_channel_id: result.message_channel_id,
        share_id: result.share_id,
        compression_type: result.compression_type,
        enable_server_pointer: false,
        pointer_software_rendering: false,
    }
    .build();
    let mut session = RdpSession {
        io,
        stage,
        image,
        stats: Stats::default(),
        setup: Duration::ZERO,
        first_update_at: Instant::now(),
        io_channel_id,
        user_channel_id,
        local,
    };
    while session.stats.updates == 0 {
        session.process_next().await?;
    }
    session.setup = started.elapsed();
    session.first_update_at = Instant::now();
    Ok(session)
}

impl RdpSession {
    /// TCP connect to the first decoded graphics update.
    pub fn setup_time(&self) -> Duration {
        self.setup
    }

    /// What the server sent since the connection sequence ended.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// When the first graphics update was decoded.
    pub fn first_update_at(&self) -> Instant {
        self.first_update_at
    }

    /// The desktop as decoded so far (RGBA, `width × height`).
    pub fn image(&self) -> &DecodedImage {
        &self.image
    }

    /// The desktop size the server chose.
    pub fn desktop_size(&self) -> (u16, u16) {
        (self.image.width(), self.image.height())
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The MCS I/O and user channel ids the server assigned.
    pub fn channel_ids(&self) -> (u16, u16) {
        (self.io_channel_id, self.user_channel_id)
    }

    /// Reads and processes one PDU.
    async fn process_next(&mut self) -> Result<()> {
        let (action, frame) = self.io.read_pdu().await?;
        self.stats.bytes += frame.len() as u64;
        self.stats.pdus += 1;
        let outputs = self
            .stage
            .process(&mut self.image, action, &frame, None)
            .map_err(session_err)?;
        self.handle(outputs).await
    }

    async fn handle(&mut self, outputs: Vec<ActiveStageOutput>) -> Result<()> {
        for out in outputs {
            match out {
                ActiveStageOutput::ResponseFrame(bytes) if !bytes.is_empty() => {
                    self.io.write_all(&bytes).await?;
                }
                ActiveStageOutput::GraphicsUpdate(r) => {
                    self.stats.updates += 1;
                    let w = u64::from(r.right.saturating_sub(r.left)) + 1;
                    let h = u64::from(r.bottom.saturating_sub(r.top)) + 1;
                    self.stats.pixels += w * h;
                }
                ActiveStageOutput::Terminate(reason) => {
                    return Err(RdpClientError::Terminated(reason.description()));
                }
                ActiveStageOutput::DeactivateAll => {
                    return Err(RdpClientError::Terminated(
                        "Deactivate All (reactivation is not supported by this client)".to_owned(),
                    ));
                }
                ActiveStageOutput::ServerRedirection(r) => {
                    return Err(RdpClientError::Terminated(format!(
                        "redirected to session {}",
                        r.session_id
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Processes server output for `duration` (or until an error).
    pub async fn pump_for(&mut self, duration: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            match tokio::time::timeout_at(deadline, self.process_next()).await {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            }
        }
    }

    /// Processes server output until at least `n` more graphics updates were decoded.
    pub async fn wait_updates(&mut self, n: u64, timeout: Duration) -> Result<()> {
        let target = self.stats.updates + n;
        tokio::time::timeout(timeout, async {
            while self.stats.updates < target {
                self.process_next().await?;
            }
            Ok(())
        })
        .await
        .map_err(|_| RdpClientError::Timeout("graphics updates"))?
    }

    async fn send_input(&mut self, events: &[FastPathInputEvent]) -> Result<()> {
        let outputs = self
            .stage
            .process_fastpath_input(&mut self.image, events)
            .map_err(session_err)?;
        self.handle(outputs).await
    }

    /// Presses and releases the key with this scan code (set 1, e.g. 0x1E for A).
    pub async fn key(&mut self, scancode: u8) -> Result<()> {
        self.send_input(&[
            FastPathInputEvent::KeyboardEvent(KeyboardFlags::empty(), scancode),
            FastPathInputEvent::KeyboardEvent(KeyboardFlags::RELEASE, scancode),
        ])
        .await
    }

    /// Types `text` as a US keyboard would (scan codes, Shift for capitals and shifted
    /// symbols; `\n` is Enter, `\u{8}` Backspace), one key every `gap` so the server sees
    /// keys as a person types them. Characters without a US key are an error.
    pub async fn type_text(&mut self, text: &str, gap: Duration) -> Result<()> {
        const SHIFT: u8 = 0x2A;
        for c in text.chars() {
            let (code, shift) = us_scancode(c)
                .ok_or_else(|| RdpClientError::Pdu(format!("no US key types {c:?}")))?;
            let mut events = Vec::new();
            if shift {
                events.push(FastPathInputEvent::KeyboardEvent(
                    KeyboardFlags::empty(),
                    SHIFT,
                ));
            }
            events.push(FastPathInputEvent::KeyboardEvent(
                KeyboardFlags::empty(),
                code,
            ));
            events.push(FastPathInputEvent::KeyboardEvent(
                KeyboardFlags::RELEASE,
                code,
            ));
            if shift {
                events.push(FastPathInputEvent::KeyboardEvent(
                    KeyboardFlags::RELEASE,
                    SHIFT,
                ));
            }
            self.send_input(&events).await?;
            self.pump_for(gap).await?;
        }
        Ok(())
    }

    /// Moves the pointer to (`x`, `y`).
    pub async fn mouse_move(&mut self, x: u16, y: u16) -> Result<()> {
        self.send_input(&[FastPathInputEvent::MouseEvent(MousePdu {
            flags: PointerFlags::MOVE,
            number_of_wheel_rotation_units: 0,
            x_position: x,
            y_position: y,
        })])
        .await
    }

    /// Ends the session as a client that closes its window does: an MCS Disconnect Provider
    /// Ultimatum (user requested), then TLS close_notify and the TCP FIN.
    pub async fn disconnect(mut self) -> Result<Stats> {
        let ultimatum = ironrdp_core::encode_vec(&X224(McsMessage::DisconnectProviderUltimatum(
            DisconnectProviderUltimatum::from_reason(DisconnectReason::UserRequested),
        )))
        .map_err(|e| RdpClientError::Pdu(e.to_string()))?;
        self.io.write_all(&ultimatum).await?;
        // Servers may answer nothing; a short grace lets them close first.
        let _ = tokio::time::timeout(Duration::from_millis(200), self.io.stream.shutdown()).await;
        Ok(self.stats)
    }

    /// Writes the desktop as decoded so far to `path` as an RGB PNG.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        save_png(&self.image, path)
    }
}

/// Writes `image` (RGBA) to `path` as an RGB PNG.
pub fn save_png(image: &DecodedImage, path: &Path) -> Result<()> {
    let png_err = |e: &dyn std::fmt::Display| RdpClientError::Png(e.to_string());
    let file = std::fs::File::create(path).map_err(io("create the PNG file"))?;
    let mut enc = png::Encoder::new(
        std::io::BufWriter::new(file),
        u32::from(image.width()),
        u32::from(image.height()),
    );
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| png_err(&e))?;
    let rgb: Vec<u8> = image
        .data()
        .chunks_exact(4)
        .flat_map(|p| p.iter().take(3).copied())
        .collect();
    writer.write_image_data(&rgb).map_err(|e| png_err(&e))?;
    writer.finish().map_err(|e| png_err(&e))
}

/// The share of pixels of `image` that are not black: a blank desktop is 0.
pub fn non_black_fraction(image: &DecodedImage) -> f64 {
    let total = image.data().len() / 4;
    if total == 0 {
        return 0.0;
    }
    let lit = image
        .data()
        .chunks_exact(4)
        .filter(|p| p.iter().take(3).any(|&c| c > 16))
        .count();
    lit as f64 / total as f64
}

/// The US keyboard's scan code (set 1) for `c`, and whether Shift is needed.
fn us_scancode(c: char) -> Option<(u8, bool)> {
    const ROWS: [(u8, &str, &str); 4] = [
        (0x02, "1234567890-=", "!@#$%^&*()_+"),
        (0x10, "qwertyuiop[]", "QWERTYUIOP{}"),
        (0x1E, "asdfghjkl;'`", "ASDFGHJKL:\"~"),
        (0x2B, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
    ];
    match c {
        '\n' => return Some((0x1C, false)),
        '\u{8}' => return Some((0x0E, false)),
        '\t' => return Some((0x0F, false)),
        ' ' => return Some((0x39, false)),
        _ => {}
    }
    ROWS.iter().find_map(|(first, plain, shifted)| {
        let at = |row: &str| row.chars().position(|k| k == c);
        at(plain)
            .map(|i| (i, false))
            .or_else(|| at(shifted).map(|i| (i, true)))
            .and_then(|(i, shift)| Some((first.checked_add(u8::try_from(i).ok()?)?, shift)))
    })
}
