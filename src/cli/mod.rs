//! The command line: clap types stay in this module; each command lives in
//! `commands/<verb>.rs` (arguments → one operation → print) and returns an [`Exit`], which
//! [`main`] maps to the process status.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod commands;
pub mod exit;

pub use exit::Exit;

#[derive(Debug, Parser)]
#[command(
    name = "provisio",
    version,
    about = "Tenant provisioning for a multi-tenant SaaS, the GitOps way"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render the registry into `<out>/tenants-out/`, `<out>/platform-out/` and `<out>/argocd/`.
    Generate(commands::generate::Args),
    /// Exit 1 with a diff when the output on disk differs from what the registry renders.
    Check(commands::check::Args),
    /// Check the registry only.
    Validate(commands::validate::Args),
    /// Print what a registry change does to GitLab, Grafana, Artifactory and the team
    /// namespaces (losses first), compared with a base revision or directory.
    Plan(commands::plan::Args),
    /// Create or converge a tenant's databases, users, vhosts, queues or buckets (setup Jobs).
    Setup(commands::setup::Args),
    /// Remove them, for a tenant past its deletion date (run by hand; docs/registry.md).
    Teardown(commands::setup::Args),
    /// Receive the billing system's webhooks and the tenants' lifecycle reports; commit tenant files.
    Serve(commands::serve::Args),
    /// Regenerate on every registry change, commit and push the output, nudge Argo CD.
    Watch(commands::watch::Args),
    /// Remove a tenant that was never activated (no welcome email sent) through the ordered
    /// removal, without a backup: edits its tenant file for a person to commit.
    Rollback(commands::rollback::Args),
    /// Send one signed lifecycle report of a tenant to serve, as its Jobs do.
    Report(commands::report::Args),
    /// Set the tenant's website record to its status (the website-status Job).
    WebsiteStatus(commands::website_status::Args),
    /// Verify a step of a purging tenant's removal on the cluster, then report it (the
    /// purge-check and namespace-check Jobs).
    PurgeCheck(commands::purge_check::Args),
    /// Probe a provisioning tenant until healthy, register its website, send the welcome
    /// email once and report it active (the activate Job).
    Activate(commands::activate::Args),
    /// Archive a deprovisioning tenant's databases and buckets with a manifest, then report
    /// it (the backup Job).
    Backup(commands::backup::Args),
}

/// Parses the arguments, runs the command, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    crate::io::repo::before_threads();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Invalid
            } else {
                Exit::Ok
            }
            .into();
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROVISIO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    let exit = match cli.command {
        Command::Generate(a) => commands::generate::run(a),
        Command::Check(a) => commands::check::run(a),
        Command::Validate(a) => commands::validate::run(a),
        Command::Plan(a) => commands::plan::run(a),
        Command::Setup(a) => commands::setup::run(a),
        Command::Teardown(a) => commands::setup::run_teardown(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Watch(a) => commands::watch::run(a),
        Command::Rollback(a) => commands::rollback::run(a),
        Command::Report(a) => commands::report::run(a),
        Command::WebsiteStatus(a) => commands::website_status::run(a),
        Command::PurgeCheck(a) => commands::purge_check::run(a),
        Command::Activate(a) => commands::activate::run(a),
        Command::Backup(a) => commands::backup::run(a),
    };
    exit.into()
}
