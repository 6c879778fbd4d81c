//! `tcvnc completions SHELL` and `tcvnc man`: generated from the clap definitions.

use super::CmdError;

/// Writes `bytes` to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), CmdError> {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CmdError::Other(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// Shell completions for `shell`.
pub(super) fn completions(shell: clap_complete::Shell) -> Result<(), CmdError> {
    let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "tcvnc", &mut out);
    write_stdout(&out)
}

/// The man page (roff).
pub(super) fn man() -> Result<(), CmdError> {
    let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(|e| CmdError::Other(format!("cannot render the man page: {e}")))?;
    write_stdout(&out)
}
