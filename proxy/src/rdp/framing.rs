//! Splitting an RDP byte stream into frames (TPKT/X.224 or fast-path), without I/O.

use ironrdp_pdu::Action;

use super::error::RdpError;

/// Largest frame accepted in either direction.
///
/// A TPKT length field is 16 bits and a fast-path length 15 bits, so no legal frame is
/// larger than 64 KiB; the limit only documents that and guards the buffer we keep.
pub const MAX_FRAME_LEN: usize = 0x1_0000;

/// Smallest legal length of a whole frame: a fast-path header of two bytes.
const MIN_FRAME_LEN: usize = 2;

/// The kind of a complete frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// TPKT + X.224 (slow path: MCS, connection sequence).
    X224,
    /// Fast-path input (client) or output (server).
    FastPath,
}

/// Finds the first whole frame in `buf`.
///
/// `Ok(None)` means "need more bytes"; `Ok(Some((kind, len)))` means `buf[..len]` is a frame.
pub fn decode(buf: &[u8]) -> Result<Option<(FrameKind, usize)>, RdpError> {
    let info = match ironrdp_pdu::find_size(buf) {
        Ok(Some(info)) => info,
        Ok(None) => return Ok(None),
        Err(e) => return Err(RdpError::malformed("frame header", e)),
    };
    if info.length > MAX_FRAME_LEN {
        return Err(RdpError::FrameTooLong {
            length: info.length,
            limit: MAX_FRAME_LEN,
        });
    }
    if info.length < MIN_FRAME_LEN {
        return Err(RdpError::FrameTooShort(info.length));
    }
    if buf.len() < info.length {
        return Ok(None);
    }
    let kind = match info.action {
        Action::X224 => FrameKind::X224,
        Action::FastPath => FrameKind::FastPath,
    };
    Ok(Some((kind, info.length)))
}

/// An MCS Send Data Request frame carrying `user_data` on `channel_id`.
pub fn send_data_request(
    initiator_id: u16,
    channel_id: u16,
    user_data: Vec<u8>,
) -> Result<Vec<u8>, RdpError> {
    ironrdp_core::encode_vec(&ironrdp_pdu::x224::X224(
        ironrdp_pdu::mcs::SendDataRequest {
            initiator_id,
            channel_id,
            user_data: std::borrow::Cow::Owned(user_data),
        },
    ))
    .map_err(|e| RdpError::encode("MCS Send Data Request", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tpkt_frame_is_found_only_when_complete() {
        let frame = [0x03, 0x00, 0x00, 0x08, 0x02, 0xf0, 0x80, 0x7f];
        assert_eq!(decode(&frame[..3]).unwrap(), None);
        assert_eq!(decode(&frame[..7]).unwrap(), None);
        assert_eq!(decode(&frame).unwrap(), Some((FrameKind::X224, 8)));
    }

    #[test]
    fn fast_path_frame() {
        let frame = [0x00, 0x04, 0xaa, 0xbb, 0xcc];
        assert_eq!(decode(&frame).unwrap(), Some((FrameKind::FastPath, 4)));
    }

    #[test]
    fn tpkt_length_shorter_than_header_is_rejected() {
        let frame = [0x03, 0x00, 0x00, 0x01];
        assert!(decode(&frame).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Some((_, len))) = decode(&bytes) {
                prop_assert!(len <= bytes.len());
                prop_assert!(len >= MIN_FRAME_LEN);
            }
        }
    }
}
