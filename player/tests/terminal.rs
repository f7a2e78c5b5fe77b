//! Terminal replay, export and playback over real recordings: files are built with the
//! recorder's own encoder (`recorder::format::encode_recording`, the code the async writer
//! drives), not a mock of the format.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use player::export::{AsciicastOptions, export_text, write_asciicast, write_text};
use player::terminal::{
    MAX_TERMINAL_COLS, PlayOptions, PlayerError, Source, TerminalReplay, play_replay, play_terminal,
};
use recorder::format::{
    ChannelId, Direction, Event, EventKind, Header, Record, RecordKind, encode_recording,
};
use recorder::signing::RecordingKey;

const S: u64 = 1_000_000;

fn header(protocol: &str, meta: &[(&str, &str)]) -> Header {
    let metadata: serde_json::Map<String, serde_json::Value> = meta
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
        .collect();
    serde_json::from_value(serde_json::json!({
        "session_id": "01936f5e-0000-7000-8000-000000000042",
        "protocol": protocol,
        "user": "tanaka",
        "contractor": "acme",
        "source": "127.0.10.11",
        "target": "web01",
        "start_unix_us": 1_764_061_200_000_000i64,
        "metadata": metadata,
    }))
    .unwrap()
}

fn out(at_us: u64, b: &[u8]) -> Record {
    data(at_us, Direction::ServerToClient, b)
}

fn key(at_us: u64, b: &[u8]) -> Record {
    data(at_us, Direction::ClientToServer, b)
}

fn data(at_us: u64, direction: Direction, b: &[u8]) -> Record {
    Record {
        at_us,
        kind: RecordKind::Data {
            direction,
            channel: ChannelId(0),
            bytes: Bytes::copy_from_slice(b),
        },
    }
}

fn event(at_us: u64, kind: EventKind, detail: &str) -> Record {
    Record {
        at_us,
        kind: RecordKind::Event(Event {
            kind,
            detail: detail.to_owned(),
        }),
    }
}

fn encode(h: &Header, records: &[Record], end_us: u64) -> Vec<u8> {
    let key = RecordingKey::generate().unwrap();
    // Small chunks so the session spans several of them, as a real one does.
    encode_recording(h, records, 256, end_us, key.signing_key()).unwrap()
}

/// An SSH console session: a command with coloured output, a character split across two
/// records, a resize, a refused SFTP request, a sudo password (typed, not echoed), an invalid
/// byte, a 35 s pause, a full-screen program and a kill.
fn session() -> Vec<u8> {
    let h = header(
        "ssh",
        &[("term", "xterm-256color"), ("cols", "80"), ("rows", "24")],
    );
    let recs = vec![
        out(S / 2, b"sekisho: connected to web01\r\n$ "),
        key(S, b"l"),
        out(S + 1000, b"l"),
        key(S + S / 10, b"s"),
        out(S + S / 10 + 1000, b"s"),
        key(S + S / 5, b"\r"),
        out(S + S / 5 + 1000, b"\r\n\x1b[01;34metc\x1b[0m  hosts\r\n$ "),
        // 関所 = E9 96 A2 E6 89 80, split inside the first character.
        out(2 * S, b"echo \xe9\x96"),
        out(2 * S + S / 10, b"\xa2\xe6\x89\x80\r\n$ "),
        event(
            3 * S,
            EventKind::Resize {
                width: 100,
                height: 30,
            },
            "",
        ),
        event(
            3 * S + S / 2,
            EventKind::SftpRefused,
            "subsystem sftp refused",
        ),
        out(4 * S, b"sudo -i\r\n[sudo] password for tanaka: "),
        key(4 * S + S / 2, b"hunter2\r"),
        out(4 * S + S / 2 + 1000, b"\r\n# "),
        out(5 * S, b"bad\xff byte\r\n# "),
        // 35 s idle, then a full-screen program.
        out(
            40 * S,
            b"top\r\n\x1b[?1049h\x1b[H\x1b[2Jtop - 10:00:00 up 1 day\r\nTasks: 1 total",
        ),
        out(40 * S + S / 2, b"\x1b[?1049l# exit\r\n"),
        event(
            41 * S + S / 2,
            EventKind::SessionKilled,
            "killed by security (sato)",
        ),
    ];
    encode(&h, &recs, 42 * S)
}

