//! `provisio generate`: render the registry into the output tree.

use crate::cli::EXIT_OK;
use crate::pipeline;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: super::PathArgs,
    #[command(flatten)]
    pub now: super::NowArg,
    /// Re-render every tenant and compare with the disk, ignoring the state file's hashes.
    #[arg(long)]
    pub full: bool,
    /// Allow removing more than `--max-delete-percent` of the tenants in one run.
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Share of the existing tenants one run may remove without --allow-mass-delete.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_delete_percent: u32,
}

pub fn run(args: Args) -> u8 {
    let opts = pipeline::GenerateOptions {
        now: args.now.get(),
        full: args.full,
        mass_delete: pipeline::MassDeleteGuard {
            max_percent: args.max_delete_percent,
            allow: args.allow_mass_delete,
        },
    };
    match pipeline::generate(&args.paths.paths(), &opts) {
        Ok(s) => {
            eprintln!(
                "generate: {} written, {} removed, {} unchanged ({} tenant(s) changed, {} removed)",
                s.written.len(),
                s.removed.len(),
                s.unchanged,
                s.tenants_changed.len(),
                s.tenants_removed.len()
            );
            EXIT_OK
        }
        Err(e) => super::report(&e),
    }
}
