//! The first bytes of an RDP connection: the optional preconnection PDU and the X.224
//! Connection Request ([MS-RDPBCGR] 2.2.1.1, [MS-RDPEPS] 2.2.1), and the X.224 answers
//! Sekisho writes itself. Pure functions, no I/O.
//!
//! [MS-RDPBCGR]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpbcgr/
//! [MS-RDPEPS]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpeps/

use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::nego::{
    ConnectionConfirm, ConnectionRequest, Cookie, FailureCode, NegoRequestData, RequestFlags,
    ResponseFlags, SecurityProtocol,
};
use ironrdp_pdu::pcb::PreconnectionBlob;
use ironrdp_pdu::x224::X224;

use super::error::RdpError;
use super::framing::{self, FrameKind};

/// Largest preconnection PDU accepted. Its only variable part is a target name (UTF-16);
/// 4 KiB is far beyond any host name and stops a client from making us buffer more.
pub const MAX_PCB_LEN: usize = 4096;

/// Longest target or user name taken from the client (characters); names in the inventory are
/// short, and longer input is hostile.
pub const MAX_NAME_LEN: usize = 256;

/// What the client sent first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// A preconnection PDU naming a target (`xfreerdp /pcb:TARGET`).
    Preconnection {
        /// the target name, if the blob held one
        target: Option<String>,
        /// bytes of `buf` this PDU used
        consumed: usize,
    },
    /// The X.224 Connection Request.
    ConnectionRequest {
        /// what it asked for
        request: ConnectionRequestInfo,
        /// bytes of `buf` this PDU used
        consumed: usize,
    },
}

/// The parts of the client's X.224 Connection Request that Sekisho uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRequestInfo {
    /// `Cookie: mstshash=` value (a user name, possibly truncated by the client).
    pub cookie: Option<String>,
    /// Security protocols the client offered.
    pub requested: SecurityProtocol,
    /// Request flags, kept to be honest with the server leg.
    pub flags: RequestFlags,
}

/// Decodes the first PDU in `buf`: a preconnection PDU or the X.224 Connection Request.
///
/// `Ok(None)`: more bytes are needed.
pub fn decode_client_hello(buf: &[u8]) -> Result<Option<ClientHello>, RdpError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    // A TPKT header starts with version 3; a preconnection PDU starts with its u32 size, which
    // is never 3 (its fixed part alone is 16 bytes).
    if first == 0x03 {
        let Some((kind, len)) = framing::decode(buf)? else {
            return Ok(None);
        };
        if kind != FrameKind::X224 {
            return Err(RdpError::Unexpected {
                got: "fast-path PDU",
                expected: "X.224 Connection Request",
            });
        }
        let frame = buf
            .get(..len)
            .ok_or(RdpError::Misuse("frame length beyond buffer"))?;
        let request = decode::<X224<ConnectionRequest>>(frame)
            .map_err(|e| RdpError::malformed("X.224 Connection Request", e))?
            .0;
        let cookie = match request.nego_data {
            Some(NegoRequestData::Cookie(Cookie(c))) => Some(bounded_name(&c)?),
            _ => None,
        };
        return Ok(Some(ClientHello::ConnectionRequest {
            request: ConnectionRequestInfo {
                cookie,
                requested: request.protocol,
                flags: request.flags,
            },
            consumed: len,
        }));
    }
    let Some(size_bytes) = buf.get(..4) else {
        return Ok(None);
    };
    let mut size = [0u8; 4];
    size.copy_from_slice(size_bytes);
    let size = usize::try_from(u32::from_le_bytes(size)).map_err(|_| RdpError::FrameTooLong {
        length: usize::MAX,
        limit: MAX_PCB_LEN,
    })?;
    if size > MAX_PCB_LEN {
        return Err(RdpError::FrameTooLong {
            length: size,
            limit: MAX_PCB_LEN,
        });
    }
    if size < PreconnectionBlob::FIXED_PART_SIZE {
        return Err(RdpError::FrameTooShort(size));
    }
    let Some(pdu) = buf.get(..size) else {
        return Ok(None);
    };
    let blob = decode::<PreconnectionBlob>(pdu)
        .map_err(|e| RdpError::malformed("preconnection PDU", e))?;
    let target = match blob.v2_payload {
        Some(p) => {
            let name = p.trim_matches(char::from(0)).trim();
            if name.is_empty() {
                None
            } else {
                Some(bounded_name(name)?)
            }
        }
        None => None,
    };
    Ok(Some(ClientHello::Preconnection {
        target,
        consumed: size,
    }))
}

