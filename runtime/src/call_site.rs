//! Every `#[entitled]` and `#[metered]` call site registers itself here, so
//! start-up can prove that the indices compiled into each crate agree with
//! the binary's catalog.
//!
//! A library and the binary that uses it may be compiled against different
//! copies of `Marketplace.toml`. Indices are positions in the sorted feature
//! and dimension lists, so a different manifest could silently move
//! `export` onto the bit of `sso`. Instead of trusting that, each call site
//! records the name and index it was compiled with, and start-up refuses to
//! run when any of them disagrees with the catalog.

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
    fingerprint: u64,
    manifest: &'static str,
    location: &'static str,
}

impl CallSite {
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(
        kind: SiteKind,
        name: &'static str,
        index: usize,
        fingerprint: u64,
        manifest: &'static str,
        location: &'static str,
    ) -> Self {
        CallSite {
            kind,
            name,
            index,
            fingerprint,
            manifest,
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

/// All call sites linked into this binary.
#[linkme::distributed_slice]
pub static CALL_SITES: [CallSite];

/// One or more call sites were compiled against another manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogMismatch {
    catalog_manifest: &'static str,
    sites: Vec<String>,
}

impl fmt::Display for CatalogMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} annotated function(s) were compiled against a Marketplace.toml that does not \
             match this binary's catalog ({}); build every crate against the same manifest \
             (set MARKETGATE_MANIFEST in the workspace's .cargo/config.toml): {}",
            self.sites.len(),
            self.catalog_manifest,
            self.sites.join("; ")
        )
    }
}

impl std::error::Error for CatalogMismatch {}

/// Checks every registered call site against `catalog`.
pub(crate) fn verify(catalog: &Catalog) -> Result<(), CatalogMismatch> {
    verify_sites(catalog, &CALL_SITES)
}

fn verify_sites(catalog: &Catalog, sites: &[CallSite]) -> Result<(), CatalogMismatch> {
    let bad: Vec<String> = sites
        .iter()
        .filter(|site| !site.agrees_with(catalog))
        .map(|site| {
            let kind = match site.kind {
                SiteKind::Feature => "feature",
                SiteKind::Dimension => "dimension",
            };
            let names = match site.kind {
                SiteKind::Feature => catalog.features(),
                SiteKind::Dimension => catalog.dimensions(),
            };
            let actual = names
                .get(site.index)
                .map_or_else(|| "nothing".to_owned(), |name| format!("`{name}`"));
            format!(
                "{} uses {kind} `{}` as index {} (manifest {}, fingerprint {:016x}) but the \
                 catalog has {actual} there",
                site.location, site.name, site.index, site.manifest, site.fingerprint
            )
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(CatalogMismatch {
            catalog_manifest: catalog.manifest_path(),
            sites: bad,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static CATALOG: Catalog = Catalog::__new(1, "Marketplace.toml", &[], &["a", "b"], &["d"]);

    #[test]
    fn agreeing_sites_pass_and_moved_indices_are_named() {
        let good = [
            CallSite::__new(SiteKind::Feature, "b", 1, 1, "m", "lib.rs:1"),
            CallSite::__new(SiteKind::Dimension, "d", 0, 1, "m", "lib.rs:2"),
        ];
        assert_eq!(verify_sites(&CATALOG, &good), Ok(()));

        let bad = [
            CallSite::__new(SiteKind::Feature, "b", 0, 2, "other.toml", "lib.rs:3"),
            CallSite::__new(SiteKind::Dimension, "e", 1, 2, "other.toml", "lib.rs:4"),
        ];
        let err = verify_sites(&CATALOG, &bad).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("2 annotated function(s)"), "{msg}");
        assert!(
            msg.contains("lib.rs:3 uses feature `b` as index 0"),
            "{msg}"
        );
        assert!(msg.contains("the catalog has `a` there"), "{msg}");
        assert!(
            msg.contains("lib.rs:4 uses dimension `e` as index 1"),
            "{msg}"
        );
        assert!(msg.contains("the catalog has nothing there"), "{msg}");
    }
}
