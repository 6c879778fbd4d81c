//! [`UpdateDecoder`]: the sans-IO state machine over everything a console sends after
//! ServerInit. It takes bytes in any split, draws rectangles into a framebuffer and tells
//! what changed; it owns the connection's zlib streams and the partial step in hand,
//! never a socket, a clock or a whole update.

use super::acc::{be16, be32, exactly, Acc, Parsed};
use super::encoding::{self as enc, name};
use super::error::DecodeError;
use super::event::{Event, Fed};
use super::hextile::Tiles;
use super::inflate::{Output, Stream, MAX_COMPRESSED};
use super::pixel::PixelReader;
use super::pseudo::{self, MAX_CURSOR_SIDE, MAX_CUT_TEXT};
use super::tight::{self, Filter, Head};
use super::zrle;
use crate::console::fb::{Framebuffer, Rect, MAX_SIDE};
use crate::rfb::messages::PixelFormat;

/// Which stream a rectangle inflates through, and what its data is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Inflating {
    Zlib,
    Zrle,
    Tight {
        stream: usize,
        filter: Filter,
        data_len: usize,
    },
}

/// Where in the stream the decoder is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    MessageType,
    UpdateHeader,
    RectHeader,
    Raw {
        rect: Rect,
        row: u16,
    },
    CopyRect {
        rect: Rect,
    },
    Hextile(Tiles),
    CompressedLength {
        rect: Rect,
        encoding: i32,
    },
    Inflate {
        rect: Rect,
        kind: Inflating,
        left: usize,
    },
    TightHeader {
        rect: Rect,
    },
    Cursor {
        rect: Rect,
    },
    DesktopName,
    ExtendedDesktopSize {
        rect: Rect,
    },
    Led,
    CutHeader,
    CutText {
        left: u32,
        announced: u32,
    },
    Fence,
    Qemu,
    Skip {
        left: u32,
    },
    Failed,
}

/// Decodes a console's server-to-client stream (after ServerInit) into a framebuffer.
///
/// Sans-IO and resumable: [`feed`](Self::feed) takes the bytes as they arrive, split
/// anywhere, and holds only the step in hand (a header, a tile, a row, one rectangle's
/// inflated data) between calls. Any error is final: the stream's position is lost.
#[derive(Debug)]
pub struct UpdateDecoder {
    px: PixelReader,
    state: State,
    acc: Acc,
    /// Rectangles left in the current update.
    rects_left: u16,
    zlib: Stream,
    zrle: Stream,
    tight: [Stream; 4],
    out: Output,
    cut: Vec<u8>,
    failed: Option<DecodeError>,
}

/// Inside a step: gathers bytes until `$parse` (shown what is held) says `Done`; when
/// the input runs out first, parks the decoder in `$state` and asks for more.
macro_rules! gather {
    ($self:ident, $input:ident, $state:expr, $parse:expr) => {
        loop {
            match $parse($self.acc.bytes())? {
                Parsed::Need(n) => {
                    if !$self.acc.fill($input, n) {
                        $self.state = $state;
                        return Ok(false);
                    }
                }
                Parsed::Done(v) => break v,
            }
        }
    };
}

/// A `gather!` parser for a fixed length.
fn fixed(n: usize) -> impl Fn(&[u8]) -> Result<Parsed<usize>, DecodeError> {
    move |b| Ok(exactly(b, n))
}

impl UpdateDecoder {
    /// A decoder for a console that sends pixels in `format` (what the engine set with
    /// SetPixelFormat, or the ServerInit format).
    ///
    /// # Errors
    /// [`DecodeError::PixelFormat`] for a colour map or a size other than 8, 16 or 32 bits.
    pub fn new(format: &PixelFormat) -> Result<UpdateDecoder, DecodeError> {
        Ok(UpdateDecoder {
            px: PixelReader::new(format)?,
            state: State::MessageType,
            acc: Acc::default(),
            rects_left: 0,
            zlib: Stream::default(),
            zrle: Stream::default(),
            tight: Default::default(),
            out: Output::default(),
            cut: Vec::new(),
            failed: None,
        })
    }

    /// Decoding starts at a recording's keyframe rather than at the session's start: a
    /// zlib stream first seen after this may have started before it. Its first bytes
    /// are then read as raw deflate unless they open with a zlib header; the recorder
    /// fully flushes its Tight stream at every keyframe (`Encoder::cut_tight`), so
    /// nothing after refers back past it.
    pub fn join_mid_stream(&mut self) {
        self.zlib.join();
        self.zrle.join();
        for s in &mut self.tight {
            s.join();
        }
    }

