//! Names to compile-time indices: each feature and dimension is looked up
//! in the manifest once, here, so that a check at run time is a bit test
//! and a record an array index. A name no product declares is an error,
//! with a suggestion when it looks like a typo.

use marketgate_manifest::Manifest;
use syn::{Expr, Path};

use super::collect::Gates;
use crate::args::{MeteredArgs, Name};
use crate::{errors, suggest};

/// The gates with every name resolved.
pub(super) struct Resolved {
    pub(super) features: Vec<Feature>,
    pub(super) dimensions: Vec<Dimension>,
    pub(super) on_denied: Option<Expr>,
    pub(super) krate: Option<Path>,
}

/// A required feature and its index in the manifest's feature list.
pub(super) struct Feature {
    pub(super) name: Name,
    pub(super) index: usize,
}

/// A metered dimension and its index in the manifest's dimension list.
pub(super) struct Dimension {
    pub(super) metered: MeteredArgs,
    pub(super) index: usize,
}

/// Resolves every name, reporting all unknown ones at once.
pub(super) fn resolve(gates: Gates, manifest: &Manifest) -> syn::Result<Resolved> {
    let mut errors = Vec::new();
    let mut features = Vec::new();
    for name in gates.features {
        match manifest.feature_index(&name.value) {
            Some(index) => features.push(Feature { name, index }),
            None => errors.push(unknown_name("feature", &name, &manifest.features, manifest)),
        }
    }
    let mut dimensions = Vec::new();
    for metered in gates.dimensions {
        match manifest.dimension_index(&metered.dimension.value) {
            Some(index) => dimensions.push(Dimension { metered, index }),
            None => errors.push(unknown_name(
                "dimension",
                &metered.dimension,
                &manifest.dimensions,
                manifest,
            )),
        }
    }
    errors::combine(errors)?;
    Ok(Resolved {
        features,
        dimensions,
        on_denied: gates.on_denied,
        krate: gates.krate,
    })
}

fn unknown_name(kind: &str, name: &Name, known: &[String], manifest: &Manifest) -> syn::Error {
    let hint = suggest::hint(kind, &name.value, known.iter().map(String::as_str));
    syn::Error::new(
        name.span,
        format!(
            "no product in {} has the {kind} `{}`; {hint}",
            manifest.display_path(),
            name.value
        ),
    )
}
