//! A TCP stream with a read buffer, read through the sans-IO RFB decoders: what the VNC
//! handshake and the relay both read the viewer and the hypervisor's console through.

use anyhow::{Result, bail};
use player::rfb::{MAX_MESSAGE_LEN, RfbError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read chunk size.
const READ_CHUNK: usize = 64 * 1024;

/// A TCP stream with a read buffer, read through the sans-IO decoders.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// Bytes read but not yet decoded.
    /// INVARIANT: at most `MAX_MESSAGE_LEN + READ_CHUNK` bytes (checked in `fill`).
    pub(crate) buf: Vec<u8>,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
        }
    }

    /// Reads more bytes; errors on EOF and on a peer that makes the buffer exceed the limit.
    /// Cancel-safe (`read_buf` appends only what was read), so it can sit in `select!`.
    pub(crate) async fn fill(&mut self) -> Result<usize> {
        if self.buf.len() as u64 > MAX_MESSAGE_LEN {
            bail!("peer message exceeds {MAX_MESSAGE_LEN} bytes");
        }
        self.buf.reserve(READ_CHUNK);
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            bail!("connection closed");
        }
        Ok(n)
    }

    /// Reads one message with `decode`; returns it and its raw bytes.
    pub(crate) async fn read_msg<T>(
        &mut self,
        decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, RfbError>,
    ) -> Result<(T, Vec<u8>)> {
        loop {
            if let Some((msg, n)) = decode(&self.buf)? {
                let raw: Vec<u8> = self.buf.drain(..n).collect();
                return Ok((msg, raw));
            }
            self.fill().await?;
        }
    }

    pub(crate) async fn read_exact_n<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (v, _) = self
            .read_msg(|b| {
                Ok(b.get(..N)
                    .and_then(|s| <[u8; N]>::try_from(s).ok())
                    .map(|a| (a, N)))
            })
            .await?;
        Ok(v)
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }
}
