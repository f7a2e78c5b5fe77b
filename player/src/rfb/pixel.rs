//! PIXEL_FORMAT (RFC 6143 §7.4) and pixel value conversion.

use super::{Cur, PResult, RfbError};

/// How pixel values are laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    /// 8, 16 or 32.
    pub bits_per_pixel: u8,
    /// Useful bits in a pixel value.
    pub depth: u8,
    /// Multi-byte pixels are big-endian.
    pub big_endian: bool,
    /// True colour (else colour-map indices).
    pub true_colour: bool,
    /// Maximum red value.
    pub red_max: u16,
    /// Maximum green value.
    pub green_max: u16,
    /// Maximum blue value.
    pub blue_max: u16,
    /// Red shift.
    pub red_shift: u8,
    /// Green shift.
    pub green_shift: u8,
    /// Blue shift.
    pub blue_shift: u8,
}

impl PixelFormat {
    /// 32-bit little-endian true colour, depth 24 (what QEMU sends by default).
    pub const RGB888_LE: PixelFormat = PixelFormat {
        bits_per_pixel: 32,
        depth: 24,
        big_endian: false,
        true_colour: true,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 16,
        green_shift: 8,
        blue_shift: 0,
    };

    /// Bytes per pixel (1, 2 or 4).
    pub fn bytes_per_pixel(&self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }

    /// Parses the 16-byte wire form and checks it is decodable.
    pub fn from_bytes(b: &[u8; 16]) -> Result<PixelFormat, RfbError> {
        let pf = PixelFormat {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        };
        pf.validate()?;
        Ok(pf)
    }

    pub(crate) fn parse(c: &mut Cur<'_>) -> PResult<PixelFormat> {
        let b = c.take(16)?;
        let arr: &[u8; 16] = b.try_into().map_err(|_| super::Short::Incomplete)?;
        Ok(PixelFormat::from_bytes(arr)?)
    }

    /// The 16-byte wire form (3 bytes of padding at the end).
    pub fn to_bytes(&self) -> [u8; 16] {
        let r = self.red_max.to_be_bytes();
        let g = self.green_max.to_be_bytes();
        let bl = self.blue_max.to_be_bytes();
        [
            self.bits_per_pixel,
            self.depth,
            u8::from(self.big_endian),
            u8::from(self.true_colour),
            r[0],
            r[1],
            g[0],
            g[1],
            bl[0],
            bl[1],
            self.red_shift,
            self.green_shift,
            self.blue_shift,
            0,
            0,
            0,
        ]
    }

    /// Checks the fields a decoder relies on: a known size, shifts inside the pixel, and for
    /// true colour non-zero maxima (the conversion divides by them).
    pub fn validate(&self) -> Result<(), RfbError> {
        if !matches!(self.bits_per_pixel, 8 | 16 | 32) {
            return Err(RfbError::BadPixelFormat(
                "bits per pixel must be 8, 16 or 32",
            ));
        }
        if self.depth == 0 || self.depth > self.bits_per_pixel {
            // Some servers send depth 32 with bpp 32; anything larger is nonsense.
            return Err(RfbError::BadPixelFormat("depth must be 1..=bits per pixel"));
        }
        if self.true_colour {
            if self.red_max == 0 || self.green_max == 0 || self.blue_max == 0 {
                return Err(RfbError::BadPixelFormat("colour maxima must be non-zero"));
            }
            if self.red_shift >= self.bits_per_pixel
                || self.green_shift >= self.bits_per_pixel
                || self.blue_shift >= self.bits_per_pixel
            {
                return Err(RfbError::BadPixelFormat("colour shift outside the pixel"));
            }
        }
        Ok(())
    }

    /// Reads one pixel value of this format from exactly `bytes_per_pixel` bytes.
    pub fn read_pixel(&self, b: &[u8]) -> u32 {
        match (b, self.big_endian) {
            ([a], _) => u32::from(*a),
            ([a, c], false) => u32::from(u16::from_le_bytes([*a, *c])),
            ([a, c], true) => u32::from(u16::from_be_bytes([*a, *c])),
            ([a, c, d, e], false) => u32::from_le_bytes([*a, *c, *d, *e]),
            ([a, c, d, e], true) => u32::from_be_bytes([*a, *c, *d, *e]),
            _ => 0,
        }
    }

    /// ZRLE's compressed pixel (RFC 6143 §7.7.6): 3 bytes when a 32-bit true colour pixel's
    /// colours fit in its low or high 3 bytes, else the full pixel.
    pub fn cpixel_len(&self) -> usize {
        if self.true_colour && self.bits_per_pixel == 32 && self.depth <= 24 {
            let mask = self.colour_mask();
            if mask & 0xff00_0000 == 0 || mask & 0x0000_00ff == 0 {
                return 3;
            }
        }
        self.bytes_per_pixel()
    }

    fn colour_mask(&self) -> u64 {
        (u64::from(self.red_max) << self.red_shift)
            | (u64::from(self.green_max) << self.green_shift)
            | (u64::from(self.blue_max) << self.blue_shift)
    }

    /// Reads one ZRLE compressed pixel of `cpixel_len` bytes.
    pub fn read_cpixel(&self, b: &[u8]) -> u32 {
        match b {
            [c0, c1, c2] => {
                let low = self.colour_mask() & 0xff00_0000 == 0;
                let (x0, x1, x2) = (u32::from(*c0), u32::from(*c1), u32::from(*c2));
                match (self.big_endian, low) {
                    (false, true) => x0 | x1 << 8 | x2 << 16,
                    (false, false) => x0 << 8 | x1 << 16 | x2 << 24,
                    (true, true) => x0 << 16 | x1 << 8 | x2,
                    (true, false) => x0 << 24 | x1 << 16 | x2 << 8,
                }
            }
            other => self.read_pixel(other),
        }
    }

    /// Converts a true-colour pixel value to RGBA; colour-map formats use `map`.
    pub fn to_rgba(&self, v: u32, map: &[[u8; 3]]) -> [u8; 4] {
        if !self.true_colour {
            let [r, g, b] = usize::try_from(v)
                .ok()
                .and_then(|i| map.get(i))
                .copied()
                .unwrap_or_default();
            return [r, g, b, 255];
        }
        let scale = |shift: u8, max: u16| -> u8 {
            let max32 = u32::from(max.max(1));
            let c = v.checked_shr(u32::from(shift)).unwrap_or(0) & max32;
            u8::try_from(c * 255 / max32).unwrap_or(255)
        };
        [
            scale(self.red_shift, self.red_max),
            scale(self.green_shift, self.green_max),
            scale(self.blue_shift, self.blue_max),
            255,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_colours() {
        let pf = PixelFormat::RGB888_LE;
        assert_eq!(PixelFormat::from_bytes(&pf.to_bytes()).unwrap(), pf);
        assert_eq!(
            pf.to_rgba(pf.read_pixel(&[0x30, 0x20, 0x10, 0]), &[]),
            [0x10, 0x20, 0x30, 255]
        );
        assert_eq!(pf.cpixel_len(), 3);
        assert_eq!(pf.read_cpixel(&[0x30, 0x20, 0x10]), 0x0010_2030);
    }

    #[test]
    fn rejects_bad_formats() {
        let mut b = PixelFormat::RGB888_LE.to_bytes();
        b[0] = 24;
        assert!(PixelFormat::from_bytes(&b).is_err());
        let mut b = PixelFormat::RGB888_LE.to_bytes();
        b[10] = 40;
        assert!(PixelFormat::from_bytes(&b).is_err());
    }
}
