//! The Client Info PDU ([MS-RDPBCGR] 2.2.1.11), read leniently but never skipped.
//!
//! On a TLS-only contractor leg the Client Info PDU is where the contractor's password is, so
//! it is the logon: a PDU that cannot be decoded must end the connection, never pass through
//! unchecked. Two shapes that real clients may send and that ironrdp-pdu refuses are not
//! attacks and are read anyway, by normalising them first:
//!
//! - compression-type bits (`0x1E00` of `flags`) without `INFO_COMPRESSION`, or a compression
//!   type ironrdp does not know: Sekisho asks the server for no bulk compression at all
//!   (recordings carry no decompressor), so both the flag and the type are cleared;
//! - `performanceFlags` bits this version of the specification does not name: they only tune
//!   the desktop's looks, so unknown bits are dropped.
//!
//! Everything else (string lengths, the reconnect cookie) is checked as ironrdp checks it.
//!
//! [MS-RDPBCGR]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpbcgr/

use ironrdp_core::decode;
use ironrdp_pdu::rdp::ClientInfoPdu;
use ironrdp_pdu::rdp::client_info::{ClientInfoFlags, PerformanceFlags};

use super::error::RdpError;

/// `INFO_COMPRESSION` and the `CompressionTypeMask` bits of the Client Info flags.
const COMPRESSION_BITS: u32 = 0x0000_0080 | 0x0000_1E00;

/// Size of the basic security header in front of the Client Info (`flags`, `flagsHi`).
const SECURITY_HEADER_LEN: usize = 4;

/// Size of `TS_TIME_ZONE_INFORMATION` in the extended info.
const TIME_ZONE_INFO_LEN: usize = 172;

/// Decodes a Client Info PDU (security header included) after normalising the shapes the
/// module documentation lists. The password it holds is the caller's to protect.
pub fn decode_client_info(user_data: &[u8]) -> Result<ClientInfoPdu, RdpError> {
    let normalised = normalise(user_data);
    decode::<ClientInfoPdu>(&normalised).map_err(|e| RdpError::malformed("Client Info PDU", e))
}

/// A copy of `user_data` with the compression bits and unknown performance flags cleared.
/// Where the layout cannot be followed, the copy is returned as it is and decoding fails.
fn normalise(user_data: &[u8]) -> Vec<u8> {
    let mut out = user_data.to_vec();
    let flags_at = SECURITY_HEADER_LEN + 4;
    let Some(flags) = read_u32(&out, flags_at) else {
        return out;
    };
    write_u32(&mut out, flags_at, flags & !COMPRESSION_BITS);
    if let Some(at) = performance_flags_offset(&out, flags)
        && let Some(perf) = read_u32(&out, at)
    {
        write_u32(&mut out, at, perf & PerformanceFlags::all().bits());
    }
    out
}

/// Where `performanceFlags` is, when the PDU is long enough to have it (TS_INFO_PACKET then
/// TS_EXTENDED_INFO_PACKET: address, directory, time zone, session id, performance flags).
fn performance_flags_offset(pdu: &[u8], flags: u32) -> Option<usize> {
    let unicode = ClientInfoFlags::from_bits_retain(flags).contains(ClientInfoFlags::UNICODE);
    let terminator = if unicode { 2 } else { 1 };
    // code page, flags, then five u16 lengths without their terminators.
    let mut at = SECURITY_HEADER_LEN + 8;
    let mut strings = 0usize;
    for _ in 0..5 {
        strings += usize::from(read_u16(pdu, at)?) + terminator;
        at += 2;
    }
    at += strings;
    // clientAddressFamily, then cbClientAddress (terminator included) and the address.
    at += 2;
    at += 2 + usize::from(read_u16(pdu, at)?);
    at += 2 + usize::from(read_u16(pdu, at)?);
    at += TIME_ZONE_INFO_LEN + 4;
    (pdu.len() >= at + 4).then_some(at)
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_le_bytes([*s.first()?, *s.get(1)?]))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(s))
}

