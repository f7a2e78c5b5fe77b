//! Client-to-server messages (RFC 6143 §7.5) and QEMU's extended key event.

use super::{Cur, Encoding, MAX_CUT_TEXT_LEN, MAX_ENCODINGS, PixelFormat, RfbError, finish};

/// QEMU's client message type ([QEMU extensions]); sub-type 0 is the extended key event.
///
/// [QEMU extensions]: https://github.com/rfbproto/rfbproto/blob/master/rfbproto.rst#qemu-client-message
pub const QEMU_CLIENT_MESSAGE: u8 = 255;

/// A message from the viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMsg {
    /// 0: the pixel format the server must use from now on.
    SetPixelFormat(PixelFormat),
    /// 2: the encodings the viewer accepts, in preference order.
    SetEncodings(Vec<i32>),
    /// 3: ask for an update.
    FramebufferUpdateRequest {
        /// Only changes since the last update.
        incremental: bool,
        /// Left.
        x: u16,
        /// Top.
        y: u16,
        /// Width.
        width: u16,
        /// Height.
        height: u16,
    },
    /// 4: a key press or release (an X keysym).
    KeyEvent {
        /// Pressed.
        down: bool,
        /// X keysym.
        key: u32,
    },
    /// 5: pointer position and buttons.
    PointerEvent {
        /// Button bits.
        buttons: u8,
        /// X.
        x: u16,
        /// Y.
        y: u16,
    },
    /// 6: the viewer's clipboard (Latin-1).
    ClientCutText(Vec<u8>),
    /// 255/0: QEMU extended key event (keysym plus XT scancode).
    QemuKeyEvent {
        /// Pressed.
        down: bool,
        /// X keysym.
        keysym: u32,
        /// XT keycode.
        keycode: u32,
    },
}

impl ClientMsg {
    /// A short name for events and logs (never the content: keys and clipboard are secret).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMsg::SetPixelFormat(_) => "set-pixel-format",
            ClientMsg::SetEncodings(_) => "set-encodings",
            ClientMsg::FramebufferUpdateRequest { .. } => "update-request",
            ClientMsg::KeyEvent { .. } => "key",
            ClientMsg::PointerEvent { .. } => "pointer",
            ClientMsg::ClientCutText(_) => "cut-text",
            ClientMsg::QemuKeyEvent { .. } => "qemu-key",
        }
    }
}

/// Decodes one client message.
pub fn decode_client(buf: &[u8]) -> Result<Option<(ClientMsg, usize)>, RfbError> {
    finish((|| {
        let mut c = Cur::new(buf);
        let msg = match c.u8()? {
            0 => {
                c.take(3)?;
                ClientMsg::SetPixelFormat(PixelFormat::parse(&mut c)?)
            }
            2 => {
                c.take(1)?;
                let n = c.u16()?;
                if n > MAX_ENCODINGS {
                    return Err(RfbError::TooLong {
                        what: "encodings",
                        len: n.into(),
                        max: MAX_ENCODINGS.into(),
                    }
                    .into());
                }
                let raw = c.take(usize::from(n) * 4)?;
                ClientMsg::SetEncodings(
                    raw.chunks_exact(4)
                        .map(|b| i32::from_be_bytes(b.try_into().unwrap_or_default()))
                        .collect(),
                )
            }
            3 => ClientMsg::FramebufferUpdateRequest {
                incremental: c.u8()? != 0,
                x: c.u16()?,
                y: c.u16()?,
                width: c.u16()?,
                height: c.u16()?,
            },
            4 => {
                let down = c.u8()? != 0;
                c.take(2)?;
                ClientMsg::KeyEvent {
                    down,
                    key: c.u32()?,
                }
            }
            5 => ClientMsg::PointerEvent {
                buttons: c.u8()?,
                x: c.u16()?,
                y: c.u16()?,
            },
            6 => {
                c.take(3)?;
                let len = c.u32()?;
                // QEMU's extended clipboard uses a negative length; it is never negotiated
                // here, so it is just too long.
                if len > MAX_CUT_TEXT_LEN {
                    return Err(RfbError::TooLong {
                        what: "cut text",
                        len: len.into(),
                        max: MAX_CUT_TEXT_LEN.into(),
                    }
                    .into());
                }
                ClientMsg::ClientCutText(
                    c.take(usize::try_from(len).unwrap_or(usize::MAX))?.to_vec(),
                )
            }
            QEMU_CLIENT_MESSAGE => match c.u8()? {
                0 => ClientMsg::QemuKeyEvent {
                    down: c.u16()? != 0,
                    keysym: c.u32()?,
                    keycode: c.u32()?,
                },
                // 1 = audio, never negotiated (the pseudo-encoding is filtered): refuse.
                sub => return Err(RfbError::UnsupportedQemuMessage(sub).into()),
            },
            t => return Err(RfbError::UnknownClientMessage(t).into()),
        };
        Ok((msg, c.pos()))
    })())
}

