//! The registry: the single source of truth (platform, tiers, products, tenants): its file
//! [`layout`], [`model`], [`parse`]r, [`rules`] (the quota [`headroom`] rule apart) and the
//! consumers' rules on its [`values`].

pub mod headroom;
pub mod layout;
pub mod model;
pub mod parse;
pub mod rules;
pub mod values;

pub use layout::Sources;
pub use model::*;
pub use parse::{Loaded, load_sources};