fn write_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_core::encode_vec;
    use ironrdp_pdu::rdp::client_info::{
        AddressFamily, ClientInfo, CompressionType, Credentials, ExtendedClientInfo,
        ExtendedClientOptionalInfo,
    };
    use ironrdp_pdu::rdp::headers::{BasicSecurityHeader, BasicSecurityHeaderFlags};
    use proptest::prelude::*;

    fn pdu() -> Vec<u8> {
        let info = ClientInfoPdu {
            security_header: BasicSecurityHeader {
                flags: BasicSecurityHeaderFlags::INFO_PKT,
            },
            client_info: ClientInfo {
                credentials: Credentials {
                    username: "tanaka".into(),
                    password: "change-me-now".into(),
                    domain: Some("VDI".into()),
                },
                password_cookie: None,
                code_page: 0,
                flags: ClientInfoFlags::MOUSE | ClientInfoFlags::UNICODE,
                compression_type: CompressionType::K8,
                alternate_shell: String::new(),
                work_dir: String::new(),
                extra_info: ExtendedClientInfo {
                    address_family: AddressFamily::INET,
                    address: "127.0.10.11".into(),
                    dir: "C:\\Windows\\System32\\mstscax.dll".into(),
                    optional_data: ExtendedClientOptionalInfo::builder()
                        .timezone(Default::default())
                        .session_id(0)
                        .performance_flags(PerformanceFlags::default())
                        .build(),
                },
            },
        };
        encode_vec(&info).unwrap()
    }

    fn flags_of(p: &[u8]) -> u32 {
        read_u32(p, 8).unwrap()
    }

    #[test]
    fn a_plain_client_info_decodes_with_its_password() {
        let info = decode_client_info(&pdu()).unwrap();
        assert_eq!(info.client_info.credentials.username, "tanaka");
        assert_eq!(info.client_info.credentials.password, "change-me-now");
    }

    #[test]
    fn compression_type_bits_without_the_compression_flag_are_read() {
        let mut p = pdu();
        let flags = flags_of(&p) | 0x1E00;
        write_u32(&mut p, 8, flags);
        assert!(
            decode::<ClientInfoPdu>(&p).is_err(),
            "ironrdp refuses this shape"
        );
        let info = decode_client_info(&p).unwrap();
        assert_eq!(info.client_info.credentials.password, "change-me-now");
        assert!(
            !info
                .client_info
                .flags
                .contains(ClientInfoFlags::COMPRESSION)
        );
    }

    #[test]
    fn an_unknown_performance_flag_is_read() {
        let mut p = pdu();
        let at = performance_flags_offset(&p, flags_of(&p)).unwrap();
        let perf = read_u32(&p, at).unwrap();
        assert_eq!(perf, PerformanceFlags::default().bits(), "offset found");
        write_u32(&mut p, at, perf | 0x200);
        assert!(
            decode::<ClientInfoPdu>(&p).is_err(),
            "ironrdp refuses this shape"
        );
        let info = decode_client_info(&p).unwrap();
        assert_eq!(info.client_info.credentials.username, "tanaka");
        assert_eq!(
            info.client_info
                .extra_info
                .optional_data
                .performance_flags(),
            Some(PerformanceFlags::default())
        );
    }

    #[test]
    fn a_truncated_client_info_is_an_error() {
        let p = pdu();
        for cut in [0, 3, 8, 20, 40, 60] {
            assert!(
                decode_client_info(p.get(..cut).unwrap()).is_err(),
                "cut {cut}"
            );
        }
    }

    proptest! {
        #[test]
        fn flipped_client_info_never_panics(flip in 0usize..600, bit in 0u8..8) {
            let mut p = pdu();
            if let Some(b) = p.get_mut(flip) { *b ^= 1 << bit; }
            let _ = decode_client_info(&p);
        }
    }
}
