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
const FORMAT: u32 = 4;

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
    /// [`tree_hash`] of the files written for the tenant ([`TreeSum`]).
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

/// One hash over a set of files ([`TreeSum`]), in hex.
pub fn tree_hash(files: &Files) -> String {
    tree_sum(files).hex()
}

/// [`TreeSum`] of a set of files.
pub fn tree_sum(files: &Files) -> TreeSum {
    files.iter().fold(TreeSum::default(), |sum, (path, bytes)| {
        sum.plus(&TreeSum::file(path, bytes))
    })
}

/// The hash of a set of files: the sum, modulo 2^256, of each file's SHA-256 over its path
/// and bytes (format 4; format 3 hashed the files in one stream). Because it is a sum, a
/// tree's hash follows from another's and the files that differ between them: a product
/// release re-hashes the two files it re-renders per tenant, not the 29 of the tree
/// ([`super::write::prepare_release`]). Equal sums of different trees need two sets of
/// SHA-256 values with the same sum: the state file is provisio's own record of what it
/// wrote, never an input an attacker chooses, and only equality with it is asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSum([u8; 32]);

impl TreeSum {
    /// One file's part: SHA-256 of its path, a NUL, its length (8 bytes, big-endian) and
    /// its bytes.
    pub fn file(path: &str, bytes: &[u8]) -> TreeSum {
        let mut h = Sha256::new();
        h.update(path.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
        TreeSum(h.finalize().into())
    }

    /// `self + other` modulo 2^256 (both big-endian).
    pub fn plus(self, other: &TreeSum) -> TreeSum {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in (0..32).rev() {
            let v = u16::from(self.0[i]) + u16::from(other.0[i]) + carry;
            out[i] = v as u8;
            carry = v >> 8;
        }
        TreeSum(out)
    }

    /// `self - other` modulo 2^256.
    pub fn minus(self, other: &TreeSum) -> TreeSum {
        let mut out = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut v = i16::from(self.0[i]) - i16::from(other.0[i]) - borrow;
            borrow = i16::from(v < 0);
            if v < 0 {
                v += 256;
            }
            out[i] = v as u8;
        }
        TreeSum(out)
    }

    /// A sum as [`TreeSum::hex`] wrote it.
    pub fn parse(hex: &str) -> Option<TreeSum> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(TreeSum(out))
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_hash_follows_from_another_by_the_files_that_differ() {
        let mut files = Files::new();
        for i in 0..40 {
            files.insert(format!("t/f{i}.yaml"), vec![i as u8; 100 + i]);
        }
        let before = tree_hash(&files);
        let old = files
            .insert("t/f7.yaml".into(), b"new bytes".to_vec())
            .unwrap();
        files.remove("t/f9.yaml");
        let after = tree_hash(&files);
        let derived = TreeSum::parse(&before)
            .unwrap()
            .minus(&TreeSum::file("t/f7.yaml", &old))
            .plus(&TreeSum::file("t/f7.yaml", b"new bytes"))
            .minus(&TreeSum::file("t/f9.yaml", &[9; 109]));
        assert_eq!(derived.hex(), after);
        assert_ne!(before, after);
        // Carries and borrows across every byte.
        let max = TreeSum([0xff; 32]);
        let one = TreeSum({
            let mut b = [0; 32];
            b[31] = 1;
            b
        });
        assert_eq!(max.plus(&one), TreeSum::default());
        assert_eq!(TreeSum::default().minus(&one), max);
        assert_eq!(max.plus(&max).minus(&max), max);
        // A path is part of a file's hash, and the order of the files is not.
        assert_ne!(TreeSum::file("a", b"x"), TreeSum::file("b", b"x"));
        assert_eq!(TreeSum::parse(&max.hex()), Some(max));
        assert_eq!(TreeSum::parse("zz"), None);
    }
}