    /// Decodes `input` into `fb`, returning what happened. Returns early, right after an
    /// update ends, so the framebuffer can be read when it is exactly the console's
    /// screen: call again with the rest (`input[fed.consumed..]`).
    ///
    /// # Errors
    /// A [`DecodeError`]; once one is returned, every later call returns it again.
    pub fn feed(&mut self, input: &[u8], fb: &mut Framebuffer) -> Result<Fed, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut rest = input;
        let mut events = Vec::new();
        loop {
            match self.step(&mut rest, fb, &mut events) {
                Ok(true) if matches!(events.last(), Some(Event::UpdateEnd)) => break,
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    self.state = State::Failed;
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(Fed {
            consumed: input.len() - rest.len(),
            events,
        })
    }

    /// Whether the decoder is between messages (nothing of one is held).
    pub fn at_message_boundary(&self) -> bool {
        self.state == State::MessageType && self.acc.is_empty()
    }

    /// Bytes the decoder holds between calls: partial steps, inflate buffers, cut text,
    /// and an estimate for each zlib stream in use.
    pub fn held_bytes(&self) -> usize {
        self.acc.held()
            + self.out.held()
            + self.cut.capacity()
            + self.zlib.held()
            + self.zrle.held()
            + self.tight.iter().map(Stream::held).sum::<usize>()
    }

    /// The state after a rectangle: the next one, or the end of the update.
    fn rect_done(&mut self, events: &mut Vec<Event>) -> State {
        self.rects_left = self.rects_left.saturating_sub(1);
        if self.rects_left == 0 {
            events.push(Event::UpdateEnd);
            State::MessageType
        } else {
            State::RectHeader
        }
    }

    /// Records damage and finishes a pixel rectangle.
    fn drawn(&mut self, rect: Rect, events: &mut Vec<Event>) {
        if !rect.is_empty() {
            events.push(Event::Damage(rect));
        }
        self.state = self.rect_done(events);
    }

    /// Resizes the screen (DesktopSize, ExtendedDesktopSize).
    fn resize(fb: &mut Framebuffer, width: u16, height: u16) -> Result<(), DecodeError> {
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(DecodeError::ScreenTooLarge {
                width,
                height,
                max: MAX_SIDE,
            });
        }
        if (width, height) != (fb.width(), fb.height()) {
            fb.resize(width, height);
        }
        Ok(())
    }

    fn reset_tight(&mut self, resets: u8) {
        for (i, s) in self.tight.iter_mut().enumerate() {
            if resets & (1 << i) != 0 {
                s.reset();
            }
        }
    }