fn bounded_name(s: &str) -> Result<String, RdpError> {
    let n = s.chars().count();
    if n > MAX_NAME_LEN {
        return Err(RdpError::TooMany {
            what: "name character",
            count: n,
            limit: MAX_NAME_LEN,
        });
    }
    Ok(s.to_owned())
}

/// Splits a user name of the form `user+target` (the RDP front door's explicit target).
///
/// A `DOMAIN\user` or `user@domain` prefix/suffix is dropped: Sekisho users have no domain.
pub fn split_user_target(name: &str) -> (String, Option<String>) {
    let name = name.rsplit('\\').next().unwrap_or(name);
    let name = name.split('@').next().unwrap_or(name);
    match name.split_once('+') {
        Some((user, target)) if !user.is_empty() && !target.is_empty() => {
            (user.to_owned(), Some(target.to_owned()))
        }
        _ => (name.to_owned(), None),
    }
}

/// Chooses the security protocol of the contractor leg.
///
/// CredSSP (NLA) when the client offers it and `want_nla` (HYBRID_EX, CredSSP followed by the
/// Early User Authorization Result, when the client offers that too, as mstsc does), else TLS
/// when offered; standard RDP security is never accepted (its RC4 is not a secure channel).
pub fn select_client_protocol(
    requested: SecurityProtocol,
    want_nla: bool,
) -> Result<SecurityProtocol, RdpError> {
    // HYBRID_EX alone is accepted too: the flag only SHOULD come with HYBRID.
    if want_nla && requested.contains(SecurityProtocol::HYBRID_EX) {
        Ok(SecurityProtocol::HYBRID_EX)
    } else if want_nla && requested.contains(SecurityProtocol::HYBRID) {
        Ok(SecurityProtocol::HYBRID)
    } else if requested.contains(SecurityProtocol::SSL) {
        Ok(SecurityProtocol::SSL)
    } else if requested.contains(SecurityProtocol::HYBRID) {
        Ok(SecurityProtocol::HYBRID)
    } else {
        Err(RdpError::NoSupportedProtocol(requested.bits()))
    }
}

/// The X.224 Connection Confirm selecting `protocol`.
pub fn connection_confirm(protocol: SecurityProtocol) -> Result<Vec<u8>, RdpError> {
    encode_vec(&X224(ConnectionConfirm::Response {
        flags: ResponseFlags::EXTENDED_CLIENT_DATA_SUPPORTED,
        protocol,
    }))
    .map_err(|e| RdpError::encode("X.224 Connection Confirm", e))
}

/// An X.224 negotiation failure: the client stops at once with a clear error, which is the
/// "prompt, clean failure" a denied client gets before any TLS.
pub fn connection_failure(code: FailureCode) -> Result<Vec<u8>, RdpError> {
    encode_vec(&X224(ConnectionConfirm::Failure { code }))
        .map_err(|e| RdpError::encode("X.224 failure", e))
}

/// The X.224 Connection Request Sekisho sends on the server leg.
pub fn connection_request(user: &str, protocols: SecurityProtocol) -> Result<Vec<u8>, RdpError> {
    // mstshash is limited to 9 characters by mstsc; keep what fits in a cookie.
    let cookie: String = user.chars().take(MAX_NAME_LEN).collect();
    encode_vec(&X224(ConnectionRequest {
        nego_data: Some(NegoRequestData::cookie(cookie)),
        flags: RequestFlags::empty(),
        protocol: protocols,
        correlation_info: None,
    }))
    .map_err(|e| RdpError::encode("X.224 Connection Request", e))
}

