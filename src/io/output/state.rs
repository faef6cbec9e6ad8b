//! The state file `<out>/.provisio-state.json`: which registry inputs produced the output
//! (content fingerprints) and a hash of each tenant's written tree. It lets `generate` skip
//! tenants whose inputs did not change, so a no-op run renders nothing. Deterministic: no
//! times. Small: two hashes per tenant (~1.5 MB at 10,000 tenants).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use provisio_core::registry::layout::{
    PLATFORM_FILE, PRODUCTS_DIR, Sources, TENANTS_DIR, TIERS_FILE,
};
use provisio_core::render::Files;

pub const STATE_FILE: &str = ".provisio-state.json";
const FORMAT: u32 = 2;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format: u32,
    /// Fingerprint of what every tenant depends on: platform, tiers, products, provisio's
    /// version.
    pub shared: String,
    /// Tenant id → fingerprints of its input and of the tree written for it.
    pub tenants: BTreeMap<String, TenantState>,
    /// Hash of the `argocd/` files written.
    pub argocd: String,
    /// Hash of the `platform-out/` files written (absent without platform tools).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantState {
    /// SHA-256 of the tenant's registry file.
    pub input: String,
    /// [`tree_hash`] of the files written for the tenant.
    pub tree: String,
}

impl State {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("strings serialize");
        v.push(b'\n');
        v
    }

    /// `None` when unreadable or of another format: everything is then re-rendered and
    /// compared with the disk, which is always correct, only slower.
    pub fn from_bytes(bytes: &[u8]) -> Option<State> {
        serde_json::from_slice::<State>(bytes)
            .ok()
            .filter(|s| s.format == FORMAT)
    }

    pub fn empty(shared: &str) -> State {
        State {
            format: FORMAT,
            shared: shared.to_owned(),
            ..State::default()
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One hash over a set of files: their paths and contents, in path order.
pub fn tree_hash(files: &Files) -> String {
    let mut h = Sha256::new();
    for (path, bytes) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())
}

/// The input fingerprints of a registry: one for the shared files, one per tenant file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub shared: String,
    pub tenants: BTreeMap<String, String>,
}

/// The input fingerprints of `sources`. A tenant's is the SHA-256 of its file, combined with
/// its lifecycle phase label when `phase` names one: the phase changes with the clock alone
/// (a deletion date passing), so an unchanged file must still be rendered again then.
pub fn fingerprint(sources: &Sources, phase: impl Fn(&str) -> Option<&'static str>) -> Inputs {
    let mut shared = Sha256::new();
    shared.update(concat!("provisio ", env!("CARGO_PKG_VERSION"), "\0").as_bytes());
    let mut tenants = BTreeMap::new();
    let tenant_prefix = format!("{TENANTS_DIR}/");
    let products_prefix = format!("{PRODUCTS_DIR}/");
    for (path, text) in sources {
        if let Some(name) = path.strip_prefix(&tenant_prefix) {
            let id = name.strip_suffix(".yaml").unwrap_or(name);
            let file = sha256_hex(text.as_bytes());
            let input = match phase(id) {
                Some(label) => sha256_hex(format!("{file}\0{label}").as_bytes()),
                None => file,
            };
            tenants.insert(id.to_owned(), input);
        } else if path == PLATFORM_FILE || path == TIERS_FILE || path.starts_with(&products_prefix)
        {
            shared.update(path.as_bytes());
            shared.update([0]);
            shared.update(text.as_bytes());
            shared.update([0]);
        }
    }
    Inputs {
        shared: hex::encode(shared.finalize()),
        tenants,
    }
}
