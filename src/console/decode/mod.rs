//! Decoders of the rectangles a console sends (Raw, CopyRect, Hextile, ZRLE, Zlib, Tight)
//! and of the pseudo-encodings, into a [`super::fb::Framebuffer`].
