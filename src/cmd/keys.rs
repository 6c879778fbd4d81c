//! `tcvnc keys INSTANCE COMBO…`: key combinations (`ctrl-alt-delete`, `alt-f2`, `enter`)
//! pressed on the console one after another, through a running daemon (`--via`) or
//! one-shot. Every name is checked here first: an unknown one is refused before anything
//! is sent.

use super::via::{check_instance_arg, one_shot, Action, Via};
use super::CmdError;
use crate::cli::ViaArgs;
use crate::cloud::credentials::Env;
use crate::console::keys;

/// Presses `combos` on `instance`.
///
/// # Errors
/// Unknown key names or other usage errors (64), the daemon unreachable or refusing
/// (69), the token refused or without control (77).
pub(super) async fn run(instance: &str, combos: &[String], via: ViaArgs) -> Result<(), CmdError> {
    check_instance_arg(instance)?;
    let combos: Vec<&str> = combos.iter().map(|c| c.trim()).collect();
    keys::combos(&combos).map_err(|e| CmdError::Usage(e.to_string()))?;
    let action = Action::Keys(&combos);
    match Via::from_args(via, &Env::from_process())? {
        Via::Daemon(d) => d.send(instance, &action).await.map(drop),
        Via::OneShot(o) => one_shot(instance, &o, &action).await.map(drop),
    }
}
