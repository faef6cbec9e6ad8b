//! The command line: clap types stay here; each command lives in `commands/<verb>.rs` and
//! calls into the pipeline modules.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod commands;

/// Exit codes: 0 ok, 1 drift found (check), 2 invalid input or usage.
pub const EXIT_OK: u8 = 0;
pub const EXIT_DRIFT: u8 = 1;
pub const EXIT_INVALID: u8 = 2;

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
    /// Render the registry into `<out>/tenants-out/` and `<out>/argocd/`.
    Generate(commands::generate::Args),
    /// Exit 1 with a diff when the output on disk differs from what the registry renders.
    Check(commands::check::Args),
    /// Check the registry only.
    Validate(commands::validate::Args),
    /// Create or converge a tenant's databases, users, vhosts, queues or buckets (setup Jobs).
    Setup(commands::setup::Args),
    /// Remove them, for a tenant past its deletion date (PostDelete Jobs).
    Teardown(commands::setup::Args),
    /// Receive the billing system's subscription webhooks and commit tenant files.
    Serve(commands::serve::Args),
    /// Regenerate on every registry change, commit and push the output, nudge Argo CD.
    Watch(commands::watch::Args),
}

/// Parses the arguments, runs the command, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                EXIT_INVALID
            } else {
                EXIT_OK
            });
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
    let code = match cli.command {
        Command::Generate(a) => commands::generate::run(a),
        Command::Check(a) => commands::check::run(a),
        Command::Validate(a) => commands::validate::run(a),
        Command::Setup(a) => commands::setup::run(a),
        Command::Teardown(a) => commands::setup::run_teardown(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Watch(a) => commands::watch::run(a),
    };
    ExitCode::from(code)
}
