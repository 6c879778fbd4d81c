//! Where URLs and API calls are spent, each in its own file: the per-instance reconnect
//! window ([`window`]: at most N URLs in any 60 s, FIFO waiting up to `max_wait`) and the
//! API rate limit ([`api`]: at most N requests in any second, counted by when the cloud
//! can have seen them). Both run on tokio time, so paused-time tests drive them.

pub mod api;
pub mod window;

pub use api::{ApiKey, ApiLimiter, ApiTicket};
pub use window::{Budget, Exhausted, Ticket, WINDOW};
