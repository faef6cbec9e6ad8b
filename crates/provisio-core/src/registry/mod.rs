//! The registry: the single source of truth (platform, tiers, products, tenants, teams): its
//! file [`layout`], [`model`] (and the platform tools' [`tools`]), [`parse`]r and [`rules`]
//! (the quota [`headroom`] rule and the platform tools' [`tools_rules`] apart), and the
//! consumers' rules on its [`values`].

pub mod headroom;
pub mod layout;
pub mod lifecycle;
pub mod lifecycle_rules;
pub mod model;
pub mod parse;
pub mod release;
pub mod resources;
pub mod rules;
pub mod tools;
pub mod tools_rules;
pub mod values;

pub use layout::Sources;
pub use model::*;
pub use parse::{Loaded, load_sources};
pub use tools::*;
