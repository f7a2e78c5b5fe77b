//! Terminal replay figures: decode speed (× real time) of a synthetic one-hour admin
//! session, seek time anywhere in it, search and export times.
//!
//! Run: `cargo bench -p player --bench terminal`. The recording is built with the recorder's
//! own encoder (`encode_recording`, 1 MiB chunks as the writer's default), so the figures
//! include zstd decompression and record decoding, not only the VT emulator.

// A benchmark is a test harness: a failure here is a bench failure.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use player::export::{
    AsciicastOptions, Graphical, VIDEO_FPS, video_frames, write_asciicast, write_png, write_text,
};
use player::terminal::{TerminalFont, TerminalPictures, TerminalReplay};
use recorder::format::{
    ChannelId, Direction, Event, EventKind, Header, Record, RecordKind, encode_recording,
};
use recorder::signing::RecordingKey;

const S: u64 = 1_000_000;
const HOUR: u64 = 3600 * S;

/// A small deterministic PRNG (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn data(at_us: u64, direction: Direction, b: Vec<u8>) -> Record {
    Record {
        at_us,
        kind: RecordKind::Data {
            direction,
            channel: ChannelId(0),
            bytes: Bytes::from(b),
        },
    }
}

/// One hour of an admin at a shell: typed commands echoed key by key, command output from a
/// few lines to large log dumps (coloured, UTF-8), `top`/`vim` phases on the alternate screen
/// with full redraws, window resizes, policy events and idle pauses.
fn one_hour_session() -> (Header, Vec<Record>) {
    let header: Header = serde_json::from_value(serde_json::json!({
        "session_id": "01936f5e-0000-7000-8000-0000000000be",
        "protocol": "ssh",
        "user": "tanaka",
        "contractor": "acme",
        "source": "127.0.10.11",
        "target": "web01",
        "start_unix_us": 1_764_061_200_000_000i64,
        "metadata": {"term": "xterm-256color", "cols": "120", "rows": "40"},
    }))
    .unwrap();
    let mut rng = Rng(0x5ec1_5b0d);
    let mut recs = Vec::new();
    let mut t = S;
    let commands = [
        "ls -la /etc",
        "journalctl -u nginx --since today",
        "systemctl status nginx",
        "df -h",
        "tail -n 500 /var/log/syslog",
        "top",
        "vim /etc/nginx/nginx.conf",
        "grep -r error /var/log/nginx",
        "ps aux",
    ];
    let mut n = 0u64;
    while t < HOUR - 30 * S {
        n += 1;
        recs.push(data(
            t,
            Direction::ServerToClient,
            b"\x1b[32mtanaka@web01\x1b[0m:\x1b[34m~\x1b[0m$ ".to_vec(),
        ));
        let cmd = commands[rng.below(commands.len() as u64) as usize];
        for c in cmd.bytes() {
            t += 80_000 + rng.below(150_000);
            recs.push(data(t, Direction::ClientToServer, vec![c]));
            recs.push(data(t + 2000, Direction::ServerToClient, vec![c]));
        }
        t += 200_000;
        recs.push(data(t, Direction::ClientToServer, b"\r".to_vec()));
        recs.push(data(t + 2000, Direction::ServerToClient, b"\r\n".to_vec()));
        match cmd {
            "top" | "vim /etc/nginx/nginx.conf" => {
                recs.push(data(
                    t + 5000,
                    Direction::ServerToClient,
                    b"\x1b[?1049h\x1b[H\x1b[2J".to_vec(),
                ));
                // 30 s of full-screen redraws, 2 per second.
                for k in 0..60u64 {
                    let mut frame = Vec::new();
                    for row in 1..=40u64 {
                        frame.extend_from_slice(
                            format!(
                                "\x1b[{row};1H\x1b[7m{:>6}\x1b[0m root  20   0  {:>8} {:>6} S  {:>4}.{} 設定 nginx: worker\x1b[K",
                                1000 + row,
                                rng.below(1_000_000),
                                rng.below(100_000),
                                rng.below(100),
                                k % 10
                            )
                            .as_bytes(),
                        );
                    }
                    t += 500_000;
                    recs.push(data(t, Direction::ServerToClient, frame));
                    if k % 10 == 0 {
                        recs.push(data(t + 100, Direction::ClientToServer, b"j".to_vec()));
                    }
                }
                t += 300_000;
                recs.push(data(t, Direction::ClientToServer, b":q\r".to_vec()));
                recs.push(data(
                    t + 3000,
                    Direction::ServerToClient,
                    b"\x1b[?1049l".to_vec(),
                ));
            }
            _ => {
                // Output in 4 KiB reads, like a pty relay.
                let lines = match rng.below(10) {
                    0..=5 => 5 + rng.below(40),
                    6..=8 => 100 + rng.below(400),
                    _ => 2000 + rng.below(6000),
                };
                let mut out = Vec::new();
                for i in 0..lines {
                    out.extend_from_slice(
                        format!(
                            "Nov 25 10:{:02}:{:02} web01 nginx[{}]: \x1b[33m{}\x1b[0m 127.0.0.{} \"GET /api/v1/items/{} HTTP/1.1\" 200 {} 応答\r\n",
                            (i / 60) % 60,
                            i % 60,
                            1000 + rng.below(9000),
                            if i % 17 == 0 { "warn" } else { "info" },
                            rng.below(255),
                            rng.below(100_000),
                            rng.below(50_000)
                        )
                        .as_bytes(),
                    );
                }
                for piece in out.chunks(4096) {
                    t += 300 + rng.below(2000);
                    recs.push(data(t, Direction::ServerToClient, piece.to_vec()));
                }
            }
        }
        if n.is_multiple_of(40) {
            let w = 100 + rng.below(100) as u32;
            recs.push(Record {
                at_us: t,
                kind: RecordKind::Event(Event {
                    kind: EventKind::Resize {
                        width: w,
                        height: 40,
                    },
                    detail: String::new(),
                }),
            });
        }
        if n.is_multiple_of(97) {
            recs.push(Record {
                at_us: t,
                kind: RecordKind::Event(Event {
                    kind: EventKind::SftpRefused,
                    detail: "subsystem sftp refused".into(),
                }),
            });
        }
        // Thinking time; now and then a long pause.
        t += if rng.below(25) == 0 {
            120 * S
        } else {
            2 * S + rng.below(8 * S)
        };
    }
    (header, recs)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let (header, recs) = one_hour_session();
    let end_us = recs.last().map_or(0, |r| r.at_us) + 10 * S;
    let output: usize = recs
        .iter()
        .map(|r| match &r.kind {
            RecordKind::Data {
                direction: Direction::ServerToClient,
                bytes,
                ..
            } => bytes.len(),
            _ => 0,
        })
        .sum();
    let key = RecordingKey::generate().unwrap();
    let file = encode_recording(&header, &recs, 1024 * 1024, end_us, key.signing_key()).unwrap();
    println!(
        "synthetic session: {:.1} min, {} records, {:.1} MiB of output, recording file {:.1} MiB",
        end_us as f64 / 60e6,
        recs.len(),
        output as f64 / 1048576.0,
        file.len() as f64 / 1048576.0
    );

    // Decode: open = read every record, UTF-8, emulate all output, keep checkpoints.
    let mut open_times = Vec::new();
    let mut replay = None;
    for _ in 0..3 {
        let t0 = Instant::now();
        let r = TerminalReplay::open(&file).unwrap();
        open_times.push(t0.elapsed());
        replay = Some(r);
    }
    let replay = replay.unwrap();
    let open = *open_times.iter().min().unwrap();
    println!(
        "open (decode + emulate + checkpoints): {} (best of 3) = {:.0}x real time, {:.0} MiB/s of output; {} checkpoints",
        ms(open),
        end_us as f64 / 1e6 / open.as_secs_f64(),
        output as f64 / 1048576.0 / open.as_secs_f64(),
        replay.checkpoint_count()
    );

    // Seek: screen_at at 200 spread-out moments, in random order.
    let mut rng = Rng(42);
    let mut seeks: Vec<Duration> = (0..200)
        .map(|_| {
            let at = rng.below(end_us);
            let t0 = Instant::now();
            let s = replay.screen_at(at);
            let d = t0.elapsed();
            assert!(s.rows > 0);
            d
        })
        .collect();
    seeks.sort();
    let mean = seeks.iter().sum::<Duration>() / seeks.len() as u32;
    println!(
        "seek (screen_at, 200 random moments): mean {}, p50 {}, p99 {}, max {}",
        ms(mean),
        ms(seeks[seeks.len() / 2]),
        ms(seeks[seeks.len() * 99 / 100]),
        ms(*seeks.last().unwrap())
    );
    let t0 = Instant::now();
    let _ = replay.screen_at_sequential(end_us);
    println!(
        "for comparison, replay from the start to the end: {}",
        ms(t0.elapsed())
    );

    let t0 = Instant::now();
    let hits = replay.search("nginx.conf");
    let first = t0.elapsed();
    let t0 = Instant::now();
    let hits2 = replay.search("warn");
    println!(
        "search: first query (builds the index) {} ({} hits), next query {} ({} hits, capped)",
        ms(first),
        hits.len(),
        ms(t0.elapsed()),
        hits2.len()
    );

    let t0 = Instant::now();
    let mut sink = Vec::new();
    write_asciicast(&replay, &AsciicastOptions::default(), &mut sink).unwrap();
    println!(
        "asciicast export: {} ({:.1} MiB)",
        ms(t0.elapsed()),
        sink.len() as f64 / 1048576.0
    );
    let t0 = Instant::now();
    let mut sink = Vec::new();
    write_text(&replay, &mut sink).unwrap();
    println!(
        "text export: {} ({:.1} MiB)",
        ms(t0.elapsed()),
        sink.len() as f64 / 1048576.0
    );
    let idle = replay.idle_periods(Duration::from_secs(60));
    println!(
        "idle periods over 60 s: {}, markers: {}",
        idle.len(),
        replay.markers().len()
    );

    // Pictures (png/mp4 export): the screen drawn with the system's fonts.
    let font = TerminalFont::system();
    println!("pictures drawn with: {}", font.description());
    let mut pictures = TerminalPictures::new(TerminalReplay::open(&file).unwrap(), font);
    let mut rng = Rng(7);
    let mut times = Vec::new();
    let mut size = (0, 0);
    for _ in 0..20 {
        let at = rng.below(end_us);
        let t0 = Instant::now();
        let f = pictures.frame_at(at);
        let mut png = Vec::new();
        write_png(&f, &mut png).unwrap();
        times.push(t0.elapsed());
        size = (f.width, f.height);
    }
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "png at a random moment ({}x{} px): mean {}, worst {}",
        size.0,
        size.1,
        ms(mean),
        ms(*times.iter().max().unwrap())
    );
    let mut g = Graphical::Terminal(Box::new(pictures));
    let t0 = Instant::now();
    let mut frames = 0u64;
    video_frames(&mut g, |_| {
        frames += 1;
        Ok(())
    })
    .unwrap();
    let video = t0.elapsed();
    println!(
        "mp4 frames ({frames} at {VIDEO_FPS}/s, before ffmpeg): {} = {:.0}x real time",
        ms(video),
        end_us as f64 / 1e6 / video.as_secs_f64()
    );
}
