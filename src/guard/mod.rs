//! Who may come in, before anything is spent: the rate of new connections per address
//! and the unauthenticated connections each address may hold ([`peer`]), and the
//! accounting of failed VNC passwords and HTTP tokens ([`auth`]).

pub mod auth;
pub mod peer;

pub use auth::{Attempt, Guard, Limits, Refused, Scope};
pub use peer::{Crowded, PeerLimiter, Pending, Unauthenticated};
