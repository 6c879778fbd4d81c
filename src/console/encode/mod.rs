//! Per-viewer encoders: rectangles of a [`super::fb::Framebuffer`] in the viewer's pixel
//! format and encoding (Raw, CopyRect, Hextile, ZRLE, Tight).
