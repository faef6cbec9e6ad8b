//! The long-running services: the billing intake (`serve`) and watch mode (`watch`), and
//! what they share at the edges: the one HTTP server stack ([`http`]), the one metrics
//! stack ([`metrics`]) and the one signal-handling style ([`signal`]).

pub mod http;
pub mod metrics;
pub mod serve;
pub mod signal;
pub mod watch;
