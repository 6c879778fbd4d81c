//! What the end-to-end tests (`e2e_*.rs`, run with `TCVNC_E2E=1`) share: the real
//! software they start as consoles (`qemu`: QEMU; `x11`: Xvfb with x11vnc, TigerVNC's
//! Xvnc, and the X clients that draw their screens), `tcvnc sim` and `tcvnc serve` as
//! processes (`procs`), and the viewers they drive with the image checks (`viewers`:
//! vncdotool, noVNC in headless Chromium, imgtool). Every process is killed when its
//! handle drops; every wait is bounded (polling every 100 ms up to a deadline).
//!
//! A test file uses it with `mod common; mod e2e_support;` (it builds on `common`).
#![allow(dead_code)]

pub mod procs;
pub mod qemu;
pub mod viewers;
pub mod x11;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// The bound on one step against an external process (a capture, a QMP answer).
pub const STEP: Duration = Duration::from_secs(30);

/// How often a condition on an external process is looked at.
pub const POLL: Duration = Duration::from_millis(100);

/// `tests/e2e/artifacts` (created): what a failed test leaves to look at.
pub fn artifacts() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/artifacts");
    std::fs::create_dir_all(&p).expect("artifacts dir");
    p
}

/// A program of the venv (`vncdo`).
pub fn venv_bin(name: &str) -> PathBuf {
    crate::common::python()
        .parent()
        .expect("venv bin")
        .join(name)
}

/// Calls `check` every [`POLL`] until it gives a value; panics naming `what` (and the
/// last thing `check` said) after `limit`.
pub async fn poll<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {limit:?}; last: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// GET `url` as JSON.
pub async fn http_get_json(url: &str) -> Value {
    crate::common::http_client()
        .get(url)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// POST `body` to `url`, which must answer 2xx.
pub async fn http_post_json(url: &str, body: Value) {
    let r = crate::common::http_client()
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    let status = r.status();
    assert!(
        status.is_success(),
        "{url}: {status} {}",
        r.text().await.unwrap_or_default()
    );
}
