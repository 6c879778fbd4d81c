//! The input log: what viewers sent each instance's built-in test pattern besides
//! update requests (keys, pointer, QEMU extended keys, cut text), the last
//! [`INPUT_LOG_MAX`] per instance, and a counter tests wait on instead of sleeping.

use std::collections::VecDeque;

use serde::Serialize;

use super::SimState;
use crate::rfb::messages::ClientMessage;

/// Inputs kept per instance; older ones are forgotten (the totals still count them).
pub const INPUT_LOG_MAX: usize = 10_000;

/// One input a viewer sent the test pattern. JSON: `{"kind": "key", "down": true,
/// "keysym": 97}`, `{"kind": "pointer", …}`, `{"kind": "qemu_key", …}`,
/// `{"kind": "cut_text", "length": 2, "text": "hi"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SimInput {
    /// KeyEvent.
    Key {
        /// Pressed.
        down: bool,
        /// X keysym.
        keysym: u32,
    },
    /// PointerEvent.
    Pointer {
        /// Button mask.
        mask: u8,
        /// X.
        x: u16,
        /// Y.
        y: u16,
    },
    /// QEMU extended key event (message 255, submessage 0).
    QemuKey {
        /// Pressed.
        down: bool,
        /// X keysym.
        keysym: u32,
        /// XT scan code.
        keycode: u32,
    },
    /// ClientCutText.
    CutText {
        /// Bytes of text.
        length: u32,
        /// The text (Latin-1, as RFB sends it) when at most
        /// [`crate::rfb::messages::SMALL_CUT_TEXT`] bytes; `None` when longer or extended.
        text: Option<String>,
    },
}

impl SimInput {
    /// The input a client message carries, if it is one the log keeps.
    pub(crate) fn from_message(m: &ClientMessage) -> Option<SimInput> {
        Some(match m {
            ClientMessage::KeyEvent { down, keysym } => SimInput::Key {
                down: *down,
                keysym: *keysym,
            },
            ClientMessage::PointerEvent { mask, x, y } => SimInput::Pointer {
                mask: *mask,
                x: *x,
                y: *y,
            },
            ClientMessage::QemuKeyEvent {
                down,
                keysym,
                keycode,
            } => SimInput::QemuKey {
                down: *down,
                keysym: *keysym,
                keycode: *keycode,
            },
            ClientMessage::ClientCutText { length, text } => SimInput::CutText {
                length: *length,
                text: text
                    .as_ref()
                    .map(|t| t.iter().map(|&b| char::from(b)).collect()),
            },
            ClientMessage::SetPixelFormat(_)
            | ClientMessage::SetEncodings(_)
            | ClientMessage::FramebufferUpdateRequest { .. }
            | ClientMessage::Qemu(_) => return None,
        })
    }
}

/// One instance's log.
#[derive(Debug, Default)]
pub(crate) struct InputLog {
    /// Inputs ever recorded for the instance.
    total: u64,
    /// The last [`INPUT_LOG_MAX`] of them.
    recent: VecDeque<SimInput>,
}

impl SimState {
    /// Records `input` for `instance` and wakes [`SimState::subscribe_input`] watchers.
    pub(crate) fn record_input(&self, instance: &str, input: SimInput) {
        {
            let mut logs = self.inputs.lock();
            let log = logs.entry(instance.to_owned()).or_default();
            if log.recent.len() == INPUT_LOG_MAX {
                log.recent.pop_front();
            }
            log.recent.push_back(input);
            log.total += 1;
        }
        self.input_count.send_modify(|n| *n += 1);
    }

    /// The last [`INPUT_LOG_MAX`] inputs viewers sent `instance`'s test pattern, oldest
    /// first (empty for an instance nobody typed into). Reboots do not clear it.
    pub fn input_log(&self, instance: &str) -> Vec<SimInput> {
        self.inputs
            .lock()
            .get(instance)
            .map(|l| l.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many inputs were ever recorded for `instance` (the log keeps the last
    /// [`INPUT_LOG_MAX`]).
    pub fn input_total(&self, instance: &str) -> u64 {
        self.inputs.lock().get(instance).map_or(0, |l| l.total)
    }

    /// A counter of inputs recorded for every instance, changed on each one: wait on it
    /// (`changed`, `wait_for`), then read [`SimState::input_log`].
    pub fn subscribe_input(&self) -> tokio::sync::watch::Receiver<u64> {
        self.input_count.subscribe()
    }

    /// Waits until `total` inputs were ever recorded for `instance`, then returns its log.
    pub async fn wait_inputs(&self, instance: &str, total: u64) -> Vec<SimInput> {
        let mut rx = self.subscribe_input();
        loop {
            if self.input_total(instance) >= total {
                return self.input_log(instance);
            }
            // The sender lives as long as `self`: this never fails while we are borrowed.
            let _ = rx.changed().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimOptions;

    /// The log keeps the last 10,000 inputs per instance, counts every one, and keeps
    /// instances apart.
    #[tokio::test]
    async fn log_is_bounded_per_instance() {
        let state = SimState::build(&SimOptions::default(), crate::shutdown::Shutdown::new());
        let mut rx = state.subscribe_input();
        for i in 0..(INPUT_LOG_MAX as u32 + 5) {
            state.record_input(
                "ins-demo0001",
                SimInput::Key {
                    down: true,
                    keysym: i,
                },
            );
        }
        state.record_input(
            "ins-demo0002",
            SimInput::Pointer {
                mask: 1,
                x: 2,
                y: 3,
            },
        );
        assert!(rx.has_changed().expect("sender alive"));
        assert_eq!(*rx.borrow_and_update(), INPUT_LOG_MAX as u64 + 6);
        let log = state.input_log("ins-demo0001");
        assert_eq!(log.len(), INPUT_LOG_MAX);
        assert_eq!(
            log[0],
            SimInput::Key {
                down: true,
                keysym: 5
            }
        );
        assert_eq!(state.input_total("ins-demo0001"), INPUT_LOG_MAX as u64 + 5);
        assert_eq!(state.wait_inputs("ins-demo0002", 1).await.len(), 1);
        assert!(state.input_log("ins-demo0003").is_empty());
    }

    /// The JSON the control endpoint serves names each kind.
    #[test]
    fn json_names_the_kind() {
        let v = serde_json::to_value(SimInput::CutText {
            length: 2,
            text: Some("hé".into()),
        })
        .expect("json");
        assert_eq!(
            v,
            serde_json::json!({"kind": "cut_text", "length": 2, "text": "hé"})
        );
        let v = serde_json::to_value(SimInput::QemuKey {
            down: false,
            keysym: 0x61,
            keycode: 0x1e,
        })
        .expect("json");
        assert_eq!(
            v,
            serde_json::json!({"kind": "qemu_key", "down": false, "keysym": 97, "keycode": 30})
        );
    }
}
