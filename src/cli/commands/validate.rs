//! `provisio validate`: check the registry only; print every diagnostic.

use crate::cli::EXIT_OK;
use crate::ops::generate as pipeline;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry directory.
    #[arg(long, default_value = "registry")]
    pub registry: std::path::PathBuf,
}

pub fn run(args: Args) -> u8 {
    match pipeline::load(&args.registry) {
        Ok((reg, _)) => {
            eprintln!(
                "validate: the registry is valid ({} tenants, {} products, {} tiers, {} regions)",
                reg.tenants.len(),
                reg.products.len(),
                reg.tiers.len(),
                reg.platform.regions.len()
            );
            EXIT_OK
        }
        Err(e) => super::report(&e),
    }
}
