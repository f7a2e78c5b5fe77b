//! One-time VNC passwords through QEMU's monitor (QMP over TCP, `target.vnc_qmp`): right
//! before connecting to the console Sekisho sets a fresh random password with `set_password`
//! and lets it expire shortly after with `expire_password`, so no long-lived console password
//! has to be stored anywhere and a password seen on the wire is useless a few seconds later.
//!
//! QMP is line-delimited JSON: a greeting, then one reply per command, with asynchronous
//! `{"event": …}` lines interleaved (skipped here).

use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connecting to and talking with the monitor, all steps together.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest QMP line accepted; the replies used here are far shorter. A monitor that sends
/// more without a newline is refused instead of growing a buffer.
pub const MAX_LINE: usize = 64 * 1024;
/// Seconds the one-time password stays valid on QEMU: long enough for the handshake that
/// follows at once, short enough that it is worthless afterwards (sessions already
/// authenticated are not affected by expiry).
pub const PASSWORD_LIFETIME_SECS: u32 = 30;
/// VNC authentication uses the first 8 bytes of a password.
pub const PASSWORD_LEN: usize = 8;
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

#[derive(Debug, Error)]
pub enum QmpError {
    #[error("QMP at {0} timed out")]
    Timeout(String),
    #[error("QMP connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP monitor closed the connection")]
    Closed,
    #[error("QMP line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("QMP sent something that is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("QMP greeting missing (not a QEMU monitor?)")]
    NoGreeting,
    #[error("QMP refused {command}: {desc}")]
    Refused { command: &'static str, desc: String },
}

/// A one-time VNC password (Debug does not show it).
pub struct OneTimePassword(String);

impl OneTimePassword {
    fn random() -> Self {
        let mut rng = rand::rng();
        OneTimePassword(
            (0..PASSWORD_LEN)
                .map(|_| {
                    char::from(
                        ALPHABET
                            .get(rng.random_range(0..ALPHABET.len()))
                            .copied()
                            .unwrap_or(b'x'),
                    )
                })
                .collect(),
        )
    }

    /// The password, for the VNC authentication that follows (and nowhere else).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for OneTimePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// Sets a fresh VNC password on the QEMU whose monitor listens at `addr`, valid for
/// [`PASSWORD_LIFETIME_SECS`], and returns it.
pub async fn set_one_time_password(addr: &str) -> Result<OneTimePassword, QmpError> {
    tokio::time::timeout(QMP_TIMEOUT, set_password_inner(addr))
        .await
        .map_err(|_| QmpError::Timeout(addr.to_owned()))?
}

async fn set_password_inner(addr: &str) -> Result<OneTimePassword, QmpError> {
    let mut qmp = Qmp {
        stream: TcpStream::connect(addr).await?,
        buf: Vec::new(),
    };
    let greeting = qmp.next_message().await?;
    if greeting.get("QMP").is_none() {
        return Err(QmpError::NoGreeting);
    }
    qmp.execute("qmp_capabilities", json!({"execute": "qmp_capabilities"}))
        .await?;
    let password = OneTimePassword::random();
    qmp.execute(
        "set_password",
        json!({"execute": "set_password",
               "arguments": {"protocol": "vnc", "password": password.expose()}}),
    )
    .await?;
    qmp.execute(
        "expire_password",
        json!({"execute": "expire_password",
               "arguments": {"protocol": "vnc", "time": format!("+{PASSWORD_LIFETIME_SECS}")}}),
    )
    .await?;
    let _ = qmp.stream.shutdown().await;
    Ok(password)
}

struct Qmp {
    stream: TcpStream,
    /// Bytes read but not yet split into lines. INVARIANT: at most `MAX_LINE` + one read.
    buf: Vec<u8>,
}

impl Qmp {
    /// Sends `command` and waits for its reply, skipping events.
    async fn execute(&mut self, name: &'static str, command: Value) -> Result<Value, QmpError> {
        let mut line = serde_json::to_vec(&command)?;
        line.push(b'\n');
        self.stream.write_all(&line).await?;
        loop {
            let msg = self.next_message().await?;
            if msg.get("event").is_some() {
                continue;
            }
            if let Some(ret) = msg.get("return") {
                return Ok(ret.clone());
            }
            let desc = msg
                .get("error")
                .and_then(|e| e.get("desc"))
                .and_then(Value::as_str)
                .unwrap_or("unexpected reply")
                .to_owned();
            return Err(QmpError::Refused {
                command: name,
                desc,
            });
        }
    }

    /// The next JSON line.
    async fn next_message(&mut self) -> Result<Value, QmpError> {
        loop {
            if let Some(v) = split_line(&mut self.buf)? {
                return Ok(v);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(QmpError::Closed);
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }
}

/// Takes one complete, non-blank line off `buf` and parses it; `None` if no complete line yet.
fn split_line(buf: &mut Vec<u8>) -> Result<Option<Value>, QmpError> {
    loop {
        let Some(end) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_LINE {
                return Err(QmpError::LineTooLong);
            }
            return Ok(None);
        };
        if end > MAX_LINE {
            return Err(QmpError::LineTooLong);
        }
        let line: Vec<u8> = buf.drain(..=end).collect();
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        return Ok(Some(serde_json::from_slice(text)?));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_blank_lines_skipped() {
        let mut buf = b"{\"QMP\": {}}\r\n\r\n{\"return\": {}}\r\n{\"ev".to_vec();
        assert!(split_line(&mut buf).unwrap().unwrap().get("QMP").is_some());
        assert!(
            split_line(&mut buf)
                .unwrap()
                .unwrap()
                .get("return")
                .is_some()
        );
        assert!(split_line(&mut buf).unwrap().is_none());
        assert_eq!(buf, b"{\"ev");
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut buf = vec![b' '; MAX_LINE + 1];
        assert!(matches!(split_line(&mut buf), Err(QmpError::LineTooLong)));
        let mut buf = b"not json\n".to_vec();
        assert!(matches!(split_line(&mut buf), Err(QmpError::NotJson(_))));
    }

    #[test]
    fn passwords_are_fresh_and_hidden() {
        let a = OneTimePassword::random();
        let b = OneTimePassword::random();
        assert_eq!(a.expose().len(), PASSWORD_LEN);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(format!("{a:?}"), "<secret>");
    }

    /// A tiny monitor on loopback: the exchange with a refusal of `set_password`.
    #[tokio::test]
    async fn a_refused_command_is_an_error_with_qemu_s_reason() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"{\"QMP\": {\"version\": {}}}\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"{\"return\": {}}\r\n{\"event\": \"X\"}\r\n")
                .await
                .unwrap();
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(
                b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no password auth\"}}\r\n",
            )
            .await
            .unwrap();
        });
        let err = set_one_time_password(&addr).await.unwrap_err();
        assert!(
            matches!(&err, QmpError::Refused { command: "set_password", desc } if desc == "no password auth"),
            "{err}"
        );
    }
}
