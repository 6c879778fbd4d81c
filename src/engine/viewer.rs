//! One viewer of a console engine, after its security handshake: ClientInit, a
//! ServerInit from the current screen (32-bit true colour, the screen's name), then its
//! messages (pixel format and encodings per viewer, input to the console) and its
//! updates, answered from the framebuffer at its own pace: an update is sent only when
//! the viewer asked for one, with everything that changed since its last (coalesced), so
//! a slow viewer costs the console and the others nothing. When the engine ends, the
//! viewer is closed with the reason.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::cache::Entry;
use super::damage::Damage;
use super::msgs::{Parser, ViewerMsg};
use super::{Engine, Input, Membership, Phase, ViewerRole};
use crate::bridge::Counters;
use crate::client::{ClientIo, In};
use crate::console::encode::{
    desktop_name, desktop_size, extended_desktop_size, Encoder, Encoding, Screen as LayoutScreen,
    SizeReason,
};
use crate::console::fb::Rect;
use crate::metrics::Metrics;
use crate::outcome::Failure;
use crate::rfb::handshake::RfbIo;
use crate::rfb::messages::{PixelFormat, ServerInit};

/// The pixel format of the ServerInit viewers get (what the framebuffer holds).
const SERVER_FORMAT: PixelFormat = PixelFormat::RGB888;

/// How a viewer is bounded (its role is on its slot: control can be handed over).
#[derive(Debug, Clone, Copy)]
pub struct ViewerOpts {
    /// Bound on its ClientInit.
    pub init_timeout: Duration,
}

/// How long a notice for one viewer stays in its banner.
const NOTICE: Duration = Duration::from_secs(8);

/// Why a viewer's session ended.
#[derive(Debug, Clone)]
pub(crate) enum ViewerEnd {
    /// The viewer closed.
    Left,
    /// The viewer's connection failed.
    Lost(String),
    /// The viewer broke the protocol or asked for what tcvnc does not serve; the reason
    /// is for it and the log.
    Refused(String),
    /// The engine ended (resume timeout, a permanent refusal, shutdown).
    Engine(Arc<Failure>),
    /// Another viewer took the console over (`on_busy = "takeover"`): who.
    TakenOver(String),
    /// tcvnc is shutting down.
    Shutdown,
}

/// Serves one viewer whose security handshake is done, until it or the engine ends.
pub(crate) async fn serve<W>(
    membership: &Membership,
    client: &mut ClientIo<W>,
    opts: ViewerOpts,
    cancel: &CancellationToken,
    counters: &Counters,
    metrics: &Metrics,
) -> ViewerEnd
where
    W: AsyncRead + AsyncWrite + Unpin + Send,
{
    let engine = membership.engine().clone();
    let mut shared = [0u8];
    match tokio::time::timeout(opts.init_timeout, client.read_exact(&mut shared)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return ViewerEnd::Lost(format!("no ClientInit: {e}")),
        Err(_) => return ViewerEnd::Refused("no ClientInit in time".into()),
    }
    let init = {
        let s = engine.screen.read();
        // The ServerInit carries the size: no DesktopSize is owed for it.
        membership.slot.pending.lock().resized = false;
        ServerInit {
            width: s.fb.width(),
            height: s.fb.height(),
            format: SERVER_FORMAT,
            name: s.name.clone(),
        }
    };
    let init_size = (init.width, init.height);
    let init = init.to_bytes();
    if let Err(e) = client.write_all(&init).await {
        return ViewerEnd::Lost(e.to_string());
    }
    counters
        .to_client
        .fetch_add(init.len() as u64, Ordering::Relaxed);
    let mut v = Viewer {
        engine,
        enc: match Encoder::new(SERVER_FORMAT) {
            Ok(e) => e,
            Err(e) => return ViewerEnd::Refused(e.to_string()),
        },
        parser: Parser::default(),
        wants: false,
        out: Vec::new(),
        shared: false,
        notice: None,
        told_view_only: false,
        notice_drawn: true,
        size: init_size,
    };
    let slot = membership.slot.clone();
    let mut phase = v.engine.subscribe();
    let mut buf = BytesMut::new();
    let (mut rd, mut wr) = client.halves();
    loop {
        if let Some(by) = slot.pending.lock().kicked.take() {
            return ViewerEnd::TakenOver(by);
        }
        v.take_notice(&slot);
        // Bell and cut text go at once; an update only when one was asked for.
        let extra = v.server_messages(&slot, true);
        let update = if v.wants {
            match v.update(&slot, metrics) {
                Ok(u) => u,
                Err(reason) => return ViewerEnd::Refused(reason),
            }
        } else {
            false
        };
        if update || extra {
            if update {
                v.wants = false;
            }
            let n = v.out.len();
            let data = Bytes::from(std::mem::take(&mut v.out));
            let sent = async {
                wr.write(data).await?;
                wr.flush().await
            };
            if let Err(e) = sent.await {
                return ViewerEnd::Lost(e);
            }
            // An idle viewer holds no scratch buffer.
            v.enc.release_buffers();
            counters.to_client.fetch_add(n as u64, Ordering::Relaxed);
            continue;
        }
        tokio::select! {
            r = rd.recv(&mut buf) => match r {
                In::Data(chunk) => {
                    let data = chunk.payload();
                    counters.to_upstream.fetch_add(data.len() as u64, Ordering::Relaxed);
                    v.parser.push(data);
                    if let Err(reason) = v.handle_messages(&slot).await {
                        return ViewerEnd::Refused(reason);
                    }
                }
                In::Closed => return ViewerEnd::Left,
                In::Failed(e) => return ViewerEnd::Lost(e),
            },
            () = slot.wake.notified() => {}
            () = notice_ends(v.notice.as_ref().map(|n| n.1)) => v.end_notice(&slot),
            () = wr.control_wanted() => {
                if let Err(e) = wr.flush().await {
                    return ViewerEnd::Lost(e);
                }
            }
            changed = phase.changed() => {
                if changed.is_err() {
                    return ViewerEnd::Shutdown;
                }
                if let Phase::Ended(f) = &*phase.borrow_and_update() {
                    return ViewerEnd::Engine(f.clone());
                }
            }
            () = cancel.cancelled() => return ViewerEnd::Shutdown,
        }
    }
}

