//! `tcvnc health URL`: GET a plain-http URL and succeed on 200 (a container health check
//! without curl in the image).

use super::CmdError;

/// Probes `url` with a 3 s bound.
pub(super) async fn run(url: &str) -> Result<(), CmdError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| CmdError::Usage(format!("{url:?}: only http:// URLs are probed")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(authority).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut head = vec![0u8; 64];
        let n = s.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), probe).await {
        Ok(Ok(head)) if head.starts_with("HTTP/1.1 200") => Ok(()),
        Ok(Ok(head)) => Err(CmdError::Other(format!(
            "{url}: {}",
            head.lines().next().unwrap_or("no answer")
        ))),
        Ok(Err(e)) => Err(CmdError::Other(format!("{url}: {e}"))),
        Err(_) => Err(CmdError::Other(format!("{url}: no answer within 3 s"))),
    }
}
