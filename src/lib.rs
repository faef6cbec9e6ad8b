//! provisio: renders a tenant registry into GitOps output for Argo CD, keeps it in sync,
//! takes billing webhooks, and runs the setup Jobs' work.
//!
//! The pure core (registry, naming, plan, render, intake decisions) is the `provisio-core`
//! crate. This crate is everything around it, in layers that depend one way:
//! [`cli`] → [`services`] (serve, watch) → [`ops`] (generate, check, deliver) → [`io`]
//! (files, git, HTTP) and [`setup`] (the setup clients) → `provisio_core`. See
//! `ARCHITECTURE.md`.

pub mod cli;
pub mod io;
pub mod ops;
pub mod report;
pub mod services;
pub mod setup;
