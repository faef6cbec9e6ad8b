//! The long-running services: the billing intake (`serve`) and watch mode (`watch`).

pub mod serve;
pub mod watch;
