//! What the two halves of a websocket share: pings in flight, pongs and the close owed.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::AtomicU32;

use bytes::Bytes;
use tokio::sync::Notify;

use super::frame::*;
use super::*;

/// What the two halves share: pings in flight, and the pong and close owed to the peer.
#[derive(Debug, Default)]
pub(super) struct Control {
    pub(super) pings: AtomicU32,
    /// Pongs owed, oldest first; at most [`MAX_OWED_PONGS`] (older ones are dropped:
    /// only the latest ping needs an answer, RFC 6455 §5.5.3).
    pub(super) pong: Mutex<VecDeque<Bytes>>,
    /// The payload of the close frame the reader owes the peer (the first one noted wins).
    pub(super) close: Mutex<Option<Bytes>>,
    pub(super) wake: Notify,
}

impl Control {
    pub(super) fn owe_pong(&self, payload: Bytes) {
        let mut owed = self.pong.lock();
        if owed.len() == MAX_OWED_PONGS {
            owed.pop_front();
        }
        owed.push_back(payload);
        self.wake.notify_one();
    }

    pub(super) fn take_pong(&self) -> Option<Bytes> {
        self.pong.lock().pop_front()
    }

    pub(super) fn owe_close(&self, code: u16, reason: &str) {
        let mut owed = self.close.lock();
        if owed.is_none() {
            *owed = Some(close_payload(code, reason));
            self.wake.notify_one();
        }
    }

    pub(super) fn take_close(&self) -> Option<Bytes> {
        self.close.lock().take()
    }

    pub(super) fn close_owed(&self) -> bool {
        self.close.lock().is_some()
    }
}
