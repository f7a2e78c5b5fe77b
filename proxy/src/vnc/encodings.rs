//! What the console is offered: the viewer's encodings the player can decode, ZRLE first.
//!
//! The relay re-encodes nothing: the console sends each rectangle in an encoding the viewer
//! listed, and that is what is recorded. An RFB server picks the first encoding of the list it
//! supports, so a viewer that lists Raw or Hextile before ZRLE would have the console send
//! (and the recording keep) screens several times larger than needed; ZRLE is moved to the
//! front. A viewer that lacks ZRLE is let through, and the session's recording says why it is
//! large.

use player::rfb::{self, Encoding};

/// The SetEncodings list sent to the console and what was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsoleEncodings {
    /// In the order the console is asked to prefer.
    pub offered: Vec<i32>,
    /// The viewer's encodings the player cannot decode (Tight, …), removed.
    pub removed: Vec<i32>,
    /// The viewer listed ZRLE.
    pub compressed: bool,
}

/// The list for the console from the viewer's `SetEncodings`.
pub(crate) fn for_console(viewer: &[i32]) -> ConsoleEncodings {
    let (kept, removed) = rfb::filter_encodings(viewer);
    let zrle = Encoding::Zrle.to_i32();
    let compressed = kept.contains(&zrle);
    let mut offered = Vec::with_capacity(kept.len());
    if compressed {
        offered.push(zrle);
    }
    offered.extend(kept.iter().copied().filter(|e| *e != zrle));
    ConsoleEncodings {
        offered,
        removed,
        compressed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: i32 = 0;
    const COPY_RECT: i32 = 1;
    const HEXTILE: i32 = 5;
    const TIGHT: i32 = 7;
    const ZRLE: i32 = 16;
    const DESKTOP_SIZE: i32 = -223;

    #[test]
    fn zrle_goes_first_and_the_rest_keeps_the_viewers_order() {
        let c = for_console(&[RAW, HEXTILE, TIGHT, COPY_RECT, ZRLE, DESKTOP_SIZE]);
        assert_eq!(c.offered, [ZRLE, RAW, HEXTILE, COPY_RECT, DESKTOP_SIZE]);
        assert_eq!(c.removed, [TIGHT]);
        assert!(c.compressed);
    }

    #[test]
    fn a_viewer_without_zrle_is_kept_as_it_asked() {
        let c = for_console(&[HEXTILE, RAW, DESKTOP_SIZE]);
        assert_eq!(c.offered, [HEXTILE, RAW, DESKTOP_SIZE]);
        assert!(c.removed.is_empty());
        assert!(!c.compressed);
        // Listing ZRLE twice does not offer it twice.
        let c = for_console(&[ZRLE, RAW, ZRLE]);
        assert_eq!(c.offered, [ZRLE, RAW]);
    }
}