    /// One step. `Ok(false)`: the input is used up and more is needed.
    fn step(
        &mut self,
        input: &mut &[u8],
        fb: &mut Framebuffer,
        events: &mut Vec<Event>,
    ) -> Result<bool, DecodeError> {
        let px = self.px;
        let state = std::mem::replace(&mut self.state, State::Failed);
        match state {
            State::MessageType => {
                let Some((&kind, rest)) = input.split_first() else {
                    self.state = State::MessageType;
                    return Ok(false);
                };
                *input = rest;
                self.state = match kind {
                    0 => State::UpdateHeader,
                    1 => return Err(DecodeError::ColourMap),
                    2 => {
                        events.push(Event::Bell);
                        State::MessageType
                    }
                    3 => State::CutHeader,
                    150 => {
                        events.push(Event::EndOfContinuousUpdates);
                        State::MessageType
                    }
                    248 => State::Fence,
                    255 => State::Qemu,
                    t => return Err(DecodeError::UnknownMessage(t)),
                };
            }
            State::UpdateHeader => {
                gather!(self, input, State::UpdateHeader, fixed(3));
                self.rects_left = be16(&self.acc.bytes()[1..]);
                self.acc.clear();
                self.state = if self.rects_left == 0 {
                    events.push(Event::UpdateEnd);
                    State::MessageType
                } else {
                    State::RectHeader
                };
            }
            State::RectHeader => {
                gather!(self, input, State::RectHeader, fixed(12));
                let b = self.acc.bytes();
                let rect = Rect::new(be16(b), be16(&b[2..]), be16(&b[4..]), be16(&b[6..]));
                let encoding = be32(&b[8..]) as i32;
                self.acc.clear();
                self.rect_header(rect, encoding, fb, events)?;
            }
            State::Raw { rect, mut row } => {
                fb.check(rect).map_err(|e| DecodeError::bounds("Raw", e))?;
                let row_bytes = usize::from(rect.w) * px.bytes();
                if row_bytes == 0 {
                    row = rect.h;
                }
                while row < rect.h {
                    if self.acc.is_empty() && input.len() >= row_bytes {
                        px.row(&input[..row_bytes], fb.row_mut(rect, row));
                        *input = &input[row_bytes..];
                    } else if self.acc.fill(input, row_bytes) {
                        px.row(self.acc.bytes(), fb.row_mut(rect, row));
                        self.acc.clear();
                    } else {
                        self.state = State::Raw { rect, row };
                        return Ok(false);
                    }
                    row += 1;
                }
                self.drawn(rect, events);
            }
            State::CopyRect { rect } => {
                gather!(self, input, State::CopyRect { rect }, fixed(4));
                let b = self.acc.bytes();
                let (sx, sy) = (be16(b), be16(&b[2..]));
                self.acc.clear();
                fb.copy(rect, sx, sy)
                    .map_err(|e| DecodeError::bounds("CopyRect", e))?;
                self.drawn(rect, events);
            }
            State::Hextile(mut tiles) => {
                while let Some(tile) = tiles.current() {
                    let n = gather!(self, input, State::Hextile(tiles), |b| {
                        Ok::<_, DecodeError>(Tiles::tile_len(tile, &px, b))
                    });
                    tiles.draw(tile, &px, &self.acc.bytes()[..n], fb)?;
                    self.acc.clear();
                }
                self.drawn(tiles.rect, events);
            }
            State::CompressedLength { rect, encoding } => {
                gather!(
                    self,
                    input,
                    State::CompressedLength { rect, encoding },
                    fixed(4)
                );
                let len = be32(self.acc.bytes());
                self.acc.clear();
                let (what, kind, bound) = if encoding == enc::ZLIB {
                    ("Zlib data", Inflating::Zlib, rect.area() * px.bytes())
                } else {
                    ("ZRLE data", Inflating::Zrle, zrle::bound(rect, &px))
                };
                if len > MAX_COMPRESSED {
                    return Err(DecodeError::TooLong {
                        what,
                        len: u64::from(len),
                        cap: u64::from(MAX_COMPRESSED),
                    });
                }
                self.out.start(what, bound, len as usize);
                self.state = State::Inflate {
                    rect,
                    kind,
                    left: len as usize,
                };
            }
            State::Inflate { rect, kind, left } => {
                if left > 0 && input.is_empty() {
                    self.state = State::Inflate { rect, kind, left };
                    return Ok(false);
                }
                let take = left.min(input.len());
                let (chunk, rest) = input.split_at(take);
                *input = rest;
                let (stream, encoding) = match &kind {
                    Inflating::Zlib => (&mut self.zlib, "Zlib"),
                    Inflating::Zrle => (&mut self.zrle, "ZRLE"),
                    Inflating::Tight { stream, .. } => (&mut self.tight[*stream & 3], "Tight"),
                };
                stream.inflate(encoding, chunk, &mut self.out)?;
                if left > take {
                    self.state = State::Inflate {
                        rect,
                        kind,
                        left: left - take,
                    };
                    return Ok(false);
                }
                self.inflated(rect, &kind, fb)?;
                self.out.finish();
                self.drawn(rect, events);
            }
            State::TightHeader { rect } => {
                let head = gather!(self, input, State::TightHeader { rect }, |b| {
                    tight::header(rect, &px, b)
                });
                match head {
                    Head::Fill { resets, colour } => {
                        self.reset_tight(resets);
                        self.acc.clear();
                        fb.fill(rect, colour)
                            .map_err(|e| DecodeError::bounds("Tight", e))?;
                        self.drawn(rect, events);
                    }
                    Head::Basic {
                        resets,
                        filter,
                        data_len,
                        header_len,
                        compressed: None,
                        ..
                    } => {
                        self.reset_tight(resets);
                        let total = header_len + data_len;
                        gather!(self, input, State::TightHeader { rect }, fixed(total));
                        tight::draw(rect, &px, &filter, &self.acc.bytes()[header_len..total], fb)?;
                        self.acc.clear();
                        self.drawn(rect, events);
                    }
                    Head::Basic {
                        resets,
                        stream,
                        filter,
                        data_len,
                        compressed: Some(len),
                        ..
                    } => {
                        self.reset_tight(resets);
                        self.acc.clear();
                        self.out.start("Tight data", data_len, len);
                        self.state = State::Inflate {
                            rect,
                            kind: Inflating::Tight {
                                stream,
                                filter,
                                data_len,
                            },
                            left: len,
                        };
                    }
                }
            }
            State::Cursor { rect } => {
                let total = pseudo::cursor_len(rect, &px);
                gather!(self, input, State::Cursor { rect }, fixed(total));
                let shape = pseudo::cursor(rect, &px, &self.acc.bytes()[..total]);
                self.acc.clear();
                events.push(Event::Cursor(shape));
                self.state = self.rect_done(events);
            }
            State::DesktopName => {
                let n = gather!(self, input, State::DesktopName, pseudo::desktop_name);
                let name = String::from_utf8_lossy(&self.acc.bytes()[4..n]).into_owned();
                self.acc.clear();
                events.push(Event::DesktopName(name));
                self.state = self.rect_done(events);
            }
            State::ExtendedDesktopSize { rect } => {
                let n = gather!(
                    self,
                    input,
                    State::ExtendedDesktopSize { rect },
                    pseudo::layout_len
                );
                let screens = pseudo::screens(&self.acc.bytes()[4..n]);
                self.acc.clear();
                Self::resize(fb, rect.w, rect.h)?;
                events.push(Event::Resize {
                    width: rect.w,
                    height: rect.h,
                    reason: rect.x,
                    status: rect.y,
                    screens,
                });
                self.state = self.rect_done(events);
            }
            State::Led => {
                gather!(self, input, State::Led, fixed(1));
                events.push(Event::LedState(self.acc.bytes()[0]));
                self.acc.clear();
                self.state = self.rect_done(events);
            }
            State::CutHeader => {
                gather!(self, input, State::CutHeader, fixed(7));
                let len = be32(&self.acc.bytes()[3..]);
                self.acc.clear();
                if len & 0x8000_0000 != 0 {
                    return Err(DecodeError::invalid(
                        "ServerCutText",
                        "extended clipboard (a negative length) was not negotiated",
                    ));
                }
                if len > MAX_COMPRESSED {
                    return Err(DecodeError::TooLong {
                        what: "ServerCutText",
                        len: u64::from(len),
                        cap: u64::from(MAX_COMPRESSED),
                    });
                }
                self.cut = Vec::new();
                self.state = State::CutText {
                    left: len,
                    announced: len,
                };
            }
            State::CutText { left, announced } => {
                let take = (left as usize).min(input.len());
                let keep = take.min(MAX_CUT_TEXT - self.cut.len().min(MAX_CUT_TEXT));
                let need = self.cut.len() + keep;
                if need > self.cut.capacity() {
                    // Doubling, but never past the cap: what is held follows what came.
                    let want = need.max(self.cut.capacity() * 2).min(MAX_CUT_TEXT);
                    self.cut.reserve_exact(want - self.cut.len());
                }
                self.cut.extend_from_slice(&input[..keep]);
                *input = &input[take..];
                let left = left - take as u32;
                if left > 0 {
                    self.state = State::CutText { left, announced };
                    return Ok(false);
                }
                let text = self.cut.iter().map(|&b| char::from(b)).collect();
                self.cut = Vec::new();
                events.push(Event::CutText {
                    text,
                    truncated: announced as usize > MAX_CUT_TEXT,
                });
                self.state = State::MessageType;
            }
            State::Fence => {
                let n = gather!(self, input, State::Fence, pseudo::fence_len);
                let b = self.acc.bytes();
                events.push(Event::Fence {
                    flags: be32(&b[3..]),
                    payload: b[8..n].to_vec(),
                });
                self.acc.clear();
                self.state = State::MessageType;
            }
            State::Qemu => {
                let skip = gather!(self, input, State::Qemu, pseudo::qemu_message);
                self.acc.clear();
                self.state = match skip {
                    0 => State::MessageType,
                    left => State::Skip { left },
                };
            }
            State::Skip { left } => {
                let take = (left as usize).min(input.len());
                *input = &input[take..];
                let left = left - take as u32;
                if left > 0 {
                    self.state = State::Skip { left };
                    return Ok(false);
                }
                self.state = State::MessageType;
            }
            State::Failed => {
                return Err(DecodeError::invalid(
                    "decoder",
                    "used after an earlier error",
                ))
            }
        }
        Ok(true)
    }