/// Encodes one client message.
pub fn encode_client(msg: &ClientMsg, out: &mut Vec<u8>) -> Result<(), RfbError> {
    match msg {
        ClientMsg::SetPixelFormat(pf) => {
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&pf.to_bytes());
        }
        ClientMsg::SetEncodings(list) => {
            let n = u16::try_from(list.len())
                .ok()
                .filter(|n| *n <= MAX_ENCODINGS)
                .ok_or(RfbError::InvalidArgument("too many encodings"))?;
            out.extend_from_slice(&[2, 0]);
            out.extend_from_slice(&n.to_be_bytes());
            for e in list {
                out.extend_from_slice(&e.to_be_bytes());
            }
        }
        ClientMsg::FramebufferUpdateRequest {
            incremental,
            x,
            y,
            width,
            height,
        } => {
            out.extend_from_slice(&[3, u8::from(*incremental)]);
            for v in [x, y, width, height] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        ClientMsg::KeyEvent { down, key } => {
            out.extend_from_slice(&[4, u8::from(*down), 0, 0]);
            out.extend_from_slice(&key.to_be_bytes());
        }
        ClientMsg::PointerEvent { buttons, x, y } => {
            out.extend_from_slice(&[5, *buttons]);
            out.extend_from_slice(&x.to_be_bytes());
            out.extend_from_slice(&y.to_be_bytes());
        }
        ClientMsg::ClientCutText(text) => {
            let len = u32::try_from(text.len())
                .ok()
                .filter(|l| *l <= MAX_CUT_TEXT_LEN)
                .ok_or(RfbError::InvalidArgument("cut text too long"))?;
            out.extend_from_slice(&[6, 0, 0, 0]);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(text);
        }
        ClientMsg::QemuKeyEvent {
            down,
            keysym,
            keycode,
        } => {
            out.extend_from_slice(&[QEMU_CLIENT_MESSAGE, 0]);
            out.extend_from_slice(&u16::from(*down).to_be_bytes());
            out.extend_from_slice(&keysym.to_be_bytes());
            out.extend_from_slice(&keycode.to_be_bytes());
        }
    }
    Ok(())
}

/// Keeps only the decodable encodings of a SetEncodings list, in the viewer's order; returns
/// the kept and the removed numbers.
pub fn filter_encodings(list: &[i32]) -> (Vec<i32>, Vec<i32>) {
    list.iter()
        .copied()
        .partition(|e| Encoding::from_i32(*e).is_decodable())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_msg() -> impl Strategy<Value = ClientMsg> {
        prop_oneof![
            Just(ClientMsg::SetPixelFormat(PixelFormat::RGB888_LE)),
            proptest::collection::vec(any::<i32>(), 0..40).prop_map(ClientMsg::SetEncodings),
            (
                any::<bool>(),
                any::<u16>(),
                any::<u16>(),
                any::<u16>(),
                any::<u16>()
            )
                .prop_map(|(incremental, x, y, width, height)| {
                    ClientMsg::FramebufferUpdateRequest {
                        incremental,
                        x,
                        y,
                        width,
                        height,
                    }
                }),
            (any::<bool>(), any::<u32>()).prop_map(|(down, key)| ClientMsg::KeyEvent { down, key }),
            (any::<u8>(), any::<u16>(), any::<u16>())
                .prop_map(|(buttons, x, y)| ClientMsg::PointerEvent { buttons, x, y }),
            proptest::collection::vec(any::<u8>(), 0..100).prop_map(ClientMsg::ClientCutText),
            (any::<bool>(), any::<u32>(), any::<u32>()).prop_map(|(down, keysym, keycode)| {
                ClientMsg::QemuKeyEvent {
                    down,
                    keysym,
                    keycode,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(msg in arb_msg()) {
            let mut out = Vec::new();
            encode_client(&msg, &mut out).unwrap();
            for cut in 0..out.len() {
                prop_assert_eq!(decode_client(&out[..cut]).unwrap(), None);
            }
            prop_assert_eq!(decode_client(&out).unwrap(), Some((msg, out.len())));
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Some((_, n))) = decode_client(&data) {
                prop_assert!(n <= data.len());
            }
        }
    }

    #[test]
    fn hostile_lengths_are_refused_before_buffering() {
        assert!(matches!(
            decode_client(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            Err(RfbError::TooLong { .. })
        ));
        assert!(matches!(
            decode_client(&[2, 0, 0xff, 0xff]),
            Err(RfbError::TooLong { .. })
        ));
        assert_eq!(
            decode_client(&[255, 1, 0, 0]),
            Err(RfbError::UnsupportedQemuMessage(1))
        );
        assert_eq!(
            decode_client(&[150]),
            Err(RfbError::UnknownClientMessage(150))
        );
    }

    #[test]
    fn filters_encodings() {
        let (kept, removed) = filter_encodings(&[16, 7, -239, -258, 0, -223, -308]);
        assert_eq!(kept, vec![16, -239, 0, -223]);
        assert_eq!(removed, vec![7, -258, -308]);
    }
}
