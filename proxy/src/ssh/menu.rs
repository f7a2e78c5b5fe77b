//! Sans-IO pieces of the SSH front door: the login name, the exec command, the target menu and
//! a tiny line editor for the menu prompt (the client's terminal is in raw mode, so Sekisho
//! echoes and edits the line itself).

use std::fmt::Write as _;

/// Longest menu input line kept; a person types a number or a target name.
pub const MAX_LINE: usize = 128;

/// `USER+TARGET` → (`USER`, `Some(TARGET)`); `USER` → (`USER`, `None`).
pub fn parse_login(login: &str) -> (&str, Option<&str>) {
    match login.split_once('+') {
        Some((user, target)) if !target.is_empty() => (user, Some(target)),
        Some((user, _)) => (user, None),
        None => (login, None),
    }
}

/// What an `exec` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecCommand {
    /// `console TARGET`: a graphical (VNC) console ticket.
    Console(String),
    /// scp, sftp-server, rsync and friends: file transfer.
    FileTransfer,
    /// Anything else: refused.
    Other,
}

/// Programs whose exec means file transfer (first word, by base name).
const FILE_TRANSFER_PROGRAMS: [&str; 6] = [
    "scp",
    "sftp-server",
    "sftp",
    "internal-sftp",
    "rsync",
    "sshfs",
];

/// Classifies an exec command line.
pub fn parse_exec(command: &str) -> ExecCommand {
    let mut words = command.split_whitespace();
    let Some(first) = words.next() else {
        return ExecCommand::Other;
    };
    let program = first.rsplit('/').next().unwrap_or(first);
    if FILE_TRANSFER_PROGRAMS.contains(&program) || command.contains("rsync --server") {
        return ExecCommand::FileTransfer;
    }
    match (first, words.next(), words.next()) {
        ("console", Some(target), None) => ExecCommand::Console(target.to_owned()),
        _ => ExecCommand::Other,
    }
}

/// One line of the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuEntry {
    /// Target name.
    pub name: String,
    /// `vm` or `physical`.
    pub kind: String,
    /// Network zone.
    pub zone: String,
    /// `None` when reachable now, else "rule: reason".
    pub denied: Option<String>,
}

/// The menu as shown to the user (CRLF line ends: the terminal is raw).
pub fn render_menu(user: &str, entries: &[MenuEntry]) -> String {
    let mut out = format!("Sekisho: targets for {user}\r\n");
    if entries.is_empty() {
        out.push_str("  (no targets under your contracts)\r\n");
    }
    for (i, e) in entries.iter().enumerate() {
        let _ = write!(
            out,
            "  {:>2}) {:<16} {:<8} {:<10} ",
            i + 1,
            e.name,
            e.kind,
            e.zone
        );
        match &e.denied {
            None => out.push_str("available"),
            Some(why) => {
                let _ = write!(out, "not now: {why}");
            }
        }
        out.push_str("\r\n");
    }
    out.push_str("Choose a target by number or name (q to quit): ");
    out
}

/// Finds the entry a user typed (a 1-based number or a name).
pub fn pick<'a>(entries: &'a [MenuEntry], input: &str) -> Option<&'a MenuEntry> {
    let input = input.trim();
    if let Ok(n) = input.parse::<usize>() {
        return n.checked_sub(1).and_then(|i| entries.get(i));
    }
    entries.iter().find(|e| e.name == input)
}

/// What the line editor produced from some input bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Edit {
    /// Bytes to send back to the terminal (echo, erase).
    pub echo: Vec<u8>,
    /// A finished line, if Enter was pressed.
    pub line: Option<String>,
    /// Ctrl-C or Ctrl-D: the user wants out.
    pub cancel: bool,
}

/// A minimal line editor: printable ASCII, backspace, Enter, Ctrl-C/Ctrl-D; escape sequences
/// (arrow keys) are dropped.
#[derive(Debug, Default)]
pub struct LineEditor {
    buf: String,
    in_escape: bool,
}

impl LineEditor {
    /// Feeds bytes typed by the user.
    pub fn feed(&mut self, bytes: &[u8]) -> Edit {
        let mut edit = Edit::default();
        for &b in bytes {
            if self.in_escape {
                // CSI sequences end with a byte in 0x40..=0x7e; a lone ESC followed by '[' goes on.
                if b != b'[' && (0x40..=0x7e).contains(&b) {
                    self.in_escape = false;
                }
                continue;
            }
            match b {
                0x1b => self.in_escape = true,
                b'\r' | b'\n' => {
                    edit.echo.extend_from_slice(b"\r\n");
                    edit.line = Some(std::mem::take(&mut self.buf));
                    return edit;
                }
                0x03 | 0x04 => {
                    edit.cancel = true;
                    return edit;
                }
                0x7f | 0x08 if self.buf.pop().is_some() => {
                    edit.echo.extend_from_slice(b"\x08 \x08");
                }
                0x20..=0x7e if self.buf.len() < MAX_LINE => {
                    self.buf.push(char::from(b));
                    edit.echo.push(b);
                }
                _ => {}
            }
        }
        edit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names() {
        assert_eq!(parse_login("tanaka+web01"), ("tanaka", Some("web01")));
        assert_eq!(parse_login("tanaka"), ("tanaka", None));
        assert_eq!(parse_login("tanaka+"), ("tanaka", None));
    }

    #[test]
    fn exec_commands() {
        assert_eq!(
            parse_exec("console web01"),
            ExecCommand::Console("web01".into())
        );
        assert_eq!(parse_exec("scp -t /tmp"), ExecCommand::FileTransfer);
        assert_eq!(
            parse_exec("/usr/lib/openssh/sftp-server"),
            ExecCommand::FileTransfer
        );
        assert_eq!(
            parse_exec("rsync --server -vlogDtpre.iLsfxC . /tmp"),
            ExecCommand::FileTransfer
        );
        assert_eq!(parse_exec("ls -l"), ExecCommand::Other);
        assert_eq!(parse_exec("console"), ExecCommand::Other);
        assert_eq!(parse_exec(""), ExecCommand::Other);
    }

    #[test]
    fn menu_pick_and_render() {
        let entries = vec![
            MenuEntry {
                name: "web01".into(),
                kind: "vm".into(),
                zone: "business".into(),
                denied: None,
            },
            MenuEntry {
                name: "db-phys01".into(),
                kind: "physical".into(),
                zone: "mynumber".into(),
                denied: Some("zone.path: no".into()),
            },
        ];
        assert_eq!(pick(&entries, "1").map(|e| e.name.as_str()), Some("web01"));
        assert_eq!(
            pick(&entries, " db-phys01 ").map(|e| e.name.as_str()),
            Some("db-phys01")
        );
        assert!(pick(&entries, "0").is_none());
        assert!(pick(&entries, "3").is_none());
        let text = render_menu("tanaka", &entries);
        assert!(text.contains(" 1) web01"));
        assert!(text.contains("not now: zone.path: no"));
    }

    #[test]
    fn line_editor() {
        let mut ed = LineEditor::default();
        let e = ed.feed(b"web0");
        assert_eq!(e.echo, b"web0");
        assert!(e.line.is_none());
        let e = ed.feed(b"2\x7f1\x1b[A\r");
        assert_eq!(e.line.as_deref(), Some("web01"));
        assert!(ed.feed(b"\x03").cancel);
        let long = vec![b'a'; MAX_LINE * 2];
        ed.feed(&long);
        assert_eq!(ed.feed(b"\n").line.map(|l| l.len()), Some(MAX_LINE));
    }
}
