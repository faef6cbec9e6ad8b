//! The registry: the single source of truth (platform, tiers, products, tenants), its model,
//! loading and rules.

pub mod load;
pub mod model;
pub mod rules;

pub use load::{Loaded, Sources, load_dir, load_sources, read_dir};
pub use model::*;
