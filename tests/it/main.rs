//! The integration tests, one binary: each module below was its own test crate. One binary
//! links once instead of once per file (a clean `cargo test` build held 43 test binaries of
//! 55-70 MB each) and the modules share the helpers below as `crate::common` and so on.
//!
//! Tests here share one process: none may set process-wide state itself (libgit2's options,
//! the environment, the working directory). `tests/git_object_cache.rs`, which checks the
//! libgit2 options `cli::main` sets, stays a binary of its own for that reason.

mod common;
mod git_support;
mod serve_support;
mod support_setup;
mod watch_support;

mod activate;
mod activate_kube_probes;
mod activate_probes;
mod appset_template;
mod architecture;
mod backup_multipart;
mod backup_teardown;
mod built_objects;
mod cli;
mod delivery;
mod generate;
mod generate_crash;
mod git_end_to_end;
mod git_locks;
mod git_refusals;
mod git_two_writers;
mod golden;
mod incremental;
mod invalid_registry;
mod lifecycle;
mod lifecycle_end_to_end;
mod metric_contract;
mod output_links;
mod plan;
mod registry_pipeline;
mod serve;
mod serve_answers;
mod serve_cli;
mod serve_crash;
mod serve_git;
mod serve_limits;
mod serve_load;
mod serve_reports;
mod setup_jobs;
mod setup_minio_admin;
mod setup_mysql;
mod setup_rabbitmq;
mod setup_s3;
mod validation;
mod watch;
mod watch_kill;
mod website_status;
