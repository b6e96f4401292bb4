//! What identifies an installed dependency set, and the package.json that
//! installs it. Content-addressed: the same image (by id, so a rebuilt tag
//! gets a fresh set), registry and dependencies always give the same key,
//! whatever order the dependencies were listed in.

use std::collections::BTreeMap;
use std::fmt;

use dynamic_mcp_proto::v1::Dependency;
use sha2::{Digest, Sha256};

use crate::container::hardening::DEPS_DIR;

/// The sha256 of an (image, registry, dependencies) triple, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DepsKey(String);

impl DepsKey {
    pub fn new(image_id: &str, registry: Option<&str>, dependencies: &[Dependency]) -> Self {
        let mut hash = Sha256::new();
        // NUL-separated fields: no value can run into the next one.
        for field in ["dynamic-mcp deps v1", image_id, registry.unwrap_or("")] {
            hash.update(field.as_bytes());
            hash.update([0]);
        }
        for (name, version) in normalized(dependencies) {
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(version.as_bytes());
            hash.update([0]);
        }
        Self(format!("{:x}", hash.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the set's packages are inside a container that mounts the cache.
    pub fn node_modules(&self) -> String {
        format!("{DEPS_DIR}/{}/node_modules", self.0)
    }
}

impl fmt::Display for DepsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The package.json npm installs from: only the dependencies, sorted.
pub fn manifest(dependencies: &[Dependency]) -> Vec<u8> {
    let manifest = serde_json::json!({
        "name": "dynamic-mcp-deps",
        "private": true,
        "dependencies": normalized(dependencies),
    });
    serde_json::to_vec_pretty(&manifest).unwrap_or_default()
}

fn normalized(dependencies: &[Dependency]) -> BTreeMap<&str, &str> {
    dependencies.iter().map(|d| (d.name.trim(), d.version.trim())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(name: &str, version: &str) -> Dependency {
        Dependency {
            name: name.into(),
            version: version.into(),
        }
    }

    #[test]
    fn order_and_spacing_do_not_change_the_key() {
        let a = DepsKey::new("sha256:1", None, &[dep("a", "^1"), dep("b", "2")]);
        let b = DepsKey::new("sha256:1", None, &[dep(" b", "2 "), dep("a", "^1")]);
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 64);
        assert_eq!(a.node_modules(), format!("/deps/{a}/node_modules"));
    }

    #[test]
    fn image_registry_and_versions_change_the_key() {
        let base = DepsKey::new("sha256:1", None, &[dep("a", "^1")]);
        assert_ne!(base, DepsKey::new("sha256:2", None, &[dep("a", "^1")]));
        assert_ne!(base, DepsKey::new("sha256:1", Some("https://r"), &[dep("a", "^1")]));
        assert_ne!(base, DepsKey::new("sha256:1", None, &[dep("a", "^2")]));
        assert_ne!(
            DepsKey::new("i", None, &[dep("ab", "1")]),
            DepsKey::new("i", None, &[dep("a", "b1")])
        );
    }

    #[test]
    fn the_manifest_lists_only_the_dependencies() {
        let json: serde_json::Value =
            serde_json::from_slice(&manifest(&[dep("is-number", "^7.0.0"), dep("@a/b", "1")])).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "dynamic-mcp-deps",
                "private": true,
                "dependencies": {"@a/b": "1", "is-number": "^7.0.0"}
            })
        );
    }
}