/// Runs `cmd` with a pseudo-terminal as its controlling terminal.
fn in_pty(cmd: &str) -> std::process::Output {
    Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn peers_skipped() -> bool {
    std::env::var("SEKISHO_SKIP_PEERS").is_ok_and(|v| v == "1")
}

#[test]
fn opens_with_size_term_and_markers() {
    let r = TerminalReplay::open(&session()).unwrap();
    assert_eq!(r.size(), (80, 24));
    assert_eq!(r.term(), Some("xterm-256color"));
    assert!(r.is_complete());
    assert_eq!(r.end_us(), 42 * S);
    let kinds: Vec<_> = r
        .markers()
        .iter()
        .map(|m| (m.at_us, m.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (3 * S + S / 2, "sftp-refused"),
            (41 * S + S / 2, "session-killed")
        ]
    );
    assert_eq!(r.markers()[1].detail, "killed by security (sato)");
}

#[test]
fn screen_at_several_moments() {
    let r = TerminalReplay::open(&session()).unwrap();
    assert_eq!(r.screen_at(0).text(), "\n");

    let s = r.screen_at(S + S / 2);
    assert_eq!(s.lines[0], "sekisho: connected to web01");
    assert_eq!(s.lines[1], "$ ls");
    assert_eq!(s.lines[2], "etc  hosts");
    assert_eq!(s.cursor, Some((2, 3)));

    // The split character is not shown half-way …
    let s = r.screen_at(2 * S + S / 20);
    assert_eq!(s.lines[3], "$ echo");
    // … and whole once its last byte arrived.
    let s = r.screen_at(2 * S + S / 10);
    assert_eq!(s.lines[3], "$ echo 関所");
    assert_eq!((s.cols, s.rows), (80, 24));

    let s = r.screen_at(3 * S);
    assert_eq!((s.cols, s.rows), (100, 30));
    assert_eq!(r.size_at(3 * S), (100, 30));

    let s = r.screen_at(5 * S);
    assert!(s.text().contains("bad\u{fffd} byte"), "{}", s.text());
    assert!(!s.text().contains("hunter2"));

    let s = r.screen_at(40 * S + 1);
    assert!(s.alternate);
    assert_eq!(s.lines[0], "top - 10:00:00 up 1 day");
    let s = r.screen_at(41 * S);
    assert!(!s.alternate);
    assert!(s.text().contains("# exit"));
    assert_eq!(
        r.screen_at(u64::MAX),
        r.screen_at(41 * S).clone_at(u64::MAX)
    );
}

/// `Screen` with another time, for comparing the final state.
trait CloneAt {
    fn clone_at(&self, at_us: u64) -> Self;
}
impl CloneAt for player::terminal::Screen {
    fn clone_at(&self, at_us: u64) -> Self {
        let mut s = self.clone();
        s.at_us = at_us;
        s
    }
}

#[test]
fn seek_equals_sequential_replay() {
    let r = TerminalReplay::open(&session()).unwrap();
    for t in (0..=42 * S).step_by(50_000) {
        assert_eq!(r.screen_at(t), r.screen_at_sequential(t), "at {t} µs");
    }
}

#[test]
fn seek_equals_sequential_over_many_checkpoints() {
    // Several MiB of output with resizes and full-screen phases: many checkpoints.
    let h = header(
        "console-serial",
        &[("term.cols", "120"), ("term.rows", "40")],
    );
    let mut recs = Vec::new();
    let mut t = 0;
    for i in 0..20_000u64 {
        t += 1000 + (i % 7) * 300;
        let line = match i % 11 {
            0 => format!(
                "\x1b[?1049h\x1b[H\x1b[2J{i}: full screen\x1b[{};{}H#",
                i % 40,
                i % 120
            ),
            1 => "\x1b[?1049l".to_owned(),
            2 => format!("\x1b[3{}m{i} colour 日本語\x1b[0m\r\n", i % 8),
            3 => "progress 10%\rprogress 50%\rprogress 100%\r\n".to_owned(),
            _ => format!("{i} {}\r\n", "x".repeat((i % 150) as usize)),
        };
        recs.push(out(t, line.as_bytes()));
        if i % 3000 == 1500 {
            recs.push(event(
                t,
                EventKind::Resize {
                    width: 80 + (i % 4) as u32 * 20,
                    height: 30,
                },
                "",
            ));
        }
    }
    let r = TerminalReplay::open(&encode(&h, &recs, t)).unwrap();
    assert_eq!(r.size(), (120, 40));
    assert!(r.checkpoint_count() > 10, "{}", r.checkpoint_count());
    for k in 0..60 {
        let at = t * k / 59;
        assert_eq!(r.screen_at(at), r.screen_at_sequential(at), "at {at} µs");
    }
}

#[test]
fn search_output_and_typed_keys() {
    let r = TerminalReplay::open(&session()).unwrap();
    let hits = r.search("ETC");
    assert_eq!(hits.len(), 1);
    assert_eq!(
        (hits[0].at_us, hits[0].source),
        (S + S / 5 + 1000, Source::Output)
    );

    let hits = r.search("hunter2");
    assert_eq!(hits.len(), 1, "typed, never echoed: only in the input");
    assert_eq!(hits[0].source, Source::Input);
    assert_eq!(hits[0].at_us, 4 * S + S / 2);

    let sources: Vec<_> = r.search("ls").iter().map(|h| h.source).collect();
    assert!(sources.contains(&Source::Input) && sources.contains(&Source::Output));
    assert!(r.search("関所").iter().any(|h| h.at_us == 2 * S + S / 10));
    assert!(r.search("not there").is_empty());
}

#[test]
fn idle_periods_are_found() {
    let r = TerminalReplay::open(&session()).unwrap();
    let idle = r.idle_periods(Duration::from_secs(10));
    assert_eq!(idle.len(), 1);
    assert_eq!((idle[0].start_us, idle[0].end_us), (5 * S, 40 * S));
    assert_eq!(idle[0].duration(), Duration::from_secs(35));
    assert!(r.idle_periods(Duration::from_secs(60)).is_empty());
}

#[test]
fn asciicast_is_json_lines_without_input_by_default() {
    let r = TerminalReplay::open(&session()).unwrap();
    let mut buf = Vec::new();
    write_asciicast(&r, &AsciicastOptions::default(), &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let mut lines = text.lines();
    let head: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(head["version"], 2);
    assert_eq!(head["width"], 80);
    assert_eq!(head["height"], 24);
    assert_eq!(head["timestamp"], 1_764_061_200);
    assert_eq!(head["env"]["TERM"], "xterm-256color");
    let mut output = String::new();
    let mut codes = Vec::new();
    let mut last_t = 0.0;
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let t = v[0].as_f64().unwrap();
        assert!(t >= last_t, "times ascend");
        last_t = t;
        let code = v[1].as_str().unwrap().to_owned();
        if code == "o" {
            output.push_str(v[2].as_str().unwrap());
        }
        if code == "r" {
            assert_eq!(v[2], "100x30");
            assert_eq!(t, 3.0);
        }
        codes.push(code);
    }
    assert!(!codes.contains(&"i".to_owned()), "input is off by default");
    assert!(!codes.contains(&"m".to_owned()));
    assert!(!text.contains("hunter2"));
    assert!(output.contains("echo 関所"));
    assert!(output.contains("bad\u{fffd} byte"));

    let mut buf = Vec::new();
    let opts = AsciicastOptions {
        include_input: true,
        markers: true,
        idle_time_limit: Some(Duration::from_secs(2)),
        title: Some("audit copy".into()),
    };
    write_asciicast(&r, &opts, &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    assert!(text.contains("[4.500000, \"i\", \"hunter2\\r\"]"), "{text}");
    assert!(text.contains("[3.500000, \"m\", \"sftp-refused: subsystem sftp refused\"]"));
    let head: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(head["idle_time_limit"], 2.0);
    assert_eq!(head["title"], "audit copy");
}

#[test]
fn asciinema_accepts_the_export() {
    let have = |p: &str| Command::new(p).arg("--version").output().is_ok();
    if !have("asciinema") || !have("script") {
        assert!(
            peers_skipped(),
            "asciinema or script (util-linux) is not installed (set SEKISHO_SKIP_PEERS=1 to skip)"
        );
        return;
    }
    let r = TerminalReplay::open(&session()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, opts) in [
        ("default.cast", AsciicastOptions::default()),
        (
            "full.cast",
            AsciicastOptions {
                include_input: true,
                markers: true,
                idle_time_limit: Some(Duration::from_secs(1)),
                title: None,
            },
        ),
    ] {
        let path = dir.path().join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        write_asciicast(&r, &opts, &mut f).unwrap();
        drop(f);

        // asciinema 2.x opens /dev/tty: give it one with util-linux `script`.
        let cat = in_pty(&format!("asciinema cat '{}'", path.display()));
        assert!(
            cat.status.success(),
            "asciinema cat {name}: {}",
            String::from_utf8_lossy(&cat.stdout)
        );
        let shown = String::from_utf8_lossy(&cat.stdout);
        assert!(shown.contains("echo 関所"), "{shown}");
        assert!(shown.contains("top - 10:00:00"));

        // Plays to the end (100× speed, pauses capped at 0.1 s).
        let play = in_pty(&format!(
            "asciinema play -s 100 -i 0.1 '{}'",
            path.display()
        ));
        assert!(
            play.status.success(),
            "asciinema play {name}: {}",
            String::from_utf8_lossy(&play.stdout)
        );
        assert!(String::from_utf8_lossy(&play.stdout).contains("# exit"));
    }
}

#[test]
fn text_export_is_a_transcript() {
    let bytes = session();
    let mut buf = Vec::new();
    export_text(&bytes, &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "[sekisho] session 01936f5e-0000-7000-8000-000000000042 ssh tanaka@web01 from \
         127.0.10.11, started 2025-11-25T09:00:00Z, 80x24"
    );
    let body: Vec<&str> = lines[1..].to_vec();
    let expected_start = [
        "sekisho: connected to web01",
        "$ ls",
        "etc  hosts",
        "$ echo 関所",
        "$ sudo -i",
        "[sudo] password for tanaka:",
        "# bad\u{fffd} byte",
        "# top",
        "[sekisho] full-screen output at 00:00:40 (alternate screen, last state)",
        "top - 10:00:00 up 1 day",
        "Tasks: 1 total",
        "[sekisho] end of full-screen output",
        "# exit",
        "[sekisho] events:",
        "[sekisho] 00:00:03 sftp-refused: subsystem sftp refused",
        "[sekisho] 00:00:41 session-killed: killed by security (sato)",
        "[sekisho] end 00:00:42, complete recording",
    ];
    assert_eq!(body, expected_start, "{text}");
    assert!(!text.contains('\x1b'));
    assert!(!text.contains("hunter2"));

    // The same through an opened replay.
    let mut again = Vec::new();
    write_text(&TerminalReplay::open(&bytes).unwrap(), &mut again).unwrap();
    assert_eq!(again, text.as_bytes());
}

#[test]
fn playback_timing_speed_and_idle_cap() {
    let h = header("ssh", &[]);
    let recs = [
        out(0, b"a"),
        out(S, b"b"),
        key(2 * S, b"x"), // input is not played
        out(31 * S, b"c"),
        out(32 * S, b"d"),
    ];
    let bytes = encode(&h, &recs, 40 * S);
    let mut sleeps = Vec::new();
    let mut screen = Vec::new();
    let stats = play_terminal(
        &bytes,
        2.0,
        Some(Duration::from_secs(5)),
        &mut screen,
        |d| sleeps.push(d),
    )
    .unwrap();
    assert_eq!(screen, b"abcd");
    // Gaps 1 s, 30 s capped to 5 s, 1 s; at 2×.
    assert_eq!(
        sleeps,
        [
            Duration::from_millis(500),
            Duration::from_millis(2500),
            Duration::from_millis(500)
        ]
    );
    assert_eq!(stats.slept, Duration::from_millis(3500));
    assert_eq!(stats.events, 4);

    // Uncapped at 0.5×.
    let mut sleeps = Vec::new();
    play_terminal(&bytes, 0.5, None, &mut Vec::new(), |d| sleeps.push(d)).unwrap();
    let total: Duration = sleeps.iter().sum();
    assert_eq!(total, Duration::from_secs(64));

    for bad in [0.25, 17.0, f64::NAN] {
        assert!(matches!(
            play_terminal(&bytes, bad, None, &mut Vec::new(), |_| {}),
            Err(PlayerError::InvalidSpeed(_))
        ));
    }

    // From the middle: the screen is drawn at once, then the rest plays.
    let r = TerminalReplay::open(&bytes).unwrap();
    let mut screen = Vec::new();
    let mut sleeps = Vec::new();
    let opts = PlayOptions {
        speed: 1.0,
        skip_idle: None,
        from_us: 10 * S,
        ..PlayOptions::default()
    };
    play_replay(&r, opts, &mut screen, |d| sleeps.push(d)).unwrap();
    let screen = String::from_utf8(screen).unwrap();
    assert!(screen.contains("ab"));
    assert!(screen.ends_with("cd"));
    assert_eq!(sleeps, [Duration::from_secs(21), Duration::from_secs(1)]);
}

#[test]
fn playback_drops_sequences_aimed_at_the_viewer() {
    // A target that asks the viewer's terminal to report its title and writes its clipboard.
    let h = header("ssh", &[]);
    let recs = [
        out(0, b"\x1b[1mls\x1b[0m\x1b[21t\x1b]52;c;cm0gLXJm"),
        out(1, b"IC8K\x07\x1b[6n done\r\n"),
    ];
    let r = TerminalReplay::open(&encode(&h, &recs, 2)).unwrap();
    let mut screen = Vec::new();
    play_replay(&r, PlayOptions::default(), &mut screen, |_| {}).unwrap();
    assert_eq!(screen, b"\x1b[1mls\x1b[0m done\r\n");

    let raw = PlayOptions {
        danger_raw_output: true,
        ..PlayOptions::default()
    };
    let mut screen = Vec::new();
    play_replay(&r, raw, &mut screen, |_| {}).unwrap();
    assert!(screen.windows(5).any(|w| w == b"\x1b[21t"));
}

#[test]
fn rejects_other_protocols_garbage_and_corruption() {
    let rdp = encode(&header("rdp", &[]), &[out(0, b"x")], 1);
    assert!(matches!(
        TerminalReplay::open(&rdp),
        Err(PlayerError::NotTerminal(p)) if p == "rdp"
    ));
    assert!(matches!(
        TerminalReplay::open(b"GIF89a not a recording"),
        Err(PlayerError::NotARecording(_))
    ));

    let good = session();
    // Damage a chunk's magic: bytes that can never be a frame.
    let rec = recorder::reader::Recording::parse(&good).unwrap();
    let second = rec.chunks()[1].offset as usize;
    let mut bad = good.clone();
    bad[second] ^= 0xff;
    let err = TerminalReplay::open(&bad).unwrap_err();
    assert!(matches!(err, PlayerError::Corrupt { .. }), "{err}");
    assert!(err.to_string().starts_with("corrupt recording at byte"));

    // Damage a chunk's zstd frame.
    let mut bad = good.clone();
    let c = *rec.chunks().last().unwrap();
    let at = c.offset as usize;
    let Some((recorder::format::Frame::Chunk(frame), _)) =
        recorder::format::decode_frame(&good[at..]).unwrap()
    else {
        panic!("no chunk at {at}")
    };
    // The zstd frame's magic: the player decodes without verifying (verification is its own
    // step), so what it must refuse is a payload that cannot be decompressed.
    let mid = at + frame.covered.len() - frame.payload.len();
    bad[mid] ^= 0x55;
    bad[mid + 1] ^= 0x55;
    match TerminalReplay::open(&bad) {
        Err(PlayerError::Corrupt { .. }) => {}
        Ok(r) => panic!("damaged payload decoded: {:?}", r.screen_at(u64::MAX)),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn recording_cut_short_still_opens() {
    let good = session();
    let rec = recorder::reader::Recording::parse(&good).unwrap();
    let last = *rec.chunks().last().unwrap();
    // Cut inside the last chunk, as a crash would.
    let cut = &good[..last.offset as usize + 10];
    let r = TerminalReplay::open(cut).unwrap();
    assert!(!r.is_complete());
    assert!(r.screen_at(u64::MAX).text().contains("etc  hosts"));
    let mut txt = Vec::new();
    write_text(&r, &mut txt).unwrap();
    assert!(
        String::from_utf8(txt)
            .unwrap()
            .ends_with("recording cut short (no trailer)\n")
    );
}

#[test]
fn hostile_sizes_are_clamped() {
    let h = header("ssh", &[("cols", "4000000000"), ("rows", "0")]);
    let recs = [
        out(0, b"hello"),
        event(
            1,
            EventKind::Resize {
                width: u32::MAX,
                height: 100_000,
            },
            "",
        ),
        out(2, b" world"),
    ];
    let r = TerminalReplay::open(&encode(&h, &recs, 3)).unwrap();
    // Zero rows means "unknown" (RFC 4254), so the default stands; the rest is clamped.
    assert_eq!(r.size(), (MAX_TERMINAL_COLS, 24));
    assert_eq!(r.clamped_sizes(), 3);
    let s = r.screen_at(3);
    assert_eq!((s.cols, s.rows), (1000, 1000));
    assert_eq!(s.lines[0], "hello world");
}

#[test]
fn other_channels_and_empty_recordings() {
    let h = header("ssh", &[]);
    let mut other = out(1, b"not the terminal");
    if let RecordKind::Data { channel, .. } = &mut other.kind {
        *channel = ChannelId(7);
    }
    let r = TerminalReplay::open(&encode(&h, &[out(0, b"tty"), other], 2)).unwrap();
    assert_eq!(r.ignored_records(), 1);
    assert_eq!(r.screen_at(2).lines[0], "tty");

    let empty = TerminalReplay::open(&encode(&h, &[], 0)).unwrap();
    assert_eq!(empty.size(), (80, 24));
    assert_eq!(empty.screen_at(0).text(), "\n");
    let mut buf = Vec::new();
    write_asciicast(&empty, &AsciicastOptions::default(), &mut buf).unwrap();
    assert_eq!(String::from_utf8(buf).unwrap().lines().count(), 1);
}
