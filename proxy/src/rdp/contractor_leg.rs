//! The contractor leg, up to the logon: the client's hello (preconnection PDU and X.224
//! Connection Request), TLS with Sekisho's certificate, CredSSP when the account has an
//! `nt_hash` and the client offers it, then the MCS sequence answered by [`McsAcceptor`] up to
//! the Client Info PDU. Nothing here reaches a target.

use std::sync::Arc;

use anyhow::{Result, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::accept::{AcceptStep, ClientLogon, McsAcceptor};
use super::credssp::{self, Account, NlaAcceptor, NlaError, Step};
use super::framing;
use super::negotiation::{self, ClientHello, ConnectionRequestInfo};

/// Bytes buffered while waiting for the client's hello: a preconnection PDU and one X.224
/// frame at most.
const MAX_HELLO_BUFFER: usize = negotiation::MAX_PCB_LEN + framing::MAX_FRAME_LEN;

/// What the client's first bytes told us.
#[derive(Debug, Default)]
pub(crate) struct Hello {
    pub(crate) pcb_target: Option<String>,
    pub(crate) request: Option<ConnectionRequestInfo>,
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

/// Answers the client's MCS sequence with `acceptor` until the Client Info PDU; returns the
/// logon and the bytes read past it (they belong to the relay). `buf` holds bytes already read.
pub(crate) async fn accept_mcs<S>(
    client: &mut S,
    mut acceptor: McsAcceptor,
    mut buf: Vec<u8>,
) -> Result<(Box<ClientLogon>, Vec<u8>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        while let Some((_, len)) = framing::decode(&buf)? {
            let frame: Vec<u8> = buf.drain(..len).collect();
            match acceptor.client_frame(&frame)? {
                AcceptStep::Reply(frames) => {
                    for f in frames {
                        client.write_all(&f).await?;
                    }
                    client.flush().await?;
                }
                AcceptStep::Logon(logon) => return Ok((logon, buf)),
            }
        }
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            bail!("client closed before its Client Info PDU");
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// A stream whose first reads return `prefix`: bytes read past the end of the CredSSP
/// exchange, which belong to the relay.
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
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

/// Wraps the front door's TLS identity so that the subjectPublicKey of the certificate chosen
/// for this connection is kept: CredSSP binds the NLA exchange to it.
pub(crate) fn capture_public_key(
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
            *slot = credssp::spki_public_key(spki.as_ref());
        }
        Some(key)
    }
}

/// The Early User Authorization Result PDU saying AUTHZ_SUCCESS (MS-RDPBCGR 2.2.10.2): a
/// little-endian u32, zero.
pub(crate) const EARLY_USER_AUTH_SUCCESS: [u8; 4] = 0u32.to_le_bytes();

/// Runs CredSSP as server over the contractor's TLS stream. Nothing of it is recorded.
/// With `early_result` (HYBRID_EX) a successful logon is followed by the Early User
/// Authorization Result PDU, which the client waits for before it goes on.
pub(crate) async fn accept_nla<S>(
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
