//! Handshake messages (RFC 6143 §7.1, §7.3): ProtocolVersion, security types, SecurityResult,
//! ClientInit and ServerInit. The caller knows which message comes next; each decoder follows
//! the crate's `Ok(None)` = "need more bytes" convention.

use super::{
    Cur, MAX_FRAMEBUFFER_PIXELS, MAX_FRAMEBUFFER_SIDE, MAX_NAME_LEN, MAX_REASON_LEN, PResult,
    PixelFormat, RfbError, finish,
};

/// A protocol version: 3.3, 3.7 or 3.8 (others are mapped per RFC 6143 §7.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// 3.3: the server picks the security type; no failure reason after SecurityResult.
    V3_3,
    /// 3.7: security type list; no failure reason after SecurityResult.
    V3_7,
    /// 3.8: security type list and a failure reason.
    V3_8,
}

impl ProtocolVersion {
    /// The 12-byte wire form.
    pub fn to_bytes(self) -> &'static [u8; 12] {
        match self {
            ProtocolVersion::V3_3 => b"RFB 003.003\n",
            ProtocolVersion::V3_7 => b"RFB 003.007\n",
            ProtocolVersion::V3_8 => b"RFB 003.008\n",
        }
    }
}

/// Decodes a ProtocolVersion. Versions above 3.8 are treated as 3.8, and 3.4-3.6 (Apple's
/// 3.889 is also seen) as 3.3, as RFC 6143 §7.1.1 advises.
pub fn decode_version(buf: &[u8]) -> Result<Option<(ProtocolVersion, usize)>, RfbError> {
    let Some(b) = buf.get(..12) else {
        // Fail early on garbage so a non-RFB peer is not waited for.
        if !b"RFB ".starts_with(buf.get(..4.min(buf.len())).unwrap_or_default()) {
            return Err(RfbError::BadVersion(
                String::from_utf8_lossy(buf).into_owned(),
            ));
        }
        return Ok(None);
    };
    let text = String::from_utf8_lossy(b).into_owned();
    let parse = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = b.get(r)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let ok_shape = b.starts_with(b"RFB ") && b.get(7) == Some(&b'.') && b.get(11) == Some(&b'\n');
    let (Some(major), Some(minor), true) = (parse(4..7), parse(8..11), ok_shape) else {
        return Err(RfbError::BadVersion(text));
    };
    let v = match (major, minor) {
        (3, 3..=6) | (3, 889) => ProtocolVersion::V3_3,
        (3, 7) => ProtocolVersion::V3_7,
        (3, _) if minor >= 8 => ProtocolVersion::V3_8,
        (m, _) if m > 3 => ProtocolVersion::V3_8,
        _ => return Err(RfbError::BadVersion(text)),
    };
    Ok(Some((v, 12)))
}

/// The server's security type list (3.7+), or its refusal with a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityTypes {
    /// Types offered.
    Offered(Vec<u8>),
    /// Count zero: the server refuses the connection.
    Refused(String),
}

/// Decodes the 3.7+ security type list.
pub fn decode_security_types(buf: &[u8]) -> Result<Option<(SecurityTypes, usize)>, RfbError> {
    finish((|| {
        let mut c = Cur::new(buf);
        let n = c.u8()?;
        let v = if n == 0 {
            SecurityTypes::Refused(reason(&mut c)?)
        } else {
            SecurityTypes::Offered(c.take(usize::from(n))?.to_vec())
        };
        Ok((v, c.pos()))
    })())
}

/// Encodes a security type list, or a refusal when `types` is empty.
pub fn encode_security_types(
    types: &[u8],
    refusal: &str,
    out: &mut Vec<u8>,
) -> Result<(), RfbError> {
    if types.is_empty() {
        out.push(0);
        put_reason(refusal, out)
    } else {
        let n = u8::try_from(types.len())
            .map_err(|_| RfbError::InvalidArgument("more than 255 security types"))?;
        out.push(n);
        out.extend_from_slice(types);
        Ok(())
    }
}

fn reason(c: &mut Cur<'_>) -> PResult<String> {
    let len = c.u32()?;
    if len > MAX_REASON_LEN {
        return Err(RfbError::TooLong {
            what: "reason",
            len: len.into(),
            max: MAX_REASON_LEN.into(),
        }
        .into());
    }
    let b = c.take(usize::try_from(len).unwrap_or(usize::MAX))?;
    Ok(String::from_utf8_lossy(b).into_owned())
}

fn put_reason(reason: &str, out: &mut Vec<u8>) -> Result<(), RfbError> {
    let len = u32::try_from(reason.len())
        .ok()
        .filter(|l| *l <= MAX_REASON_LEN)
        .ok_or(RfbError::InvalidArgument("reason too long"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
    Ok(())
}

/// SecurityResult (RFC 6143 §7.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityResult {
    /// Authentication succeeded.
    Ok,
    /// Authentication failed, with the reason (3.8 only; empty before).
    Failed(String),
}

/// Decodes a SecurityResult; the failure reason string is only present in 3.8.
pub fn decode_security_result(
    buf: &[u8],
    version: ProtocolVersion,
) -> Result<Option<(SecurityResult, usize)>, RfbError> {
    finish((|| {
        let mut c = Cur::new(buf);
        let r = match c.u32()? {
            0 => SecurityResult::Ok,
            _ if version == ProtocolVersion::V3_8 => SecurityResult::Failed(reason(&mut c)?),
            _ => SecurityResult::Failed(String::new()),
        };
        Ok((r, c.pos()))
    })())
}

/// Encodes a SecurityResult (with the reason for 3.8).
pub fn encode_security_result(
    r: &SecurityResult,
    version: ProtocolVersion,
    out: &mut Vec<u8>,
) -> Result<(), RfbError> {
    match r {
        SecurityResult::Ok => {
            out.extend_from_slice(&0u32.to_be_bytes());
            Ok(())
        }
        SecurityResult::Failed(reason) => {
            out.extend_from_slice(&1u32.to_be_bytes());
            if version == ProtocolVersion::V3_8 {
                put_reason(reason, out)?;
            }
            Ok(())
        }
    }
}

/// Decodes ClientInit: the shared flag.
pub fn decode_client_init(buf: &[u8]) -> Result<Option<(bool, usize)>, RfbError> {
    Ok(buf.first().map(|b| (*b != 0, 1)))
}

/// ServerInit (RFC 6143 §7.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInit {
    /// Framebuffer width.
    pub width: u16,
    /// Framebuffer height.
    pub height: u16,
    /// The server's natural pixel format.
    pub pixel_format: PixelFormat,
    /// Desktop name.
    pub name: String,
}

