//! Unit and property tests of the framing, both roles.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::frame::*;
use super::*;
use proptest::prelude::*;

fn pair(mode: Mode) -> (WsIo<tokio::io::DuplexStream>, WsIo<tokio::io::DuplexStream>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (
        WsIo::new(a, Role::Client, mode, Bytes::new()),
        WsIo::new(b, Role::Server, mode, Bytes::new()),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn read_all<S: AsyncRead + AsyncWrite>(io: &mut WsIo<S>, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    io.read_exact(&mut out).await.expect("read");
    out
}

#[test]
fn mask_matches_bytewise_at_every_offset() {
    let mask = [0x12, 0x34, 0x56, 0x78];
    for offset in 0..8 {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, mask, offset);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[(offset + i) % 4])
                .collect();
            assert_eq!(fast, slow, "offset {offset} len {len}");
        }
    }
}

#[test]
fn both_roles_both_modes_round_trip() {
    rt().block_on(async {
        for mode in [Mode::Binary, Mode::Base64] {
            let (mut c, mut s) = pair(mode);
            let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
            c.send(Bytes::from(big.clone())).await.expect("send");
            assert_eq!(read_all(&mut s, big.len()).await, big);
            s.send(Bytes::from_static(b"RFB 003.008\n"))
                .await
                .expect("send");
            assert_eq!(read_all(&mut c, 12).await, b"RFB 003.008\n");
            c.close(1000, "bye").await;
            match s.recv().await {
                Recv::Closed(Some((1000, r))) => assert_eq!(r, "bye"),
                other => panic!("{other:?}"),
            }
        }
    });
}

#[test]
fn pings_are_answered_and_pongs_counted() {
    rt().block_on(async {
        let (mut c, mut s) = pair(Mode::Binary);
        c.ping().await.expect("ping");
        assert_eq!(c.halves().1.unanswered_pings(), 1);
        // The server's reader owes a pong; its recv answers while waiting for data.
        let server = async {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.expect("data");
            b
        };
        let client = async {
            // The pong arrives before the data; recv consumes it on the way.
            loop {
                if c.halves().1.unanswered_pings() == 0 {
                    break;
                }
                tokio::select! {
                    r = c.recv() => panic!("unexpected {r:?}"),
                    () = tokio::task::yield_now() => {}
                }
            }
            c.send(Bytes::from_static(b"ok")).await.expect("send");
        };
        let (b, ()) = tokio::join!(server, client);
        assert_eq!(&b, b"ok");
    });
}

/// Hand-made frames for the reader's error paths.
fn frame(b0: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![b0];
    let m = if masked { 0x80 } else { 0 };
    if payload.len() < 126 {
        v.push(m | payload.len() as u8);
    } else {
        v.push(m | 126);
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    if masked {
        let key = [1, 2, 3, 4];
        v.extend_from_slice(&key);
        let mut p = payload.to_vec();
        apply_mask(&mut p, key, 0);
        v.extend_from_slice(&p);
    } else {
        v.extend_from_slice(payload);
    }
    v
}

async fn server_reads(bytes: Vec<u8>) -> Vec<String> {
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let mut io = WsIo::new(a, Role::Server, Mode::Binary, Bytes::new());
    b.write_all(&bytes).await.expect("write");
    drop(b);
    let mut out = Vec::new();
    loop {
        match io.recv().await {
            Recv::Data(d) => out.push(format!("data {}", String::from_utf8_lossy(&d))),
            Recv::Closed(c) => {
                out.push(format!("closed {c:?}"));
                return out;
            }
            Recv::Failed(e) => {
                out.push(format!("failed {e}"));
                return out;
            }
        }
    }
}

#[test]
fn reader_rules() {
    rt().block_on(async {
        let unmasked = server_reads(frame(0x82, false, b"x")).await;
        assert!(unmasked[0].contains("unmasked"), "{unmasked:?}");
        let rsv = server_reads(frame(0xC2, true, b"x")).await;
        assert!(rsv[0].contains("reserved bits"), "{rsv:?}");
        let text = server_reads(frame(0x81, true, b"aGk=")).await;
        assert!(
            text[0].contains("text message on a binary channel"),
            "{text:?}"
        );
        let big_ping = server_reads(frame(0x89, true, &[0u8; 126])).await;
        assert!(big_ping[0].contains("control frame"), "{big_ping:?}");
        let stray = server_reads(frame(0x80, true, b"x")).await;
        assert!(stray[0].contains("continuation"), "{stray:?}");
        let eof = server_reads(frame(0x82, true, b"ab")).await;
        assert_eq!(eof[0], "data ab");
        assert!(
            eof[1].contains("without a websocket close frame"),
            "{eof:?}"
        );
        // Fragments with a ping between them, then a close with code and reason.
        let mut v = frame(0x02, true, b"he");
        v.extend(frame(0x89, true, b"p"));
        v.extend(frame(0x80, true, b"llo"));
        let mut close = 1001u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"going");
        v.extend(frame(0x88, true, &close));
        let r = server_reads(v).await;
        assert_eq!(
            r,
            vec!["data he", "data llo", "closed Some((1001, \"going\"))"]
        );
    });
}

proptest! {
    /// Arbitrary bytes from a peer, in either role and mode, end in data, a close or
    /// a failure: never a panic, never a hang.
    #[test]
    fn reader_survives_any_input(
        bytes in proptest::collection::vec(any::<u8>(), 0..2_000),
        server in any::<bool>(),
        base64 in any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let mode = if base64 { Mode::Base64 } else { Mode::Binary };
        rt().block_on(async {
            let (a, mut b) = tokio::io::duplex(1 << 16);
            let mut io = WsIo::new(a, role, mode, Bytes::new());
            b.write_all(&bytes).await.expect("write");
            drop(b);
            for _ in 0..=bytes.len() {
                match io.recv().await {
                    Recv::Data(_) => {}
                    Recv::Closed(_) | Recv::Failed(_) => return,
                }
            }
            panic!("more results than input bytes");
        });
    }

    /// Any byte stream, cut into any messages and delivered in any pieces, arrives
    /// intact in order, whichever side sends.
    #[test]
    fn stream_survives_any_split(
        data in proptest::collection::vec(any::<u8>(), 0..20_000),
        cuts in proptest::collection::vec(1usize..5_000, 1..20),
        base64 in any::<bool>(),
        client_sends in any::<bool>(),
    ) {
        let mode = if base64 { Mode::Base64 } else { Mode::Binary };
        rt().block_on(async {
            let (mut c, mut s) = pair(mode);
            let (tx, rx) = if client_sends { (&mut c, &mut s) } else { (&mut s, &mut c) };
            let mut at = 0;
            let mut i = 0;
            while at < data.len() {
                let end = (at + cuts[i % cuts.len()]).min(data.len());
                if i % 2 == 0 {
                    tx.halves().1.feed(Bytes::copy_from_slice(&data[at..end])).await.expect("feed");
                } else {
                    // The bridge's zero-copy path: header space in front of the payload.
                    let mut b = BytesMut::with_capacity(HEADROOM + end - at);
                    b.put_bytes(0xEE, HEADROOM);
                    b.put_slice(&data[at..end]);
                    tx.w.feed_framed(b).await.expect("feed_framed");
                }
                if i % 3 == 0 {
                    tx.flush().await.expect("flush");
                }
                at = end;
                i += 1;
            }
            tx.flush().await.expect("flush");
            let got = read_all(rx, data.len()).await;
            prop_assert_eq!(got, data.clone());
            Ok(())
        })?;
    }
}
