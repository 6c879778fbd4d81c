//! The RFB (VNC) protocol: messages, and (with the RFB-aware sessions) the handshake on
//! both sides of the proxy.

pub mod auth;
pub mod handshake;
pub mod messages;