    /// Dispatches on a rectangle's encoding.
    fn rect_header(
        &mut self,
        rect: Rect,
        encoding: i32,
        fb: &mut Framebuffer,
        events: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        let check = |fb: &Framebuffer| {
            fb.check(rect)
                .map_err(|e| DecodeError::bounds(name(encoding), e))
        };
        self.state = match encoding {
            enc::RAW => {
                check(fb)?;
                State::Raw { rect, row: 0 }
            }
            enc::COPY_RECT => {
                check(fb)?;
                State::CopyRect { rect }
            }
            enc::HEXTILE => {
                check(fb)?;
                State::Hextile(Tiles::new(rect))
            }
            enc::ZLIB | enc::ZRLE => {
                check(fb)?;
                State::CompressedLength { rect, encoding }
            }
            enc::TIGHT => {
                check(fb)?;
                State::TightHeader { rect }
            }
            enc::DESKTOP_SIZE => {
                Self::resize(fb, rect.w, rect.h)?;
                events.push(Event::Resize {
                    width: rect.w,
                    height: rect.h,
                    reason: 0,
                    status: 0,
                    screens: Vec::new(),
                });
                self.rect_done(events)
            }
            enc::LAST_RECT => {
                self.rects_left = 0;
                events.push(Event::UpdateEnd);
                State::MessageType
            }
            enc::CURSOR => {
                if rect.w > MAX_CURSOR_SIDE || rect.h > MAX_CURSOR_SIDE {
                    return Err(DecodeError::invalid(
                        "Cursor",
                        format!(
                            "a {}x{} cursor exceeds the limit of {MAX_CURSOR_SIDE} pixels a side",
                            rect.w, rect.h
                        ),
                    ));
                }
                State::Cursor { rect }
            }
            enc::QEMU_EXTENDED_KEY => {
                events.push(Event::QemuExtendedKeyEvent);
                self.rect_done(events)
            }
            enc::QEMU_POINTER_MOTION => {
                events.push(Event::PointerMotion {
                    absolute: rect.x != 0,
                });
                self.rect_done(events)
            }
            enc::LED_STATE => State::Led,
            enc::DESKTOP_NAME => State::DesktopName,
            enc::EXTENDED_DESKTOP_SIZE => State::ExtendedDesktopSize { rect },
            _ => return Err(DecodeError::UnknownEncoding { encoding, rect }),
        };
        Ok(())
    }