/// Decodes the server's X.224 Connection Confirm on the server leg.
pub fn decode_connection_confirm(frame: &[u8]) -> Result<ConnectionConfirm, RdpError> {
    decode::<X224<ConnectionConfirm>>(frame)
        .map(|c| c.0)
        .map_err(|e| RdpError::malformed("X.224 Connection Confirm", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_pdu::pcb::PcbVersion;
    use proptest::prelude::*;

    fn request(cookie: &str, protocol: SecurityProtocol) -> Vec<u8> {
        connection_request(cookie, protocol).unwrap()
    }

    #[test]
    fn connection_request_gives_cookie_and_protocols() {
        let bytes = request("tanaka", SecurityProtocol::SSL | SecurityProtocol::HYBRID);
        let hello = decode_client_hello(&bytes).unwrap().unwrap();
        let ClientHello::ConnectionRequest { request, consumed } = hello else {
            panic!("not a connection request")
        };
        assert_eq!(consumed, bytes.len());
        assert_eq!(request.cookie.as_deref(), Some("tanaka"));
        assert!(request.requested.contains(SecurityProtocol::HYBRID));
    }

    #[test]
    fn preconnection_v2_names_target() {
        let pcb = PreconnectionBlob {
            version: PcbVersion::V2,
            id: 0,
            v2_payload: Some("db-phys01".to_owned()),
        };
        let mut bytes = encode_vec(&pcb).unwrap();
        let pcb_len = bytes.len();
        bytes.extend(request("tanaka", SecurityProtocol::SSL));
        let hello = decode_client_hello(&bytes).unwrap().unwrap();
        assert_eq!(
            hello,
            ClientHello::Preconnection {
                target: Some("db-phys01".to_owned()),
                consumed: pcb_len
            }
        );
        // Truncated: need more.
        assert_eq!(decode_client_hello(&bytes[..pcb_len - 1]).unwrap(), None);
    }

    #[test]
    fn huge_preconnection_is_refused_before_buffering() {
        let bytes = 0x0100_0000u32.to_le_bytes();
        assert!(matches!(
            decode_client_hello(&bytes),
            Err(RdpError::FrameTooLong { .. })
        ));
    }

    #[test]
    fn user_plus_target() {
        assert_eq!(
            split_user_target("tanaka+db-phys01"),
            ("tanaka".into(), Some("db-phys01".into()))
        );
        assert_eq!(split_user_target("LAB\\tanaka"), ("tanaka".into(), None));
        assert_eq!(split_user_target("tanaka+"), ("tanaka+".into(), None));
    }

    #[test]
    fn protocol_selection() {
        let both = SecurityProtocol::SSL | SecurityProtocol::HYBRID;
        assert_eq!(
            select_client_protocol(both, true).unwrap(),
            SecurityProtocol::HYBRID
        );
        assert_eq!(
            select_client_protocol(both, false).unwrap(),
            SecurityProtocol::SSL
        );
        assert!(select_client_protocol(SecurityProtocol::empty(), false).is_err());
        // mstsc and ironrdp offer all three: HYBRID_EX when NLA is wanted.
        let all = both | SecurityProtocol::HYBRID_EX;
        assert_eq!(
            select_client_protocol(all, true).unwrap(),
            SecurityProtocol::HYBRID_EX
        );
        assert_eq!(
            select_client_protocol(all, false).unwrap(),
            SecurityProtocol::SSL
        );
        // HYBRID_EX alone is taken when NLA is wanted, else refused.
        assert_eq!(
            select_client_protocol(SecurityProtocol::HYBRID_EX, true).unwrap(),
            SecurityProtocol::HYBRID_EX
        );
        assert!(select_client_protocol(SecurityProtocol::HYBRID_EX, false).is_err());
    }

    #[test]
    fn failure_and_confirm_decode_back() {
        let f = connection_failure(FailureCode::SSL_NOT_ALLOWED_BY_SERVER).unwrap();
        assert!(matches!(
            decode_connection_confirm(&f).unwrap(),
            ConnectionConfirm::Failure { .. }
        ));
        let c = connection_confirm(SecurityProtocol::SSL).unwrap();
        assert!(matches!(
            decode_connection_confirm(&c).unwrap(),
            ConnectionConfirm::Response { protocol, .. } if protocol == SecurityProtocol::SSL
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_client_hello(&bytes);
        }

        #[test]
        fn truncated_request_never_panics(cut in 0usize..64) {
            let bytes = request("tanaka", SecurityProtocol::SSL);
            let cut = cut.min(bytes.len());
            let _ = decode_client_hello(&bytes[..cut]);
        }
    }
}
