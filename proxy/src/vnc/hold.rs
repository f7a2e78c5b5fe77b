//! Holding a VNC viewer's input while nobody watches a supervised session (four eyes): key and
//! pointer events are not forwarded (they are counted), everything else is (update requests,
//! so the screen keeps flowing and is recorded).
//!
//! Sans-IO: messages in, verdicts and messages to send out. A hold that began while a key or
//! a mouse button was down would leave it down in the guest (its release is held too), so
//! starting a hold releases what the console last saw pressed.

use std::collections::BTreeSet;

use player::rfb::ClientMsg;

/// A key as the console saw it pressed: the release must name it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PressedKey {
    /// A standard KeyEvent (keysym).
    Sym(u32),
    /// QEMU's extended key event (keysym and XT keycode).
    Qemu { keysym: u32, keycode: u32 },
}

/// The input gate of one VNC session.
#[derive(Debug, Default)]
pub(crate) struct InputHold {
    holding: bool,
    pressed: BTreeSet<PressedKey>,
    /// The last pointer event forwarded: buttons and position.
    pointer: Option<(u8, u16, u16)>,
    held: u64,
}

impl InputHold {
    /// A gate that starts holding when `holding`.
    pub(crate) fn new(holding: bool) -> InputHold {
        InputHold {
            holding,
            ..InputHold::default()
        }
    }

    /// Whether input is being held.
    pub(crate) fn is_holding(&self) -> bool {
        self.holding
    }

    /// Whether `msg` goes to the console; notes what the console will have pressed.
    pub(crate) fn admit(&mut self, msg: &ClientMsg) -> bool {
        let key = match *msg {
            ClientMsg::KeyEvent { down, key } => Some((down, PressedKey::Sym(key))),
            ClientMsg::QemuKeyEvent {
                down,
                keysym,
                keycode,
            } => Some((down, PressedKey::Qemu { keysym, keycode })),
            _ => None,
        };
        let is_pointer = matches!(msg, ClientMsg::PointerEvent { .. });
        if self.holding && (key.is_some() || is_pointer) {
            self.held += 1;
            return false;
        }
        if let Some((down, k)) = key {
            if down {
                self.pressed.insert(k);
            } else {
                self.pressed.remove(&k);
            }
        }
        if let ClientMsg::PointerEvent { buttons, x, y } = *msg {
            self.pointer = Some((buttons, x, y));
        }
        true
    }

    /// Starts holding. Returns the messages that release every key and button the console
    /// saw pressed, to be forwarded at once.
    pub(crate) fn hold(&mut self) -> Vec<ClientMsg> {
        if self.holding {
            return Vec::new();
        }
        self.holding = true;
        self.held = 0;
        let mut release: Vec<ClientMsg> = std::mem::take(&mut self.pressed)
            .into_iter()
            .map(|k| match k {
                PressedKey::Sym(key) => ClientMsg::KeyEvent { down: false, key },
                PressedKey::Qemu { keysym, keycode } => ClientMsg::QemuKeyEvent {
                    down: false,
                    keysym,
                    keycode,
                },
            })
            .collect();
        if let Some((buttons, x, y)) = self.pointer
            && buttons != 0
        {
            release.push(ClientMsg::PointerEvent { buttons: 0, x, y });
            self.pointer = Some((0, x, y));
        }
        release
    }

    /// Stops holding. Returns how many key and pointer events were held (not sent).
    pub(crate) fn resume(&mut self) -> u64 {
        self.holding = false;
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(down: bool, key: u32) -> ClientMsg {
        ClientMsg::KeyEvent { down, key }
    }

    #[test]
    fn held_input_is_counted_and_update_requests_pass() {
        let mut gate = InputHold::new(true);
        assert!(!gate.admit(&key(true, 0x61)));
        assert!(!gate.admit(&ClientMsg::PointerEvent {
            buttons: 1,
            x: 3,
            y: 4
        }));
        assert!(gate.admit(&ClientMsg::FramebufferUpdateRequest {
            incremental: true,
            x: 0,
            y: 0,
            width: 10,
            height: 10
        }));
        assert_eq!(gate.resume(), 2);
        assert!(gate.admit(&key(true, 0x61)));
        assert!(!gate.is_holding());
    }

    #[test]
    fn a_hold_releases_what_the_console_saw_pressed() {
        let mut gate = InputHold::new(false);
        assert!(gate.admit(&key(true, 0xffe1))); // Shift down
        assert!(gate.admit(&key(true, 0x61)));
        assert!(gate.admit(&key(false, 0x61)));
        assert!(gate.admit(&ClientMsg::QemuKeyEvent {
            down: true,
            keysym: 0x62,
            keycode: 0x30
        }));
        assert!(gate.admit(&ClientMsg::PointerEvent {
            buttons: 4,
            x: 7,
            y: 9
        }));
        let release = gate.hold();
        assert_eq!(
            release,
            vec![
                key(false, 0xffe1),
                ClientMsg::QemuKeyEvent {
                    down: false,
                    keysym: 0x62,
                    keycode: 0x30
                },
                ClientMsg::PointerEvent {
                    buttons: 0,
                    x: 7,
                    y: 9
                },
            ]
        );
        // Holding again releases nothing more; the release typed while held is held.
        assert!(gate.hold().is_empty());
        assert!(!gate.admit(&key(false, 0xffe1)));
        assert_eq!(gate.resume(), 1);
    }
}
