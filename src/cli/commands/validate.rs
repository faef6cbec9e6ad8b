//! `provisio validate`: check the registry only; print every diagnostic.

use crate::cli::Exit;
use crate::ops::load::load;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry directory.
    #[arg(long, default_value = "registry")]
    pub registry: std::path::PathBuf,
}

pub fn run(args: Args) -> Exit {
    match load(&args.registry) {
        Ok((reg, _)) => {
            eprintln!(
                "validate: the registry is valid ({} tenants, {} products, {} tiers, {} regions, {} teams)",
                reg.tenants.len(),
                reg.products.len(),
                reg.tiers.len(),
                reg.platform.regions.len(),
                reg.teams.len()
            );
            Exit::Ok
        }
        Err(e) => super::report(&e),
    }
}
