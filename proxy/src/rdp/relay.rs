//! The relay loop: moves whole frames between the legs through the [`Mitm`] machine and
//! carries out its actions. Generic over where it records ([`Sink`]), so that the loop is
//! tested without the catalogue; [`super::session`] plugs in the live session.

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{info, trace, warn};

use super::framing;
use super::mitm::{Action, Mitm};
use super::types::Direction;

/// Bytes read from a leg at a time; frames are at most [`framing::MAX_FRAME_LEN`].
const READ_CHUNK: usize = 16 * 1024;

/// How a relay ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEnd {
    /// A leg closed its connection.
    Closed {
        /// the client (else the server) closed
        by_client: bool,
    },
    /// Sekisho ended it (kill, console ended, shutdown, recording failure).
    Ended(String),
}

/// Where a relay sends what it records; [`LiveSession`] in production, a fake in tests.
pub trait Sink {
    /// Records one PDU.
    fn record(&self, direction: Direction, bytes: &[u8]) -> impl Future<Output = Result<()>>;
    /// Records an event (`rdp.*` kind and a sentence).
    fn event(&self, kind: &str, detail: &str) -> impl Future<Output = Result<()>>;
    /// Resolves when Sekisho ends the session (kill, console ended, shutdown…), with a
    /// message for the log.
    fn ended(&self) -> impl Future<Output = String>;
}

/// The relay loop, generic over where it records. Returns how the session ended.
pub async fn relay_frames<K, C, S>(
    sink: &K,
    mut mitm: Mitm,
    client: C,
    server: S,
) -> Result<RelayEnd>
where
    K: Sink,
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut server_r, mut server_w) = tokio::io::split(server);
    let mut cbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut sbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);

    let result: Result<RelayEnd> = async {
        loop {
            let (from_client, n) = tokio::select! {
                message = sink.ended() => {
                    info!(reason = %message, "Session ended by Sekisho");
                    // Tell the client the session is over, as a server would; a client that
                    // is not reading cannot hold the end up for long.
                    if let Ok(pdu) = super::mitm::disconnect_ultimatum() {
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_millis(500),
                            async {
                                client_w.write_all(&pdu).await?;
                                client_w.flush().await
                            },
                        )
                        .await;
                    }
                    return Ok(RelayEnd::Ended(message));
                }
                r = read_more(&mut client_r, &mut cbuf) => (true, r.context("client read")?),
                r = read_more(&mut server_r, &mut sbuf) => (false, r.context("server read")?),
            };
            if n == 0 {
                info!(
                    side = if from_client { "client" } else { "server" },
                    "Connection closed"
                );
                return Ok(RelayEnd::Closed {
                    by_client: from_client,
                });
            }
            let buf = if from_client { &mut cbuf } else { &mut sbuf };
            while let Some((_, len)) = framing::decode(buf)? {
                let frame: Vec<u8> = buf.drain(..len).collect();
                trace!(len, from_client, "Frame");
                let actions = if from_client {
                    mitm.client_frame(&frame)?
                } else {
                    mitm.server_frame(&frame)?
                };
                for action in actions {
                    match action {
                        Action::ToServer(b) => {
                            server_w.write_all(&b).await.context("server write")?
                        }
                        Action::ToClient(b) => {
                            client_w.write_all(&b).await.context("client write")?
                        }
                        Action::Record { direction, bytes } => {
                            sink.record(direction, &bytes).await?
                        }
                        Action::Event { kind, detail } => {
                            info!(kind, detail = %detail, "Session event");
                            sink.event(kind, &detail).await?;
                        }
                    }
                }
            }
            server_w.flush().await.context("server write")?;
            client_w.flush().await.context("client write")?;
        }
    }
    .await;
    if let Err(e) = &result {
        warn!(error = %format!("{e:#}"), "Session failed");
    }
    // A peer that stopped reading must not keep the session (and its recording) open.
    let grace = std::time::Duration::from_secs(1);
    let _ = tokio::time::timeout(grace, client_w.shutdown()).await;
    let _ = tokio::time::timeout(grace, server_w.shutdown()).await;
    result
}

