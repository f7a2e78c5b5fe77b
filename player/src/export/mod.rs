//! Exports of terminal recordings (`sekisho export --format asciicast|txt`).
//!
//! - [`asciicast`]: asciicast v2, which plays in the stock `asciinema play` and in
//!   asciinema-player. **Output only by default**: the recording keeps the typed keys for
//!   auditors, but an export is made to be shared, and keys typed at a password prompt are not
//!   echoed on screen yet are in the input stream. [`AsciicastOptions::include_input`] adds
//!   them as `"i"` events when an auditor explicitly asks.
//! - [`text`]: a transcript of what appeared, in order, without escape codes: the lines as
//!   they ended up once the target finished drawing them (a progress bar shows its last
//!   state, a line retyped after a backspace shows the final text), the same rendering
//!   `asciinema` uses. Full-screen applications (vim, less, top) draw on the alternate
//!   screen, which never scrolls into the transcript; their last screen is inserted as a
//!   delimited block when they exit. Typed keys that were not echoed (passwords) never
//!   appear.
//! - [`image`]: graphical recordings (RDP, VNC): the screen at a moment as PNG, and frames at
//!   a fixed rate for a video encoder.

pub mod asciicast;
pub mod bundle;
pub mod image;
pub mod text;

pub use asciicast::{AsciicastOptions, export_asciicast, write_asciicast};
pub use image::{Graphical, ImageError, VIDEO_FPS, export_png, video_frames, write_png};
pub use text::{export_text, write_text};
