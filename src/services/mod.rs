//! The long-running services: the billing intake (`serve`) and watch mode (`watch`), and
//! what they share at the edges: the one metrics stack ([`metrics`]).

pub mod metrics;
pub mod serve;
pub mod watch;
