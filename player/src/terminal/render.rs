//! Pictures of terminal screens: the screen at a moment drawn into an RGB image, for
//! `sekisho export --format png|mp4` of SSH and serial console recordings.
//!
//! Every cell is a fixed `cell_width`×`cell_height` box; a wide (CJK) character takes two
//! boxes, as on the contractor's terminal. Colours are xterm's: the 16 ANSI colours, the
//! 256-colour cube and grey ramp, and 24-bit colours as the target sent them; default text
//! is light grey on black. Bold draws the glyph twice a pixel apart and brightens the eight
//! basic colours (xterm's default), faint mixes the text colour halfway to the background,
//! italic slants the glyph (its top a fifth of the cell height to the right, as fonts' own
//! obliques do), inverse swaps the two colours, underline and strikethrough are one-pixel
//! lines, and the cursor, when the application shows it, is a block (the cell inverted).
//! Blinking text is drawn steady, in its visible phase: a picture shows what was there.
//!
//! Glyphs come from [`TerminalFont`]: outline fonts found on the system at run time (DejaVu
//! Sans Mono for Latin text, then a Japanese font for kana and kanji), or, when none is
//! installed, a built-in 8×8 bitmap font (`font8x8`: ASCII, Latin-1, Greek, box drawing,
//! blocks, hiragana) drawn at 8×16. A character no font has is drawn as an empty box, so the
//! export never fails for lack of a font and never hides that something was there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ab_glyph::{Font, FontVec, PxScale, ScaleFont};
use avt::Terminal;
use font8x8::UnicodeFonts;

use super::{StepKind, TerminalReplay, apply, new_terminal};
use crate::rdp::RgbaFrame;

/// Largest picture side in pixels. The terminal size comes from the recording (up to
/// 1000×1000 cells); cells past this are cropped, which no real window reaches.
pub const MAX_PICTURE_SIDE: u32 = 8192;
/// Largest picture area in pixels (an 8K UHD screen, as for VNC framebuffers): rows past it
/// are cropped, so a hostile size cannot ask for gigabytes.
pub const MAX_PICTURE_PIXELS: u32 = 7680 * 4320;
/// Largest font file read (Noto CJK collections are about 20 MiB).
pub const MAX_FONT_FILE: u64 = 64 * 1024 * 1024;
/// Height of an outline font's em box in pixels: text as large as a 12-point terminal font.
pub const FONT_PX: f32 = 16.0;
/// Glyph masks kept; a recording could show every character of Unicode once.
const GLYPH_CACHE: usize = 4096;

/// Outline fonts tried, in order, when `SEKISHO_TERMINAL_FONTS` is not set: a monospaced
/// Latin font first (its advance sets the cell width), then Japanese fonts for what it lacks.
/// Debian packages: `fonts-dejavu-core`, `fonts-ipafont-gothic`, `fonts-noto-cjk`.
pub const SYSTEM_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
];

/// A colour as the terminal set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermColor {
    /// One of the 256 indexed colours.
    Indexed(u8),
    /// A 24-bit colour.
    Rgb(u8, u8, u8),
}

/// One cell of the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// The character (' ' when empty).
    pub ch: char,
    /// 1, 2 for the first half of a wide character, 0 for its second half.
    pub width: u8,
    /// Text colour (`None`: the default).
    pub fg: Option<TermColor>,
    /// Background colour (`None`: the default).
    pub bg: Option<TermColor>,
    /// Bold.
    pub bold: bool,
    /// Faint.
    pub faint: bool,
    /// Italic.
    pub italic: bool,
    /// Underlined.
    pub underline: bool,
    /// Struck through.
    pub strikethrough: bool,
    /// Inverse video.
    pub inverse: bool,
}

/// The screen at a moment with every cell's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellGrid {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// `cols * rows` cells, row by row.
    pub cells: Vec<Cell>,
    /// Cursor (column, row); `None` when hidden.
    pub cursor: Option<(u16, u16)>,
}

