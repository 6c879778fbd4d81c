//! What a viewer's SetEncodings asked for, as far as tcvnc serves it: the pixel-data
//! encodings tcvnc can send in the viewer's order of preference, the pseudo-encodings it
//! understands, and the compression and JPEG quality levels. Unknown numbers are ignored
//! (RFB lets a server pick any listed encoding, and Raw is always allowed).

use super::rect::{
    ENC_COMPRESS_LEVEL_0, ENC_COPY_RECT, ENC_CURSOR, ENC_DESKTOP_NAME, ENC_DESKTOP_SIZE,
    ENC_EXTENDED_DESKTOP_SIZE, ENC_HEXTILE, ENC_LAST_RECT, ENC_QEMU_EXTENDED_KEY,
    ENC_QEMU_LED_STATE, ENC_QUALITY_LEVEL_0, ENC_RAW, ENC_TIGHT, ENC_ZRLE,
};

/// A pixel-data encoding tcvnc sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Raw (0).
    Raw,
    /// Hextile (5).
    Hextile,
    /// ZRLE (16).
    Zrle,
    /// Tight (7).
    Tight,
}

impl Encoding {
    /// Its number on the wire.
    pub fn id(self) -> i32 {
        match self {
            Encoding::Raw => ENC_RAW,
            Encoding::Hextile => ENC_HEXTILE,
            Encoding::Zrle => ENC_ZRLE,
            Encoding::Tight => ENC_TIGHT,
        }
    }

    /// The encoding of a wire number, if tcvnc sends it.
    pub fn from_id(id: i32) -> Option<Encoding> {
        match id {
            ENC_RAW => Some(Encoding::Raw),
            ENC_HEXTILE => Some(Encoding::Hextile),
            ENC_ZRLE => Some(Encoding::Zrle),
            ENC_TIGHT => Some(Encoding::Tight),
            _ => None,
        }
    }
}

/// A viewer's negotiated encodings. The default (no SetEncodings yet) is Raw only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encodings {
    /// The pixel-data encodings tcvnc sends that the viewer listed, most preferred
    /// first, each once (empty: Raw only).
    pub preferred: Vec<Encoding>,
    /// CopyRect (1).
    pub copy_rect: bool,
    /// DesktopSize (−223).
    pub desktop_size: bool,
    /// ExtendedDesktopSize (−308).
    pub extended_desktop_size: bool,
    /// Cursor (−239).
    pub cursor: bool,
    /// DesktopName (−307).
    pub desktop_name: bool,
    /// LastRect (−224).
    pub last_rect: bool,
    /// QEMU extended key events (−258).
    pub qemu_extended_key: bool,
    /// QEMU LED state (−261).
    pub qemu_led_state: bool,
    /// Compression level 0–9 (−256..−247), the first listed.
    pub compress_level: Option<u8>,
    /// JPEG quality level 0–9 (−32..−23), the first listed.
    pub quality_level: Option<u8>,
}

impl Encodings {
    /// Reads a SetEncodings list (any length, any numbers).
    pub fn from_list(list: &[i32]) -> Encodings {
        let mut e = Encodings::default();
        for &id in list {
            if let Some(enc) = Encoding::from_id(id) {
                if !e.preferred.contains(&enc) {
                    e.preferred.push(enc);
                }
                continue;
            }
            match id {
                ENC_COPY_RECT => e.copy_rect = true,
                ENC_DESKTOP_SIZE => e.desktop_size = true,
                ENC_EXTENDED_DESKTOP_SIZE => e.extended_desktop_size = true,
                ENC_CURSOR => e.cursor = true,
                ENC_DESKTOP_NAME => e.desktop_name = true,
                ENC_LAST_RECT => e.last_rect = true,
                ENC_QEMU_EXTENDED_KEY => e.qemu_extended_key = true,
                ENC_QEMU_LED_STATE => e.qemu_led_state = true,
                l if (ENC_COMPRESS_LEVEL_0..ENC_COMPRESS_LEVEL_0 + 10).contains(&l) => {
                    e.compress_level
                        .get_or_insert((l - ENC_COMPRESS_LEVEL_0) as u8);
                }
                q if (ENC_QUALITY_LEVEL_0..ENC_QUALITY_LEVEL_0 + 10).contains(&q) => {
                    e.quality_level
                        .get_or_insert((q - ENC_QUALITY_LEVEL_0) as u8);
                }
                _ => {}
            }
        }
        e
    }

    /// Whether the viewer can follow a size change (DesktopSize or ExtendedDesktopSize);
    /// one that cannot must be closed with a reason when the screen changes size.
    pub fn can_resize(&self) -> bool {
        self.desktop_size || self.extended_desktop_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_novnc_like_list() {
        // noVNC's order: Tight, Tight PNG, ZRLE, Hextile, Raw, CopyRect, then pseudo.
        let e = Encodings::from_list(&[
            7,
            -260,
            16,
            5,
            0,
            1,
            -26,
            -254,
            -223,
            -224,
            -239,
            -258,
            -261,
            -308,
            -307,
            16,
            -30,
            -250,
            123456,
            i32::MIN,
        ]);
        assert_eq!(
            e.preferred,
            [
                Encoding::Tight,
                Encoding::Zrle,
                Encoding::Hextile,
                Encoding::Raw
            ]
        );
        assert!(e.copy_rect && e.desktop_size && e.last_rect && e.cursor);
        assert!(e.qemu_extended_key && e.qemu_led_state);
        assert!(e.extended_desktop_size && e.desktop_name && e.can_resize());
        assert_eq!(e.quality_level, Some(6));
        assert_eq!(e.compress_level, Some(2));
        let none = Encodings::from_list(&[]);
        assert!(none.preferred.is_empty() && !none.can_resize());
        assert_eq!(Encodings::from_list(&[-33, -22, -257, -246]), none);
    }
}