async fn read_more<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.len() > framing::MAX_FRAME_LEN * 2 {
        return Err(std::io::Error::other("frame buffer over limit"));
    }
    let mut chunk = [0u8; READ_CHUNK];
    let n = match r.read(&mut chunk).await {
        Ok(n) => n,
        // A peer that closes TCP without a TLS close_notify (xfreerdp killed, mstsc closed)
        // has simply gone.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
        Err(e) => return Err(e),
    };
    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdp::channels::ChannelRules;
    use crate::rdp::link::ChannelLink;
    use crate::rdp::mitm::MitmConfig;
    use crate::rdp::types::Negotiated;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::io::duplex;

    #[derive(Default)]
    struct FakeSink {
        records: Mutex<Vec<(Direction, usize)>>,
        end_after: Option<Duration>,
    }

    impl Sink for FakeSink {
        async fn record(&self, direction: Direction, bytes: &[u8]) -> Result<()> {
            self.records.lock().unwrap().push((direction, bytes.len()));
            Ok(())
        }
        async fn event(&self, _kind: &str, _detail: &str) -> Result<()> {
            Ok(())
        }
        async fn ended(&self) -> String {
            match self.end_after {
                Some(d) => {
                    tokio::time::sleep(d).await;
                    "killed".into()
                }
                None => std::future::pending().await,
            }
        }
    }

    fn mitm() -> Mitm {
        Mitm::new(
            MitmConfig {
                rules: ChannelRules::default(),
            },
            ChannelLink::identity(Negotiated::default(), 1007),
        )
    }

    #[tokio::test]
    async fn sekisho_ending_the_session_stops_the_relay_promptly() {
        let (client, _client_peer) = duplex(1024);
        let (server, _server_peer) = duplex(1024);
        let sink = FakeSink {
            end_after: Some(Duration::from_millis(50)),
            ..FakeSink::default()
        };
        let started = std::time::Instant::now();
        let end = relay_frames(&sink, mitm(), client, server).await.unwrap();
        assert_eq!(end, RelayEnd::Ended("killed".into()));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn garbage_from_the_client_closes_cleanly_and_reaches_no_server() {
        let (client, mut client_peer) = duplex(1024);
        let (server, mut server_peer) = duplex(1024);
        let sink = FakeSink::default();
        client_peer
            .write_all(&[0x03, 0x00, 0x00, 0x0c, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0])
            .await
            .unwrap();
        let r = relay_frames(&sink, mitm(), client, server).await;
        assert!(r.is_err());
        let mut got = Vec::new();
        server_peer.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty(), "nothing reached the server");
        assert!(sink.records.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn truncated_frame_then_close_is_a_clean_end() {
        let (client, mut client_peer) = duplex(1024);
        let (server, _server_peer) = duplex(1024);
        let sink = FakeSink::default();
        client_peer
            .write_all(&[0x03, 0x00, 0x01, 0x00, 0x02])
            .await
            .unwrap();
        drop(client_peer);
        let end = relay_frames(&sink, mitm(), client, server).await.unwrap();
        assert_eq!(end, RelayEnd::Closed { by_client: true });
    }

    #[tokio::test]
    async fn oversized_frame_is_refused() {
        let (client, mut client_peer) = duplex(1024);
        let (server, _server_peer) = duplex(1024);
        let sink = FakeSink::default();
        // Fast-path header announcing 0x7fff bytes is within limits; a TPKT of 0xffff too:
        // but the buffer limit stops a peer that never completes a frame.
        let writer = tokio::spawn(async move {
            let _ = client_peer.write_all(&[0x03, 0x00, 0xff, 0xff]).await;
            let junk = vec![0u8; 64 * 1024];
            for _ in 0..4 {
                if client_peer.write_all(&junk).await.is_err() {
                    break;
                }
            }
        });
        let r = relay_frames(&sink, mitm(), client, server).await;
        assert!(r.is_err());
        writer.abort();
    }
}