    /// Draws a rectangle whose compressed data has all been inflated.
    fn inflated(
        &mut self,
        rect: Rect,
        kind: &Inflating,
        fb: &mut Framebuffer,
    ) -> Result<(), DecodeError> {
        let px = self.px;
        let data = self.out.data();
        match kind {
            Inflating::Zlib => {
                let row_bytes = usize::from(rect.w) * px.bytes();
                if data.len() != row_bytes * usize::from(rect.h) {
                    return Err(DecodeError::invalid(
                        "Zlib",
                        format!(
                            "rectangle {},{} {}x{} inflated to {} bytes, not {}",
                            rect.x,
                            rect.y,
                            rect.w,
                            rect.h,
                            data.len(),
                            row_bytes * usize::from(rect.h)
                        ),
                    ));
                }
                fb.check(rect).map_err(|e| DecodeError::bounds("Zlib", e))?;
                if row_bytes > 0 {
                    for (dy, src) in (0..rect.h).zip(data.chunks_exact(row_bytes)) {
                        px.row(src, fb.row_mut(rect, dy));
                    }
                }
                Ok(())
            }
            Inflating::Zrle => zrle::draw(rect, &px, data, fb),
            Inflating::Tight {
                filter, data_len, ..
            } => {
                if data.len() != *data_len {
                    return Err(DecodeError::invalid(
                        "Tight",
                        format!(
                            "rectangle {},{} {}x{} inflated to {} bytes, not {data_len}",
                            rect.x,
                            rect.y,
                            rect.w,
                            rect.h,
                            data.len()
                        ),
                    ));
                }
                tight::draw(rect, &px, filter, data, fb)
            }
        }
    }
}
