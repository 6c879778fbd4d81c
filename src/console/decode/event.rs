//! What the decoder tells its caller: the events of a console's stream, in order, and
//! what one feed consumed. Plain data; the decoder's state lives in `stream`.

use crate::console::fb::Rect;

/// A screen of an ExtendedDesktopSize layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screen {
    /// The server's id for it.
    pub id: u32,
    /// Where it is on the framebuffer.
    pub rect: Rect,
    /// Flags (unused by RFB so far).
    pub flags: u32,
}

/// A cursor shape (the Cursor pseudo-encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorShape {
    /// Hotspot, from the left.
    pub hotspot_x: u16,
    /// Hotspot, from the top.
    pub hotspot_y: u16,
    /// Width (0 with `height` 0: no cursor).
    pub width: u16,
    /// Height.
    pub height: u16,
    /// `width × height` colours, `0x00RRGGBB`, row-major.
    pub pixels: Vec<u32>,
    /// The bitmask: rows of `⌈width / 8⌉` bytes, most significant bit leftmost, 1 = drawn.
    pub mask: Vec<u8>,
}

/// Something the console said, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// These pixels were redrawn (already in the framebuffer).
    Damage(Rect),
    /// The screen changed size (the framebuffer is resized; take it as all damaged).
    Resize {
        /// New width.
        width: u16,
        /// New height.
        height: u16,
        /// ExtendedDesktopSize's reason (0 server, 1 this client's request, 2 another
        /// client's); 0 for DesktopSize.
        reason: u16,
        /// ExtendedDesktopSize's status (0 ok); 0 for DesktopSize.
        status: u16,
        /// ExtendedDesktopSize's screens; empty for DesktopSize.
        screens: Vec<Screen>,
    },
    /// A new cursor shape.
    Cursor(CursorShape),
    /// The desktop's new name.
    DesktopName(String),
    /// QEMU's keyboard LEDs: bit 0 Scroll, 1 Num, 2 Caps Lock.
    LedState(u8),
    /// The console takes QEMU extended key events (scancodes).
    QemuExtendedKeyEvent,
    /// QEMU's pointer mode changed.
    PointerMotion {
        /// Absolute coordinates (else relative deltas).
        absolute: bool,
    },
    /// A FramebufferUpdate is complete: the framebuffer is the console's screen.
    UpdateEnd,
    /// Bell.
    Bell,
    /// ServerCutText (Latin-1), at most [`super::MAX_CUT_TEXT`] bytes of it.
    CutText {
        /// The text kept.
        text: String,
        /// The console sent more than was kept.
        truncated: bool,
    },
    /// ServerFence (answered by the engine if it negotiated fences).
    Fence {
        /// Flags.
        flags: u32,
        /// Up to 64 bytes to echo.
        payload: Vec<u8>,
    },
    /// EndOfContinuousUpdates.
    EndOfContinuousUpdates,
}

/// What one [`super::UpdateDecoder::feed`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fed {
    /// Bytes of the input consumed: all of it, or up to the end of an update.
    pub consumed: usize,
    /// What happened, in order.
    pub events: Vec<Event>,
}
