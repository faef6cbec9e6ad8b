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
}

pub fn run(args: Args) -> u8 {
    match pipeline::generate(&args.paths.paths(), args.now.get(), args.full) {
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