/// One viewer's state.
pub(super) struct Viewer {
    engine: Arc<Engine>,
    enc: Encoder,
    parser: Parser,
    /// An update request is outstanding.
    wants: bool,
    /// The next write.
    out: Vec<u8>,
    /// Its encoder is in the shared modes, or must never switch to them (a recording):
    /// it takes what it can from the engine's encode cache.
    shared: bool,
    /// A line shown in this viewer's banner, and until when.
    notice: Option<(String, tokio::time::Instant)>,
    /// It was told once that its input is dropped.
    told_view_only: bool,
    /// The current notice (or its end) has been sent.
    notice_drawn: bool,
    /// The screen size this viewer was last told (ServerInit, DesktopSize).
    size: (u16, u16),
}

/// Resolves when the notice shown until `until` is due to go.
async fn notice_ends(until: Option<tokio::time::Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Viewer {
    /// A viewer that is a recording: `format`, the `encodings` every player decodes, the
    /// screen's size as its ServerInit said. Its Tight keeps one zlib stream with its
    /// history (a third smaller than shared mode for text) and is cut at each keyframe
    /// ([`Viewer::keyframe`]); it never switches to the shared modes, and takes Raw and
    /// Hextile encodes from the engine's cache.
    pub(super) fn recording(
        engine: Arc<Engine>,
        format: PixelFormat,
        encodings: &[i32],
    ) -> Result<Viewer, String> {
        let size = engine.size();
        let mut enc = Encoder::new(format).map_err(|e| e.to_string())?;
        enc.set_encodings(encodings);
        Ok(Viewer {
            engine,
            enc,
            parser: Parser::default(),
            wants: true,
            out: Vec::new(),
            shared: true,
            notice: None,
            told_view_only: true,
            notice_drawn: true,
            size,
        })
    }

    /// The next messages a recording holds: a Bell when the console rang (and its cut
    /// text when `cut`), then a FramebufferUpdate with what changed, if anything did.
    ///
    /// # Errors
    /// The screen could not be encoded.
    pub(super) fn next_messages(
        &mut self,
        slot: &super::Slot,
        cut: bool,
        metrics: &Metrics,
    ) -> Result<Vec<u8>, String> {
        self.server_messages(slot, cut);
        self.update(slot, metrics)?;
        self.enc.release_buffers();
        Ok(std::mem::take(&mut self.out))
    }

    /// Makes the next update a keyframe: the whole screen, its name and its cursor, with
    /// the Tight zlib stream cut before it (fully flushed: nothing from then on refers
    /// back past it), so a player can start decoding at it. Returns the screen's size
    /// before it (what a player starting there sizes its screen to; a resize in the
    /// update follows).
    pub(super) fn keyframe(&mut self, slot: &super::Slot) -> (u16, u16) {
        self.enc.cut_tight();
        let (w, h) = self.engine.size();
        let mut p = slot.pending.lock();
        p.damage.add(Rect::new(0, 0, w, h));
        p.cursor = true;
        p.name = true;
        self.size
    }

    /// Acts on every whole message received.
    async fn handle_messages(&mut self, slot: &super::Slot) -> Result<(), String> {
        while let Some(m) = self.parser.next().map_err(|e| e.0)? {
            match m {
                ViewerMsg::SetPixelFormat(pf) => {
                    self.enc.set_pixel_format(pf).map_err(|e| e.to_string())?;
                }
                ViewerMsg::SetEncodings(list) => {
                    let had_cursor = self.enc.encodings().cursor;
                    self.enc.set_encodings(&list);
                    if self.enc.encodings().cursor && !had_cursor {
                        slot.pending.lock().cursor = true;
                    }
                }
                ViewerMsg::UpdateRequest { incremental, area } => {
                    if !incremental {
                        slot.pending.lock().damage.add(area);
                    }
                    self.wants = true;
                }
                ViewerMsg::Key { down, keysym } => {
                    self.input(slot, Input::Key { down, keysym }).await
                }
                ViewerMsg::QemuKey {
                    down,
                    keysym,
                    keycode,
                } => {
                    self.input(
                        slot,
                        Input::QemuKey {
                            down,
                            keysym,
                            keycode,
                        },
                    )
                    .await;
                }
                ViewerMsg::Pointer(raw) => self.input(slot, Input::Pointer(raw)).await,
                ViewerMsg::CutText(raw) => self.input(slot, Input::Raw(raw)).await,
                ViewerMsg::CutTextSkipped(n) => {
                    tracing::debug!(
                        bytes = n,
                        "viewer cut text not forwarded (too long, or the extended clipboard)"
                    );
                }
                ViewerMsg::Ignored(what) => tracing::debug!(what, "viewer message ignored"),
            }
        }
        Ok(())
    }

    async fn input(&mut self, slot: &super::Slot, i: Input) {
        if slot.role() == ViewerRole::View {
            self.engine
                .stats
                .input_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.engine
                .metrics
                .engine_input_dropped(&self.engine.instance, "view_only");
            if !self.told_view_only {
                self.told_view_only = true;
                slot.notify("view only: your keys and pointer do not reach the console".into());
            }
            return;
        }
        if self.engine.input.send(i).await.is_err() {
            self.engine
                .stats
                .input_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.engine
                .metrics
                .engine_input_dropped(&self.engine.instance, "no_console");
        }
    }

    /// Takes a new notice for this viewer: shown in its banner for [`NOTICE`].
    fn take_notice(&mut self, slot: &super::Slot) {
        if let Some(text) = slot.pending.lock().notice.take() {
            self.notice = Some((text, tokio::time::Instant::now() + NOTICE));
            self.notice_drawn = false;
        }
    }

    /// The notice is over: the banner's area is repainted from the screen.
    fn end_notice(&mut self, slot: &super::Slot) {
        self.notice = None;
        let (w, _) = self.engine.size();
        slot.pending
            .lock()
            .damage
            .add(Rect::new(0, 0, w, crate::console::banner::BANNER_H));
        slot.wake.notify_one();
    }

    /// Appends Bell and ServerCutText when the console sent them; whether it did.
    /// The console's cut text is taken either way, and sent only when `with_cut`.
    fn server_messages(&mut self, slot: &super::Slot, with_cut: bool) -> bool {
        let (bell, cut) = {
            let mut p = slot.pending.lock();
            (
                std::mem::take(&mut p.bell),
                p.cut.take().filter(|_| with_cut),
            )
        };
        if bell {
            self.out.push(2);
        }
        if let Some(text) = &cut {
            self.out.extend_from_slice(&[3, 0, 0, 0]);
            self.out
                .extend_from_slice(&(text.len() as u32).to_be_bytes());
            self.out.extend_from_slice(text);
        }
        bell || cut.is_some()
    }

    /// Appends a FramebufferUpdate with what changed since the last one, if anything
    /// did; whether it did.
    ///
    /// # Errors
    /// The reason to close the viewer with.
    fn update(&mut self, slot: &super::Slot, metrics: &Metrics) -> Result<bool, String> {
        let enc_list = self.enc.encodings().clone();
        let (mut damage, resized, cursor, name) = {
            let mut p = slot.pending.lock();
            let any = !p.damage.is_empty()
                || !self.notice_drawn
                || p.resized
                || (p.cursor && enc_list.cursor)
                || (p.name && enc_list.desktop_name);
            if !any {
                return Ok(false);
            }
            (
                p.damage.take(),
                std::mem::take(&mut p.resized),
                std::mem::take(&mut p.cursor),
                std::mem::take(&mut p.name),
            )
        };
        let s = self.engine.screen.read();
        let (w, h) = (s.fb.width(), s.fb.height());
        let start = self.out.len();
        self.out.extend_from_slice(&[0, 0, 0, 0]);
        let mut count: u32 = 0;
        if resized {
            if enc_list.extended_desktop_size {
                let whole = [LayoutScreen {
                    id: 0,
                    area: Rect::new(0, 0, w, h),
                    flags: 0,
                }];
                let layout = if s.layout.is_empty() {
                    &whole[..]
                } else {
                    &s.layout[..]
                };
                extended_desktop_size(w, h, SizeReason::Server, 0, layout, &mut self.out);
            } else if enc_list.desktop_size {
                desktop_size(w, h, &mut self.out);
            } else if (w, h) != self.size {
                return Err(format!(
                    "the console's screen changed size to {w}x{h} and this viewer cannot follow a size change (it did not ask for DesktopSize): reconnect"
                ));
            }
            // Else the console announced the size this viewer has (TigerVNC sends its
            // ExtendedDesktopSize at every connection): nothing to tell it.
            if enc_list.extended_desktop_size || enc_list.desktop_size {
                count += 1;
            }
            self.size = (w, h);
            damage = Damage::default();
            damage.add(s.fb.bounds());
        }
        if cursor && enc_list.cursor {
            if let Some(c) = &s.cursor {
                self.enc
                    .cursor(c, &mut self.out)
                    .map_err(|e| e.to_string())?;
                count += 1;
            }
        }
        if name && enc_list.desktop_name {
            desktop_name(&s.name, &mut self.out);
            count += 1;
        }
        // With other viewers on the engine, rectangles are encoded in the shared modes
        // (bytes independent of this viewer's history) and each encoded once for all.
        if !self.shared && self.engine.viewers() > 1 {
            self.enc.enable_shared_zrle();
            self.enc.enable_shared_tight();
            self.shared = true;
        }
        let failed = |e: crate::console::encode::EncodeError| {
            format!("tcvnc could not encode the screen for this viewer: {e}")
        };
        for r in damage.clipped(w, h) {
            let e = self.enc.choose(r);
            if e == Encoding::Zrle {
                count += u32::from(self.enc.prime_zrle(&s.fb, &mut self.out).map_err(failed)?);
            }
            let before = self.out.len();
            let key = if self.shared {
                self.enc.share_key(e)
            } else {
                None
            };
            let n = match key {
                Some(key) => match self.engine.cache.get(s.generation, &key, r) {
                    Some(hit) => {
                        self.out.extend_from_slice(&hit.bytes);
                        hit.rects
                    }
                    None => {
                        let n = self
                            .enc
                            .encode_as(e, &s.fb, r, &mut self.out)
                            .map_err(failed)?;
                        let entry = Entry {
                            bytes: self.out[before..].to_vec(),
                            rects: n,
                        };
                        self.engine.cache.put(s.generation, key, r, entry);
                        n
                    }
                },
                None => self
                    .enc
                    .encode_as(e, &s.fb, r, &mut self.out)
                    .map_err(failed)?,
            };
            count += u32::from(n);
            metrics.engine_encoded(
                encoding_name(e),
                u64::from(n),
                (self.out.len() - before) as u64,
            );
        }
        if let Some((text, _)) = &self.notice {
            // This viewer's own line, over the top of what it was just sent.
            let bar_h = crate::console::banner::BANNER_H.min(h);
            if w > 0 && bar_h > 0 {
                let mut bar = crate::console::fb::Framebuffer::new(w, bar_h);
                crate::console::banner::draw_banner(&mut bar, &format!("tcvnc: {text}"));
                count += u32::from(
                    self.enc
                        .encode(&bar, Rect::new(0, 0, w, bar_h), &mut self.out)
                        .map_err(failed)?,
                );
            }
        }
        self.notice_drawn = true;
        drop(s);
        let Ok(count) = u16::try_from(count) else {
            return Err("an update of more than 65535 rectangles".into());
        };
        self.out[start + 2..start + 4].copy_from_slice(&count.to_be_bytes());
        Ok(true)
    }
}

fn encoding_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Raw => "raw",
        Encoding::Hextile => "hextile",
        Encoding::Zrle => "zrle",
        Encoding::Tight => "tight",
    }
}
