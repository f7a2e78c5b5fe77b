//! Pixels packed for keeping: the image inside a seek keyframe.
//!
//! A keyframe holds a whole screen; dozens of them per recording would cost tens of megabytes
//! raw, while a screen of administration work (large flat areas, text) deflates tens of
//! times. Both graphical decoders keep their keyframe pixels this way.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

/// Deflated pixel bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct PackedPixels(Vec<u8>);

impl PackedPixels {
    /// Packs `pixels` (fast compression: keyframes are made while a recording is decoded).
    pub(crate) fn pack(pixels: &[u8]) -> Self {
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::fast());
        // Writing into a Vec cannot fail.
        let packed = enc
            .write_all(pixels)
            .and_then(|()| enc.finish())
            .unwrap_or_default();
        Self(packed)
    }

    /// The pixels again, or `None` unless they unpack to exactly `len` bytes (the keyframe was
    /// damaged in memory, or taken of another image size).
    pub(crate) fn unpack(&self, len: usize) -> Option<Vec<u8>> {
        let mut pixels = Vec::with_capacity(len);
        DeflateDecoder::new(self.0.as_slice())
            .take(len as u64 + 1)
            .read_to_end(&mut pixels)
            .ok()?;
        (pixels.len() == len).then_some(pixels)
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_come_back_only_at_their_own_size() {
        let pixels: Vec<u8> = (0..64 * 48 * 4).map(|i| (i / 7) as u8).collect();
        let packed = PackedPixels::pack(&pixels);
        assert!(packed.len() < pixels.len() / 4);
        assert_eq!(packed.unpack(pixels.len()).as_deref(), Some(&pixels[..]));
        assert_eq!(packed.unpack(pixels.len() - 4), None);
        assert_eq!(packed.unpack(pixels.len() + 4), None);
        assert_eq!(PackedPixels::default().unpack(4), None);
    }
}
