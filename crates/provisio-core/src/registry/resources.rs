//! Kubernetes resource settings several registry files share (tiers, products, the platform
//! tools' environments): CPU and memory pairs and LimitRange specs, and [`Sp`], a value that
//! remembers where it was written. A leaf module: the other model modules use it.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A value that remembers where it was written in its registry file.
pub type Sp<T> = Spanned<T>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitRangeSpec {
    pub container: ContainerLimits,
    #[serde(default)]
    pub persistent_volume_claim: Option<StorageLimits>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerLimits {
    pub max: CpuMemory,
    pub min: CpuMemory,
    pub default: CpuMemory,
    pub default_request: CpuMemory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StorageLimits {
    pub max: Sp<String>,
    pub min: Sp<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CpuMemory {
    pub cpu: Sp<String>,
    pub memory: Sp<String>,
}
