//! The upstream TLS client stream (`tls::stream::TlsClient`, on rustls's unbuffered API)
//! against a tokio-rustls server: bytes cross intact both ways in any pieces, nothing is
//! lost when a record is read in parts, close_notify and a cut socket, and certificates.
#![cfg(feature = "sim")]

use std::io;

use rustls_pki_types::ServerName;
use tcvnc::tls::stream::TlsClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A deterministic byte pattern that shows any lost, repeated or reordered byte.
fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Sizes from a deterministic generator, between 1 and `max`.
fn sizes(seed: u32, max: usize) -> impl FnMut() -> usize {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        // Mostly small, sometimes large: the shapes of console traffic.
        let cap = [16, 1024, 8192, max][(x >> 28) as usize % 4].min(max);
        1 + (x as usize % cap)
    }
}

async fn pair() -> (TlsClient, tokio_rustls::server::TlsStream<TcpStream>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let acceptor = tcvnc::sim::gateway::tls_acceptor([127, 0, 0, 1].into(), &ca).expect("acceptor");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        acceptor.accept(tcp).await.expect("server handshake")
    });
    let config = tcvnc::tls::client_config(Some(&ca)).expect("client config");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let client = TlsClient::connect(config, name, tcp)
        .await
        .expect("handshake");
    (client, server.await.expect("server task"))
}

#[tokio::test]
async fn bytes_cross_intact_both_ways_in_any_pieces() {
    let (client, server) = pair().await;
    const N: usize = 3 << 20;
    let down = pattern(N, 7);
    let up = pattern(N, 11);
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let down2 = down.clone();
    let server_writes = tokio::spawn(async move {
        let mut next = sizes(3, 40_000);
        let mut at = 0;
        while at < N {
            let n = next().min(N - at);
            sw.write_all(&down2[at..at + n])
                .await
                .expect("server write");
            sw.flush().await.expect("server flush");
            at += n;
        }
        sw
    });
    let server_reads = tokio::spawn(async move {
        let mut got = vec![0u8; N];
        sr.read_exact(&mut got).await.expect("server read");
        got
    });
    let up2 = up.clone();
    let client_writes = tokio::spawn(async move {
        let mut next = sizes(5, 70_000);
        let mut at = 0;
        while at < N {
            // Vectored writes of two or three slices, as the websocket writer makes.
            let (a, b) = (next().min(N - at), next());
            let b = b.min(N - at - a);
            let slices = [
                io::IoSlice::new(&up2[at..at + a]),
                io::IoSlice::new(&up2[at + a..at + a + b]),
            ];
            let n = cw.write_vectored(&slices).await.expect("client write");
            assert!(n > 0 && n <= a + b);
            at += n;
        }
        cw.flush().await.expect("client flush");
        cw
    });
    let mut got = vec![0u8; N];
    let mut next = sizes(9, 100_000);
    let mut at = 0;
    while at < N {
        let want = next().min(N - at);
        let n = cr.read(&mut got[at..at + want]).await.expect("client read");
        assert!(n > 0, "early end at {at}");
        at += n;
    }
    assert!(got == down, "the download arrived changed");
    let _sw = server_writes.await.expect("server writer");
    let _cw = client_writes.await.expect("client writer");
    let up_got = server_reads.await.expect("server reader");
    assert!(up_got == up, "the upload arrived changed");
}

#[tokio::test]
async fn a_record_read_in_pieces_loses_nothing_when_the_socket_is_quiet() {
    let (client, server) = pair().await;
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let mut next = sizes(13, 16 * 1024);
    let chunks: Vec<Vec<u8>> = (0..200).map(|i| pattern(next(), i)).collect();
    let expect = chunks.clone();
    // One chunk at a time, each after the client's acknowledgement: whenever the
    // client has drained a record, the socket has nothing more to give.
    let server = tokio::spawn(async move {
        for c in &chunks {
            sw.write_all(c).await.expect("write");
            sw.flush().await.expect("flush");
            let mut ack = [0u8; 1];
            sr.read_exact(&mut ack).await.expect("ack");
        }
    });
    for (i, want) in expect.iter().enumerate() {
        let mut got = Vec::with_capacity(want.len());
        // A tiny read leaves most of the record decrypted but unread...
        let mut small = [0u8; 7];
        let n = cr.read(&mut small).await.expect("small read");
        got.extend_from_slice(&small[..n]);
        // ...and a large one takes the rest while the socket is quiet.
        let mut big = vec![0u8; 64 * 1024];
        while got.len() < want.len() {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), cr.read(&mut big))
                .await
                .unwrap_or_else(|_| panic!("chunk {i}: bytes lost, the read never ends"))
                .expect("read");
            assert!(n > 0);
            got.extend_from_slice(&big[..n]);
        }
        assert!(&got == want, "chunk {i} arrived changed");
        cw.write_all(b"k").await.expect("ack");
        cw.flush().await.expect("ack flush");
    }
    server.await.expect("server");
}

#[tokio::test]
async fn close_notify_reads_as_the_end_and_shutdown_sends_one() {
    let (mut client, mut server) = pair().await;
    server.write_all(b"last words").await.expect("write");
    server.shutdown().await.expect("server close_notify");
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.expect("clean end");
    assert_eq!(got, b"last words");
    client.shutdown().await.expect("client close_notify");
    let mut rest = Vec::new();
    server
        .read_to_end(&mut rest)
        .await
        .expect("server sees a clean end");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_socket_cut_without_close_notify_is_an_error() {
    let (mut client, server) = pair().await;
    let (tcp, _) = server.into_inner();
    drop(tcp);
    let mut buf = [0u8; 16];
    let e = client.read(&mut buf).await.expect_err("unexpected end");
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn an_unknown_certificate_authority_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acceptor =
        tcvnc::sim::gateway::tls_acceptor([127, 0, 0, 1].into(), &dir.path().join("ca.pem"))
            .expect("acceptor");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let _ = acceptor.accept(tcp).await;
    });
    // Webpki roots only: the simulator's CA is not among them.
    let config = tcvnc::tls::client_config(None).expect("client config");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let e = TlsClient::connect(config, name, tcp)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("certificate"), "{e}");
}
