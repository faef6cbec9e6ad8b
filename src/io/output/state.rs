//! The state file `<out>/.provisio-state.json`: which registry inputs produced the output
//! (content fingerprints) and a hash of each tenant's written tree. It lets `generate` skip
//! tenants whose inputs did not change, so a no-op run renders nothing, and re-render only
//! the files a product's version reaches when nothing but versions changed. Deterministic:
//! no times. Small: two hashes per tenant (~1.5 MB at 10,000 tenants).
//!
//! What a tenant's tree is rendered from, as recorded here: the shared inputs (platform,
//! tiers, every product file with its version token cut out: [`State::shared`]), each
//! product's version token ([`State::versions`]), and the tenant's own file and phase
//! ([`TenantState::input`]). Every tenant of a state was rendered from the same shared inputs
//! and versions (a run re-renders every tenant whose inputs moved).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use provisio_core::registry::Registry;
use provisio_core::registry::layout::{
    PLATFORM_FILE, PRODUCTS_DIR, Sources, TENANTS_DIR, TIERS_FILE,
};
use provisio_core::registry::release::split_version;
use provisio_core::render::Files;

pub const STATE_FILE: &str = ".provisio-state.json";
const FORMAT: u32 = 3;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format: u32,
    /// Fingerprint of what every tenant depends on: platform, tiers, products (each without
    /// the version token of [`State::versions`]), provisio's version.
    pub shared: String,
    /// Product → the token of its `version` in its file, for the products whose version is
    /// fingerprinted apart ([`provisio_core::registry::release::split_version`]). A change
    /// here alone reaches only `deployments/<product>.yaml` and `jobs.yaml` of each tree.
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
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

    pub fn empty(inputs: &Inputs) -> State {
        State {
            format: FORMAT,
            shared: inputs.shared.clone(),
            versions: inputs.versions.clone(),
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
    /// Product → its version token (see [`State::versions`]).
    pub versions: BTreeMap<String, String>,
    pub tenants: BTreeMap<String, String>,
}

impl Inputs {
    /// The products whose version token differs from `recorded`'s, when the shared inputs are
    /// the same (otherwise every file may differ and this says nothing).
    pub fn released_since(&self, recorded: &State) -> BTreeSet<String> {
        let names: BTreeSet<&String> = self
            .versions
            .keys()
            .chain(recorded.versions.keys())
            .collect();
        names
            .into_iter()
            .filter(|p| self.versions.get(*p) != recorded.versions.get(*p))
            .cloned()
            .collect()
    }
}

/// The input fingerprints of `sources` (`reg` is what they parsed into). A tenant's is the
/// SHA-256 of its file, combined with its lifecycle phase label when `phase` names one: the
/// phase changes with the clock alone (a deletion date passing), so an unchanged file must
/// still be rendered again then. A product file's version token is kept apart from the shared
/// fingerprint when [`split_version`] can cut it out exactly; otherwise the whole file is in
/// the shared fingerprint.
pub fn fingerprint(
    sources: &Sources,
    reg: &Registry,
    phase: impl Fn(&str) -> Option<&'static str>,
) -> Inputs {
    let mut shared = Sha256::new();
    shared.update(concat!("provisio ", env!("CARGO_PKG_VERSION"), "\0").as_bytes());
    let mut tenants = BTreeMap::new();
    let mut versions = BTreeMap::new();
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
        } else if let Some(name) = path.strip_prefix(&products_prefix) {
            let name = name.strip_suffix(".yaml").unwrap_or(name);
            let cut = reg.products.get(name).and_then(|p| split_version(text, p));
            shared.update(path.as_bytes());
            shared.update([0]);
            match cut {
                Some((before, token, after)) => {
                    // Tagged so a cut file never fingerprints like a whole one.
                    shared.update(b"cut\0");
                    shared.update(before.as_bytes());
                    shared.update([0]);
                    shared.update(after.as_bytes());
                    versions.insert(name.to_owned(), token.to_owned());
                }
                None => {
                    shared.update(b"whole\0");
                    shared.update(text.as_bytes());
                }
            }
            shared.update([0]);
        } else if path == PLATFORM_FILE || path == TIERS_FILE {
            shared.update(path.as_bytes());
            shared.update([0]);
            shared.update(text.as_bytes());
            shared.update([0]);
        }
    }
    Inputs {
        shared: hex::encode(shared.finalize()),
        versions,
        tenants,
    }
}
