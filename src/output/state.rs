//! The state file `<out>/.provisio-state.json`: which registry inputs produced the output
//! (content hashes) and the hash of every file written. It lets `generate` skip tenants whose
//! inputs did not change and rewrite nothing that is already right. Deterministic: no times.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::registry::load::{PLATFORM_FILE, PRODUCTS_DIR, Sources, TENANTS_DIR, TIERS_FILE};

pub const STATE_FILE: &str = ".provisio-state.json";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format: u32,
    /// Hash of everything every tenant depends on: platform, tiers, products, provisio's
    /// version.
    pub shared: String,
    /// Tenant id → hash of its registry file.
    pub tenants: BTreeMap<String, String>,
    /// Output-relative path → SHA-256 of the bytes written.
    pub files: BTreeMap<String, String>,
}

impl State {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("strings serialize");
        v.push(b'\n');
        v
    }

    /// `None` when absent, unreadable or of another format: everything is then re-rendered
    /// and compared with the disk, which is always correct, only slower.
    pub fn from_bytes(bytes: &[u8]) -> Option<State> {
        serde_json::from_slice::<State>(bytes)
            .ok()
            .filter(|s| s.format == FORMAT)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The input fingerprints of a registry: one for the shared files, one per tenant file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub shared: String,
    pub tenants: BTreeMap<String, String>,
}

pub fn fingerprint(sources: &Sources) -> Inputs {
    let mut shared = Sha256::new();
    shared.update(concat!("provisio ", env!("CARGO_PKG_VERSION"), "\0").as_bytes());
    let mut tenants = BTreeMap::new();
    let tenant_prefix = format!("{TENANTS_DIR}/");
    for (path, text) in sources {
        if let Some(name) = path.strip_prefix(&tenant_prefix) {
            let id = name.strip_suffix(".yaml").unwrap_or(name);
            tenants.insert(id.to_owned(), sha256_hex(text.as_bytes()));
        } else if path == PLATFORM_FILE
            || path == TIERS_FILE
            || path.starts_with(&format!("{PRODUCTS_DIR}/"))
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

impl State {
    pub fn new(inputs: &Inputs, files: BTreeMap<String, String>) -> State {
        State {
            format: FORMAT,
            shared: inputs.shared.clone(),
            tenants: inputs.tenants.clone(),
            files,
        }
    }
}
