//! The daemon's life: [`run`] serves bound listeners until a shutdown future resolves,
//! then drains; [`run_reloading`] also reloads the config on SIGHUP ([`reload`]). The
//! commands that start it live in `cmd`.

pub mod reload;
mod run;

pub use reload::{reload, reload_file, ReloadError, ReloadReport};
pub use run::{run, run_reloading, ReloadOn};
