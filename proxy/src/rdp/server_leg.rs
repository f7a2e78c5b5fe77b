//! The server leg, dialled only with an authenticated contractor: X.224, TLS (the target's
//! certificate pinned on first use), CredSSP with the injected credential when the target
//! selects NLA, then the MCS sequence run by [`McsConnector`].

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ironrdp_pdu::nego::{ConnectionConfirm, SecurityProtocol};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use super::connect::{ConnectStep, Connected, McsConnector};
use super::credssp;
use super::framing;
use super::negotiation;
use super::nla_client::{ClientStep, NlaClient, NlaClientError};
use super::server_tls;
use super::types::TargetCredentials;
use crate::services::Admission;

/// Dials the admitted target's RDP service: only an [`Admission`] gives its endpoint.
pub(crate) async fn connect_server(
    admission: &Admission,
    credentials: &TargetCredentials,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, SecurityProtocol)> {
    let addr = admission.rdp_endpoint();
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
    let connector = TlsConnector::from(Arc::new(server_tls::client_config()?));
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
pub(crate) async fn connect_nla<S>(
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

/// Runs the MCS sequence with the server: `first` (the Connect Initial) goes out, then
/// `connector` answers every server frame until it is done. Returns the end of the sequence
/// and the bytes read past it (they belong to the relay).
pub(crate) async fn connect_mcs<S>(
    server: &mut S,
    mut connector: McsConnector,
    first: &[u8],
) -> Result<(Box<Connected>, Vec<u8>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    server.write_all(first).await?;
    server.flush().await?;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        while let Some((_, len)) = framing::decode(&buf)? {
            let frame: Vec<u8> = buf.drain(..len).collect();
            match connector.server_frame(&frame)? {
                ConnectStep::Send(frames) => {
                    for f in frames {
                        server.write_all(&f).await?;
                    }
                    server.flush().await?;
                }
                ConnectStep::Done(connected) => {
                    server.write_all(&connected.client_info).await?;
                    server.flush().await?;
                    return Ok((connected, buf));
                }
            }
        }
        let mut chunk = [0u8; 4096];
        let n = server.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed during the MCS connection sequence");
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}