impl CellGrid {
    /// The cell at (column, row).
    pub fn get(&self, col: u16, row: u16) -> Option<&Cell> {
        if col >= self.cols {
            return None;
        }
        self.cells
            .get(usize::from(row) * usize::from(self.cols) + usize::from(col))
    }
}

fn color(c: Option<avt::Color>) -> Option<TermColor> {
    c.map(|c| match c {
        avt::Color::Indexed(i) => TermColor::Indexed(i),
        avt::Color::RGB(rgb) => TermColor::Rgb(rgb.r, rgb.g, rgb.b),
    })
}

pub(super) fn grid_of(term: &Terminal) -> CellGrid {
    let (c, r) = term.size();
    let cols = u16::try_from(c).unwrap_or(super::MAX_TERMINAL_COLS);
    let rows = u16::try_from(r).unwrap_or(super::MAX_TERMINAL_ROWS);
    let blank = Cell {
        ch: ' ',
        width: 1,
        fg: None,
        bg: None,
        bold: false,
        faint: false,
        italic: false,
        underline: false,
        strikethrough: false,
        inverse: false,
    };
    let mut cells = Vec::with_capacity(usize::from(cols) * usize::from(rows));
    for line in term.screen().visible_lines().take(usize::from(rows)) {
        let start = cells.len();
        for cell in line.cells().iter().take(usize::from(cols)) {
            let pen = cell.pen();
            cells.push(Cell {
                ch: cell.char(),
                width: cell.width(),
                fg: color(pen.foreground()),
                bg: color(pen.background()),
                bold: pen.is_bold(),
                faint: pen.is_faint(),
                italic: pen.is_italic(),
                underline: pen.is_underline(),
                strikethrough: pen.is_strikethrough(),
                inverse: pen.is_inverse(),
            });
        }
        cells.resize(start + usize::from(cols), blank);
    }
    cells.resize(usize::from(cols) * usize::from(rows), blank);
    let cursor = term.cursor().position().map(|(x, y)| {
        (
            u16::try_from(x).unwrap_or(u16::MAX),
            u16::try_from(y).unwrap_or(u16::MAX),
        )
    });
    CellGrid {
        cols,
        rows,
        cells,
        cursor,
    }
}

impl TerminalReplay {
    /// The screen after every step at or before `at_us`, with attributes (for pictures).
    pub fn cells_at(&self, at_us: u64) -> CellGrid {
        grid_of(&self.terminal_at(at_us))
    }
}

/// Default text colour (xterm's colour 7).
pub const DEFAULT_FG: [u8; 3] = [229, 229, 229];
/// Default background.
pub const DEFAULT_BG: [u8; 3] = [0, 0, 0];

const ANSI16: [[u8; 3]; 16] = [
    [0, 0, 0],
    [205, 0, 0],
    [0, 205, 0],
    [205, 205, 0],
    [0, 0, 238],
    [205, 0, 205],
    [0, 205, 205],
    [229, 229, 229],
    [127, 127, 127],
    [255, 0, 0],
    [0, 255, 0],
    [255, 255, 0],
    [92, 92, 255],
    [255, 0, 255],
    [0, 255, 255],
    [255, 255, 255],
];

/// The RGB value of an indexed colour (xterm's palette).
pub fn indexed_rgb(i: u8) -> [u8; 3] {
    const LEVELS: [u8; 6] = [0, 95, 135, 175, 215, 255];
    match i {
        0..=15 => ANSI16.get(usize::from(i)).copied().unwrap_or(DEFAULT_FG),
        16..=231 => {
            let n = usize::from(i - 16);
            let l = |k: usize| LEVELS.get(k % 6).copied().unwrap_or(0);
            [l(n / 36), l(n / 6), l(n)]
        }
        _ => {
            let g = 8 + 10 * (i - 232);
            [g, g, g]
        }
    }
}

