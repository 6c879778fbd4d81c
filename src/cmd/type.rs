//! `tcvnc type INSTANCE TEXT`: text typed into the console as key presses, through a
//! running daemon (`--via`) or one-shot. The text is checked here first (printable ASCII,
//! newline, tab): an untypable character is refused before anything is sent.

use super::via::{check_instance_arg, one_shot, Action, Via};
use super::CmdError;
use crate::cli::ViaArgs;
use crate::cloud::credentials::Env;
use crate::console::keys;

/// Types `text` into `instance`.
///
/// # Errors
/// Untypable text or other usage errors (64), the daemon unreachable or refusing (69),
/// the token refused or without control (77).
pub(super) async fn run(instance: &str, text: &str, via: ViaArgs) -> Result<(), CmdError> {
    check_instance_arg(instance)?;
    if text.is_empty() {
        return Err(CmdError::Usage("TEXT is empty: nothing to type".into()));
    }
    keys::type_text(text).map_err(|e| CmdError::Usage(e.to_string()))?;
    let action = Action::Type(text);
    match Via::from_args(via, &Env::from_process())? {
        Via::Daemon(d) => d.send(instance, &action).await.map(drop),
        Via::OneShot(o) => one_shot(instance, &o, &action).await.map(drop),
    }
}