/// Checks a framebuffer size against [`MAX_FRAMEBUFFER_SIDE`] and [`MAX_FRAMEBUFFER_PIXELS`].
pub(crate) fn check_fb_size(width: u16, height: u16) -> Result<(), RfbError> {
    let side = width.max(height);
    if side > MAX_FRAMEBUFFER_SIDE {
        return Err(RfbError::TooLong {
            what: "framebuffer side",
            len: side.into(),
            max: MAX_FRAMEBUFFER_SIDE.into(),
        });
    }
    let area = u64::from(width) * u64::from(height);
    if area > MAX_FRAMEBUFFER_PIXELS {
        return Err(RfbError::TooLong {
            what: "framebuffer area",
            len: area,
            max: MAX_FRAMEBUFFER_PIXELS,
        });
    }
    Ok(())
}

/// Decodes ServerInit.
pub fn decode_server_init(buf: &[u8]) -> Result<Option<(ServerInit, usize)>, RfbError> {
    finish((|| {
        let mut c = Cur::new(buf);
        let width = c.u16()?;
        let height = c.u16()?;
        check_fb_size(width, height)?;
        let pixel_format = PixelFormat::parse(&mut c)?;
        let len = c.u32()?;
        if len > MAX_NAME_LEN {
            return Err(RfbError::TooLong {
                what: "desktop name",
                len: len.into(),
                max: MAX_NAME_LEN.into(),
            }
            .into());
        }
        let name = String::from_utf8_lossy(c.take(usize::try_from(len).unwrap_or(usize::MAX))?)
            .into_owned();
        Ok((
            ServerInit {
                width,
                height,
                pixel_format,
                name,
            },
            c.pos(),
        ))
    })())
}

/// Encodes ServerInit.
pub fn encode_server_init(si: &ServerInit, out: &mut Vec<u8>) -> Result<(), RfbError> {
    let len = u32::try_from(si.name.len())
        .ok()
        .filter(|l| *l <= MAX_NAME_LEN)
        .ok_or(RfbError::InvalidArgument("desktop name too long"))?;
    out.extend_from_slice(&si.width.to_be_bytes());
    out.extend_from_slice(&si.height.to_be_bytes());
    out.extend_from_slice(&si.pixel_format.to_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(si.name.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            decode_version(b"RFB 003.008\n").unwrap(),
            Some((ProtocolVersion::V3_8, 12))
        );
        assert_eq!(
            decode_version(b"RFB 003.003\n").unwrap(),
            Some((ProtocolVersion::V3_3, 12))
        );
        assert_eq!(
            decode_version(b"RFB 003.889\n").unwrap(),
            Some((ProtocolVersion::V3_3, 12))
        );
        assert_eq!(decode_version(b"RFB 00").unwrap(), None);
        assert!(decode_version(b"SSH-2.0-").is_err());
        assert!(decode_version(b"RFB 002.000\n").is_err());
        assert!(decode_version(b"RFB 0x3.008\n").is_err());
    }

    #[test]
    fn server_init_round_trip_and_limits() {
        let si = ServerInit {
            width: 720,
            height: 400,
            pixel_format: PixelFormat::RGB888_LE,
            name: "QEMU".into(),
        };
        let mut out = Vec::new();
        encode_server_init(&si, &mut out).unwrap();
        for cut in 0..out.len() {
            assert_eq!(decode_server_init(&out[..cut]).unwrap(), None);
        }
        assert_eq!(decode_server_init(&out).unwrap(), Some((si, out.len())));
        let mut big = out.clone();
        big[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_server_init(&big),
            Err(RfbError::TooLong { .. })
        ));
        let mut wide = out;
        wide[0..2].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(
            decode_server_init(&wide),
            Err(RfbError::TooLong { .. })
        ));
    }

    #[test]
    fn security_messages() {
        let mut out = Vec::new();
        encode_security_types(&[2], "", &mut out).unwrap();
        assert_eq!(
            decode_security_types(&out).unwrap(),
            Some((SecurityTypes::Offered(vec![2]), 2))
        );
        out.clear();
        encode_security_types(&[], "no", &mut out).unwrap();
        assert_eq!(
            decode_security_types(&out).unwrap(),
            Some((SecurityTypes::Refused("no".into()), 7))
        );
        out.clear();
        let r = SecurityResult::Failed("ticket expired".into());
        encode_security_result(&r, ProtocolVersion::V3_8, &mut out).unwrap();
        assert_eq!(
            decode_security_result(&out, ProtocolVersion::V3_8).unwrap(),
            Some((r, out.len()))
        );
        assert_eq!(
            decode_security_result(&out, ProtocolVersion::V3_3).unwrap(),
            Some((SecurityResult::Failed(String::new()), 4))
        );
        let hostile = [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
        assert!(decode_security_result(&hostile, ProtocolVersion::V3_8).is_err());
    }
}
