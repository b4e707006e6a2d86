//! Every crate with `#[entitled]` or `#[metered]` functions registers the
//! feature and dimension lists it was compiled with, so start-up can prove
//! that the indices compiled into each crate agree with the binary's
//! catalog.
//!
//! A library and the binary that uses it may be compiled against different
//! copies of `Marketplace.toml`. Indices are positions in the sorted feature
//! and dimension lists, so a different manifest could silently move
//! `export` onto the bit of `sso`. Instead of trusting that, the first
//! annotated function the compiler expands in a crate registers a
//! [`CompiledManifest`] (one per crate: a registration per function cost
//! every function a static and its link-time machinery), and start-up
//! refuses to run when any index it knows names something else in the
//! catalog. Each function keeps a [`CallSite`] for explaining its denials.

use std::fmt;

use crate::catalog::Catalog;

/// Feature check or metered dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteKind {
    /// `#[entitled("name")]`.
    Feature,
    /// `#[metered(name)]`.
    Dimension,
}

/// What the macros compiled into one annotated function.
#[derive(Debug)]
pub struct CallSite {
    kind: SiteKind,
    name: &'static str,
    index: usize,
    location: &'static str,
}

impl CallSite {
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(
        kind: SiteKind,
        name: &'static str,
        index: usize,
        location: &'static str,
    ) -> Self {
        CallSite {
            kind,
            name,
            index,
            location,
        }
    }

    /// Feature or dimension.
    #[must_use]
    pub const fn kind(&self) -> SiteKind {
        self.kind
    }

    /// The feature or dimension name as written in the attribute.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The index compiled into the call site.
    #[must_use]
    pub const fn index(&self) -> usize {
        self.index
    }

    /// Source location (`file:line`).
    #[must_use]
    pub const fn location(&self) -> &'static str {
        self.location
    }

    /// Whether this call site agrees with `catalog`.
    #[must_use]
    pub fn agrees_with(&self, catalog: &Catalog) -> bool {
        let names = match self.kind {
            SiteKind::Feature => catalog.features(),
            SiteKind::Dimension => catalog.dimensions(),
        };
        names.get(self.index) == Some(&self.name)
    }
}

/// The manifest one crate's annotated functions were compiled against:
/// its feature and dimension names in index order.
#[derive(Debug)]
pub struct CompiledManifest {
    fingerprint: u64,
    manifest: &'static str,
    features: &'static [&'static str],
    dimensions: &'static [&'static str],
    location: &'static str,
}

impl CompiledManifest {
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(
        fingerprint: u64,
        manifest: &'static str,
        features: &'static [&'static str],
        dimensions: &'static [&'static str],
        location: &'static str,
    ) -> Self {
        CompiledManifest {
            fingerprint,
            manifest,
            features,
            dimensions,
            location,
        }
    }
}

/// One registration per crate with annotated functions linked into this
/// binary.
#[linkme::distributed_slice]
pub static COMPILED_MANIFESTS: [CompiledManifest];

/// One or more crates were compiled against another manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogMismatch {
    catalog_manifest: &'static str,
    indices: Vec<String>,
}

impl fmt::Display for CatalogMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "annotated functions were compiled against a Marketplace.toml that does not match \
             this binary's catalog ({}); build every crate against the same manifest (set \
             MARKETGATE_MANIFEST in the workspace's .cargo/config.toml): {}",
            self.catalog_manifest,
            self.indices.join("; ")
        )
    }
}

impl std::error::Error for CatalogMismatch {}

/// Checks every registered crate's manifest against `catalog`.
pub(crate) fn verify(catalog: &Catalog) -> Result<(), CatalogMismatch> {
    verify_manifests(catalog, &COMPILED_MANIFESTS)
}

/// Every index a crate was compiled with must name the same feature or
/// dimension in `catalog` (the catalog may have more after them).
fn verify_manifests(
    catalog: &Catalog,
    compiled: &[CompiledManifest],
) -> Result<(), CatalogMismatch> {
    let mut bad = Vec::new();
    for m in compiled {
        let lists = [
            ("feature", m.features, catalog.features()),
            ("dimension", m.dimensions, catalog.dimensions()),
        ];
        for (kind, theirs, ours) in lists {
            for (index, name) in theirs.iter().enumerate() {
                if ours.get(index) == Some(name) {
                    continue;
                }
                let actual = ours
                    .get(index)
                    .map_or_else(|| "nothing".to_owned(), |name| format!("`{name}`"));
                bad.push(format!(
                    "the crate of {} was compiled with {kind} `{name}` as index {index} \
                     (manifest {}, fingerprint {:016x}) but the catalog has {actual} there",
                    m.location, m.manifest, m.fingerprint
                ));
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(CatalogMismatch {
            catalog_manifest: catalog.manifest_path(),
            indices: bad,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static CATALOG: Catalog = Catalog::__new(1, "Marketplace.toml", &[], &["a", "b"], &["d"]);

    #[test]
    fn agreeing_manifests_pass_and_moved_indices_are_named() {
        let good = [
            CompiledManifest::__new(1, "m", &["a", "b"], &["d"], "lib.rs:1"),
            // A manifest with fewer names: every index it knows agrees.
            CompiledManifest::__new(3, "short.toml", &["a"], &[], "lib.rs:2"),
        ];
        assert_eq!(verify_manifests(&CATALOG, &good), Ok(()));

        let bad = [CompiledManifest::__new(
            2,
            "other.toml",
            &["b"],
            &["d", "e"],
            "lib.rs:3",
        )];
        let err = verify_manifests(&CATALOG, &bad).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("annotated functions were compiled"),
            "{msg}"
        );
        assert!(
            msg.contains("the crate of lib.rs:3 was compiled with feature `b` as index 0"),
            "{msg}"
        );
        assert!(msg.contains("the catalog has `a` there"), "{msg}");
        assert!(
            msg.contains("with dimension `e` as index 1 (manifest other.toml"),
            "{msg}"
        );
        assert!(msg.contains("the catalog has nothing there"), "{msg}");
        assert!(!msg.contains("dimension `d`"), "{msg}");
    }
}
