//! Encoding numbers the decoder knows (RFB's registry), their names for errors and logs,
//! and the list the engine should ask a console for.

/// Raw pixels.
pub const RAW: i32 = 0;
/// Copy from elsewhere on the screen.
pub const COPY_RECT: i32 = 1;
/// 16×16 tiles.
pub const HEXTILE: i32 = 5;
/// Raw pixels through one zlib stream.
pub const ZLIB: i32 = 6;
/// Tight (four zlib streams; JPEG only with a quality level).
pub const TIGHT: i32 = 7;
/// ZRLE.
pub const ZRLE: i32 = 16;
/// Pseudo: the screen changed size.
pub const DESKTOP_SIZE: i32 = -223;
/// Pseudo: the update's last rectangle (count unknown in advance).
pub const LAST_RECT: i32 = -224;
/// Pseudo: the cursor's shape.
pub const CURSOR: i32 = -239;
/// Pseudo: QEMU's pointer motion mode (absolute or relative).
pub const QEMU_POINTER_MOTION: i32 = -257;
/// Pseudo: QEMU extended key events are welcome.
pub const QEMU_EXTENDED_KEY: i32 = -258;
/// Pseudo: QEMU's keyboard LEDs.
pub const LED_STATE: i32 = -261;
/// Pseudo: the desktop's name.
pub const DESKTOP_NAME: i32 = -307;
/// Pseudo: the screen's size and layout.
pub const EXTENDED_DESKTOP_SIZE: i32 = -308;

/// What the engine asks a console for, best first: every encoding and pseudo-encoding
/// the decoder handles, except QEMU's relative pointer mode (it changes what a
/// PointerEvent means). No JPEG quality level: Tight stays lossless.
pub const PREFERRED: &[i32] = &[
    COPY_RECT,
    ZRLE,
    TIGHT,
    HEXTILE,
    ZLIB,
    RAW,
    EXTENDED_DESKTOP_SIZE,
    DESKTOP_SIZE,
    LAST_RECT,
    CURSOR,
    DESKTOP_NAME,
    QEMU_EXTENDED_KEY,
    LED_STATE,
];

/// The encoding's name, for errors and logs.
pub fn name(encoding: i32) -> &'static str {
    match encoding {
        RAW => "Raw",
        COPY_RECT => "CopyRect",
        HEXTILE => "Hextile",
        ZLIB => "Zlib",
        TIGHT => "Tight",
        ZRLE => "ZRLE",
        DESKTOP_SIZE => "DesktopSize",
        LAST_RECT => "LastRect",
        CURSOR => "Cursor",
        QEMU_POINTER_MOTION => "QEMU pointer motion",
        QEMU_EXTENDED_KEY => "QEMU extended key event",
        LED_STATE => "LED state",
        DESKTOP_NAME => "DesktopName",
        EXTENDED_DESKTOP_SIZE => "ExtendedDesktopSize",
        _ => "unknown encoding",
    }
}