fn rgb(c: TermColor, bold: bool) -> [u8; 3] {
    match c {
        TermColor::Indexed(i) if bold && i < 8 => indexed_rgb(i + 8),
        TermColor::Indexed(i) => indexed_rgb(i),
        TermColor::Rgb(r, g, b) => [r, g, b],
    }
}

/// Where glyphs come from (see the module documentation).
enum Source {
    /// Outline fonts in order, each with the scale that gives it the first one's em size.
    Outline {
        fonts: Vec<(FontVec, PxScale)>,
        baseline: f32,
    },
    /// `font8x8`, each bitmap row drawn twice.
    Builtin,
}

/// The glyphs and cell size used to draw terminal screens.
pub struct TerminalFont {
    source: Source,
    description: String,
    cell_width: u32,
    cell_height: u32,
    /// Coverage masks (0-255) by (character, cells wide).
    cache: HashMap<(char, u8), Arc<Vec<u8>>>,
}

impl std::fmt::Debug for TerminalFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalFont")
            .field("description", &self.description)
            .field("cell", &(self.cell_width, self.cell_height))
            .finish_non_exhaustive()
    }
}

fn load_font(path: &Path) -> Option<FontVec> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FONT_FILE {
        return None;
    }
    let data = std::fs::read(path).ok()?;
    // Collections (.ttc): the first face (Japanese in Noto CJK).
    FontVec::try_from_vec_and_index(data, 0).ok()
}

impl TerminalFont {
    /// The built-in bitmap font: 8×16 cells, no files needed.
    pub fn builtin() -> TerminalFont {
        TerminalFont {
            source: Source::Builtin,
            description: "built-in 8x8 bitmap font (font8x8)".to_owned(),
            cell_width: 8,
            cell_height: 16,
            cache: HashMap::new(),
        }
    }

    /// The fonts of `SEKISHO_TERMINAL_FONTS` (paths separated by `:`) if set, else
    /// [`SYSTEM_FONTS`]; the built-in font when none of them loads.
    pub fn system() -> TerminalFont {
        let paths: Vec<PathBuf> = match std::env::var_os("SEKISHO_TERMINAL_FONTS") {
            Some(list) => std::env::split_paths(&list).collect(),
            None => SYSTEM_FONTS.iter().map(PathBuf::from).collect(),
        };
        TerminalFont::from_files(&paths)
    }

    /// Outline fonts from these files, in order (those that do not load are skipped); the
    /// built-in font when none loads.
    pub fn from_files(paths: &[PathBuf]) -> TerminalFont {
        // The same file under two names (Debian's fonts-japanese-gothic.ttf is a link to
        // IPAGothic) is loaded once.
        let mut seen = Vec::new();
        let loaded: Vec<(FontVec, &PathBuf)> = paths
            .iter()
            .filter(|p| {
                let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
                let new = !seen.contains(&real);
                seen.push(real);
                new
            })
            .filter_map(|p| load_font(p).map(|f| (f, p)))
            .collect();
        let Some((first, _)) = loaded.first() else {
            return TerminalFont::builtin();
        };
        // The first font's em at FONT_PX; the others are scaled to the same em, so kanji
        // from a Japanese font match the Latin text in size.
        let em = |f: &FontVec| {
            let upm = f.units_per_em().unwrap_or(1000.0).max(1.0);
            (f.height_unscaled() / upm).max(0.1)
        };
        let first_scale = PxScale::from(FONT_PX * em(first));
        let scaled = first.as_scaled(first_scale);
        let m = first.glyph_id('M');
        let cell_width = (scaled.h_advance(m).round() as u32).clamp(1, 64);
        let cell_height = ((scaled.ascent() - scaled.descent()).ceil() as u32).clamp(1, 128);
        let baseline = scaled.ascent().round();
        let description = loaded
            .iter()
            .map(|(_, p)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let fonts = loaded
            .into_iter()
            .map(|(f, _)| {
                let s = PxScale::from(FONT_PX * em(&f));
                (f, s)
            })
            .collect();
        TerminalFont {
            source: Source::Outline { fonts, baseline },
            description,
            cell_width,
            cell_height,
            cache: HashMap::new(),
        }
    }

    /// Which fonts are used (file paths, or the built-in font).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether glyphs come from font files (false: the built-in bitmap font).
    pub fn is_outline(&self) -> bool {
        matches!(self.source, Source::Outline { .. })
    }

    /// Cell size in pixels (width, height).
    pub fn cell_size(&self) -> (u32, u32) {
        (self.cell_width, self.cell_height)
    }

    /// The coverage mask of `ch` over `span` cells: `span * cell_width` × `cell_height`.
    fn glyph(&mut self, ch: char, span: u8) -> Arc<Vec<u8>> {
        if let Some(g) = self.cache.get(&(ch, span)) {
            return g.clone();
        }
        let w = self.cell_width * u32::from(span);
        let h = self.cell_height;
        let mut mask = vec![0u8; (w * h) as usize];
        let drawn = match &self.source {
            Source::Outline { fonts, baseline } => {
                outline_glyph(fonts, *baseline, ch, w, h, &mut mask)
            }
            Source::Builtin => false,
        };
        if !drawn && !bitmap_glyph(ch, w, h, &mut mask) && !ch.is_whitespace() {
            tofu(w, h, &mut mask);
        }
        if self.cache.len() >= GLYPH_CACHE {
            self.cache.clear();
        }
        let g = Arc::new(mask);
        self.cache.insert((ch, span), g.clone());
        g
    }

    /// Draws `grid` (see the module documentation). The picture is `cols * cell_width` ×
    /// `rows * cell_height`, cropped to [`MAX_PICTURE_SIDE`].
    pub fn render(&mut self, grid: &CellGrid) -> RgbaFrame {
        let (cw, ch) = (self.cell_width, self.cell_height);
        let cols = u32::from(grid.cols).min(MAX_PICTURE_SIDE / cw).max(1);
        let rows = u32::from(grid.rows)
            .min(MAX_PICTURE_SIDE / ch)
            .min(MAX_PICTURE_PIXELS / (cols * cw) / ch)
            .max(1);
        let (width, height) = (cols * cw, rows * ch);
        let mut rgba =
            [DEFAULT_BG[0], DEFAULT_BG[1], DEFAULT_BG[2], 255].repeat((width * height) as usize);
        for row in 0..rows {
            let mut col = 0u32;
            while col < cols {
                let (c16, r16) = (col as u16, row as u16);
                let Some(cell) = grid.get(c16, r16) else {
                    break;
                };
                let span = if cell.width == 2 && col + 1 < cols {
                    2
                } else {
                    1
                };
                let cursor = grid
                    .cursor
                    .is_some_and(|(x, y)| y == r16 && (x == c16 || (span == 2 && x == c16 + 1)));
                self.draw_cell(cell, span, cursor, col * cw, row * ch, width, &mut rgba);
                col += u32::from(span);
            }
        }
        RgbaFrame {
            width: u16::try_from(width).unwrap_or(u16::MAX),
            height: u16::try_from(height).unwrap_or(u16::MAX),
            rgba,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn draw_cell(
        &mut self,
        cell: &Cell,
        span: u8,
        cursor: bool,
        x0: u32,
        y0: u32,
        stride: u32,
        rgba: &mut [u8],
    ) {
        let mut fg = cell.fg.map_or(DEFAULT_FG, |c| rgb(c, cell.bold));
        let mut bg = cell.bg.map_or(DEFAULT_BG, |c| rgb(c, false));
        if cell.faint {
            fg = mix(fg, bg, 128);
        }
        if cell.inverse != cursor {
            std::mem::swap(&mut fg, &mut bg);
        }
        // The second half of a wide character cut off at the right margin, or a blank.
        let shown = cell.width != 0 && !cell.ch.is_control();
        let w = self.cell_width * u32::from(span);
        let h = self.cell_height;
        let mask = if shown && cell.ch != ' ' {
            Some(self.glyph(cell.ch, span))
        } else {
            None
        };
        let underline_y = h.saturating_sub(2);
        let strike_y = h / 2;
        if mask.is_none() && !cell.underline && !cell.strikethrough {
            // A blank cell (most of a screen): one colour, no blending.
            for y in 0..h {
                let i = (((y0 + y) * stride + x0) * 4) as usize;
                if let Some(row) = rgba.get_mut(i..i + (w * 4) as usize) {
                    for p in row.chunks_exact_mut(4) {
                        p.copy_from_slice(&[bg[0], bg[1], bg[2], 255]);
                    }
                }
            }
            return;
        }
        for y in 0..h {
            let line =
                (cell.underline && y == underline_y) || (cell.strikethrough && y == strike_y);
            // Italic: each row of the glyph moves right by its height above the bottom.
            let slant = if cell.italic { (h - 1 - y) / 5 } else { 0 };
            for x in 0..w {
                let mut cov = if line { 255 } else { 0 };
                if let Some(m) = &mask {
                    let at = |x: u32| {
                        x.checked_sub(slant)
                            .and_then(|x| m.get((y * w + x) as usize).copied())
                            .unwrap_or(0)
                    };
                    cov = cov.max(at(x));
                    if cell.bold && x > 0 {
                        cov = cov.max(at(x - 1));
                    }
                }
                let px = mix(fg, bg, cov);
                let i = (((y0 + y) * stride + x0 + x) * 4) as usize;
                if let Some(p) = rgba.get_mut(i..i + 3) {
                    p.copy_from_slice(&px);
                }
            }
        }
    }
}

/// `a` over `b` with coverage `cov` (0: all `b`, 255: all `a`).
fn mix(a: [u8; 3], b: [u8; 3], cov: u8) -> [u8; 3] {
    let c = u32::from(cov);
    let m = |a: u8, b: u8| ((u32::from(a) * c + u32::from(b) * (255 - c) + 127) / 255) as u8;
    [m(a[0], b[0]), m(a[1], b[1]), m(a[2], b[2])]
}

fn outline_glyph(
    fonts: &[(FontVec, PxScale)],
    baseline: f32,
    ch: char,
    w: u32,
    h: u32,
    mask: &mut [u8],
) -> bool {
    for (font, scale) in fonts {
        let id = font.glyph_id(ch);
        if id.0 == 0 {
            continue;
        }
        let advance = font.as_scaled(*scale).h_advance(id);
        // Centred in its cells: a Japanese font's kanji are one em wide, a little less
        // than two Latin cells.
        let x = ((w as f32 - advance) / 2.0).max(0.0).floor();
        let glyph = id.with_scale_and_position(*scale, ab_glyph::point(x, baseline));
        if let Some(outlined) = font.outline_glyph(glyph) {
            let b = outlined.px_bounds();
            outlined.draw(|gx, gy, c| {
                let px = b.min.x as i64 + i64::from(gx);
                let py = b.min.y as i64 + i64::from(gy);
                if (0..i64::from(w)).contains(&px) && (0..i64::from(h)).contains(&py) {
                    let v = (c.clamp(0.0, 1.0) * 255.0).round() as u8;
                    if let Some(m) = mask.get_mut((py * i64::from(w) + px) as usize) {
                        *m = (*m).max(v);
                    }
                }
            });
        }
        // Found (a space has no outline, and that is right).
        return true;
    }
    false
}

fn bitmap_glyph(ch: char, w: u32, h: u32, mask: &mut [u8]) -> bool {
    let bits = font8x8::BASIC_FONTS
        .get(ch)
        .or_else(|| font8x8::LATIN_FONTS.get(ch))
        .or_else(|| font8x8::BOX_FONTS.get(ch))
        .or_else(|| font8x8::BLOCK_FONTS.get(ch))
        .or_else(|| font8x8::GREEK_FONTS.get(ch))
        .or_else(|| font8x8::HIRAGANA_FONTS.get(ch))
        .or_else(|| font8x8::MISC_FONTS.get(ch));
    let Some(bits) = bits else {
        return false;
    };
    // Nearest neighbour from 8×8 to the cells (8×16 for one built-in cell).
    for y in 0..h {
        let row = bits.get((y * 8 / h) as usize).copied().unwrap_or(0);
        for x in 0..w {
            if row & (1 << (x * 8 / w)) != 0
                && let Some(m) = mask.get_mut((y * w + x) as usize)
            {
                *m = 255;
            }
        }
    }
    true
}

/// An empty box inside the cells, for a character no font has.
fn tofu(w: u32, h: u32, mask: &mut [u8]) {
    if w < 4 || h < 6 {
        return;
    }
    let (x0, x1, y0, y1) = (1, w - 2, 2, h - 3);
    for y in y0..=y1 {
        for x in x0..=x1 {
            if (x == x0 || x == x1 || y == y0 || y == y1)
                && let Some(m) = mask.get_mut((y * w + x) as usize)
            {
                *m = 255;
            }
        }
    }
}

/// A terminal recording as pictures: the screen at any moment drawn by a [`TerminalFont`].
///
/// Moving forward feeds the emulator only the steps in between, and a moment with no new
/// output reuses the last picture, so a video of a mostly idle session costs little; going
/// back starts from the nearest checkpoint.
pub struct TerminalPictures {
    replay: TerminalReplay,
    font: TerminalFont,
    term: Terminal,
    /// Steps applied to `term`.
    next: usize,
    /// The picture of `term` as it stood after the last `frame_at`.
    last: Option<RgbaFrame>,
}

impl std::fmt::Debug for TerminalPictures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalPictures")
            .field("font", &self.font)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl TerminalPictures {
    /// Pictures of `replay` drawn with `font`.
    pub fn new(replay: TerminalReplay, font: TerminalFont) -> TerminalPictures {
        let (cols, rows) = replay.size();
        TerminalPictures {
            term: new_terminal(cols, rows),
            replay,
            font,
            next: 0,
            last: None,
        }
    }

    /// The replay.
    pub fn replay(&self) -> &TerminalReplay {
        &self.replay
    }

    /// The font.
    pub fn font(&self) -> &TerminalFont {
        &self.font
    }

    /// The end of the recording (µs).
    pub fn end_us(&self) -> u64 {
        self.replay.end_us()
    }

    /// The screen after every step at or before `at_us`, drawn.
    pub fn frame_at(&mut self, at_us: u64) -> RgbaFrame {
        let n = self.replay.steps_until(at_us);
        if n < self.next {
            self.term = self.replay.terminal_at(at_us);
            self.next = n;
            self.last = None;
        }
        let mut changed = false;
        for s in self.replay.steps.get(self.next..n).unwrap_or_default() {
            if matches!(s.kind, StepKind::Output(_) | StepKind::Resize { .. }) {
                apply(&mut self.term, s);
                changed = true;
            }
        }
        self.next = n;
        if !changed && let Some(frame) = &self.last {
            return frame.clone();
        }
        let frame = self.font.render(&grid_of(&self.term));
        self.last = Some(frame.clone());
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(cols: u16, rows: u16, text: &str) -> CellGrid {
        let mut t = new_terminal(cols, rows);
        t.feed(text);
        grid_of(&t)
    }

    fn px(f: &RgbaFrame, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * u32::from(f.width) + x) * 4) as usize;
        [f.rgba[i], f.rgba[i + 1], f.rgba[i + 2]]
    }

    /// Pixels of cell (col, row) whose colour is `c`.
    fn count(f: &RgbaFrame, font: &TerminalFont, col: u32, row: u32, c: [u8; 3]) -> usize {
        let (cw, ch) = font.cell_size();
        let mut n = 0;
        for y in row * ch..(row + 1) * ch {
            for x in col * cw..(col + 1) * cw {
                n += usize::from(px(f, x, y) == c);
            }
        }
        n
    }

    #[test]
    fn colours_attributes_and_cursor() {
        let mut font = TerminalFont::builtin();
        // Red background blank, green text, inverse blue, 256-colour and truecolor
        // backgrounds, underline, then the cursor on column 9.
        let g = grid(
            12,
            2,
            "\x1b[41m \x1b[0m\x1b[32mH\x1b[0m\x1b[7;34mI\x1b[0m\x1b[48;5;21m \x1b[48;2;1;2;3m \x1b[0m\x1b[4m_\x1b[0m\x1b[1;31mB\x1b[0m  ",
        );
        let f = font.render(&g);
        assert_eq!((f.width, f.height), (12 * 8, 2 * 16));
        // Column 0: all red background.
        assert_eq!(count(&f, &font, 0, 0, [205, 0, 0]), 8 * 16);
        // Column 1: green glyph on black: both colours, nothing else.
        let green = count(&f, &font, 1, 0, [0, 205, 0]);
        let black = count(&f, &font, 1, 0, DEFAULT_BG);
        assert!(green > 10 && green + black == 8 * 16, "{green} {black}");
        // Column 2: inverse: the cell is blue (the text colour) with black glyph pixels.
        let blue = count(&f, &font, 2, 0, [0, 0, 238]);
        assert!(
            blue > 64 && blue + count(&f, &font, 2, 0, DEFAULT_BG) == 128,
            "{blue}"
        );
        // 256-colour 21 = (0, 0, 255); truecolor as sent.
        assert_eq!(count(&f, &font, 3, 0, [0, 0, 255]), 128);
        assert_eq!(count(&f, &font, 4, 0, [1, 2, 3]), 128);
        // Underline: the line two pixels above the cell's bottom is text-coloured.
        for x in 5 * 8..6 * 8 {
            assert_eq!(px(&f, x, 14), DEFAULT_FG);
        }
        // Bold red is bright red.
        assert!(count(&f, &font, 6, 0, [255, 0, 0]) > 10);
        // The cursor (column 9 after two trailing spaces) is a block of the text colour.
        assert_eq!(g.cursor, Some((9, 0)));
        assert_eq!(count(&f, &font, 9, 0, DEFAULT_FG), 128);
        assert_eq!(count(&f, &font, 10, 0, DEFAULT_BG), 128);
        // A hidden cursor is not drawn.
        let hidden = font.render(&grid(12, 2, "ab\x1b[?25l"));
        assert_eq!(count(&hidden, &font, 2, 0, DEFAULT_BG), 128);
    }

    /// Mean column of the text-coloured pixels in rows `ys` of cell `col`.
    fn ink_column(f: &RgbaFrame, col: u32, ys: std::ops::Range<u32>) -> f64 {
        let (mut sum, mut n) = (0u32, 0u32);
        for y in ys {
            for x in col * 8..(col + 1) * 8 {
                if px(f, x, y) == DEFAULT_FG {
                    sum += x - col * 8;
                    n += 1;
                }
            }
        }
        assert!(n > 0, "no ink in cell {col}");
        f64::from(sum) / f64::from(n)
    }

    #[test]
    fn italic_slants_and_blink_is_drawn_steady() {
        let mut font = TerminalFont::builtin();
        let f = font.render(&grid(4, 1, "l\x1b[3ml\x1b[0m\x1b[5ml\x1b[0m"));
        // Upright: the stroke sits at the same column at the top and the bottom.
        let upright = ink_column(&f, 0, 0..6) - ink_column(&f, 0, 10..16);
        // Italic: the top of the stroke stands to the right of its bottom.
        let italic = ink_column(&f, 1, 0..6) - ink_column(&f, 1, 10..16);
        assert!(italic >= upright + 1.0, "{italic} vs {upright}");
        // Blink: the same pixels as the plain letter.
        for y in 0..16 {
            for x in 0..8 {
                assert_eq!(px(&f, x, y), px(&f, 2 * 8 + x, y));
            }
        }
    }

    #[test]
    fn wide_characters_take_two_cells() {
        for mut font in [TerminalFont::builtin(), TerminalFont::system()] {
            // A kanji and a hiragana on a blue background, then a Latin letter.
            let g = grid(10, 1, "\x1b[44m関あ\x1b[0mx");
            assert_eq!(g.get(0, 0).map(|c| (c.ch, c.width)), Some(('関', 2)));
            assert_eq!(g.get(1, 0).map(|c| c.width), Some(0));
            assert_eq!(g.get(2, 0).map(|c| (c.ch, c.width)), Some(('あ', 2)));
            assert_eq!(g.get(4, 0).map(|c| c.ch), Some('x'));
            let f = font.render(&g);
            let (cw, ch) = font.cell_size();
            let blue = [0, 0, 238];
            for col in 0..4 {
                let n = count(&f, &font, col, 0, blue);
                // Background on all four cells, glyph pixels on each of them (a glyph drawn
                // in one cell only would leave its second cell all blue).
                assert!(
                    n > 0 && n < (cw * ch) as usize,
                    "{}: cell {col}: {n}",
                    font.description()
                );
            }
            // The letter is in cell 4, on black.
            let black = count(&f, &font, 4, 0, DEFAULT_BG);
            assert!(
                black < (cw * ch) as usize && black > 0,
                "{}",
                font.description()
            );
            // The cursor after it, then blank cells.
            assert_eq!(count(&f, &font, 5, 0, DEFAULT_FG), (cw * ch) as usize);
            assert_eq!(count(&f, &font, 6, 0, DEFAULT_BG), (cw * ch) as usize);
        }
    }

    #[test]
    fn system_font_when_installed() {
        let font = TerminalFont::system();
        let (cw, ch) = font.cell_size();
        assert!(cw >= 6 && ch >= cw, "{cw}x{ch}");
        if std::path::Path::new(SYSTEM_FONTS[0]).is_file() {
            assert!(font.is_outline());
            assert!(font.description().contains("DejaVuSansMono"));
        }
        let missing = TerminalFont::from_files(&[PathBuf::from("/nonexistent/font.ttf")]);
        assert!(!missing.is_outline());
    }

    #[test]
    fn unknown_characters_are_boxes() {
        let mut font = TerminalFont::builtin();
        let f = font.render(&grid(3, 1, "\u{0E01}"));
        // Thai is in no built-in font: a box, not nothing.
        assert!(count(&f, &font, 0, 0, DEFAULT_FG) > 10);
    }

    #[test]
    fn hostile_sizes_are_cropped() {
        let mut font = TerminalFont::builtin();
        let f = font.render(&grid(1000, 1000, "x"));
        assert!(u32::from(f.width) <= MAX_PICTURE_SIDE && u32::from(f.height) <= MAX_PICTURE_SIDE);
        assert!(u32::from(f.width) * u32::from(f.height) <= MAX_PICTURE_PIXELS);
        assert_eq!(
            f.rgba.len(),
            usize::from(f.width) * usize::from(f.height) * 4
        );
    }

    #[test]
    fn palette() {
        assert_eq!(indexed_rgb(1), [205, 0, 0]);
        assert_eq!(indexed_rgb(16), [0, 0, 0]);
        assert_eq!(indexed_rgb(196), [255, 0, 0]);
        assert_eq!(indexed_rgb(231), [255, 255, 255]);
        assert_eq!(indexed_rgb(232), [8, 8, 8]);
        assert_eq!(indexed_rgb(255), [238, 238, 238]);
    }
}
