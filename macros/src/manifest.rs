//! The seller's `Marketplace.toml` as the macros see it. Finding, parsing
//! and checking it is `marketgate-manifest`'s job (shared with
//! `marketgate-sim check-manifest`); here its problems become compile errors, and
//! the files it was read from become inputs of the crate being compiled.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use marketgate_manifest::{MANIFEST_ENV, Manifest};
use proc_macro2::{Span, TokenStream};
use quote::quote;

use crate::errors;

/// Loads the manifest, turning each of its problems into an error at `span`.
/// Parsed once per compiler process while its files are unchanged
/// (`load_cached`): every annotated function needs it.
pub(crate) fn load(span: Span) -> syn::Result<Arc<Manifest>> {
    marketgate_manifest::load_cached().map_err(|e| {
        let errors = e.messages.into_iter().map(|m| syn::Error::new(span, m));
        errors::combine(errors)
            .err()
            .unwrap_or_else(|| syn::Error::new(span, "invalid Marketplace.toml"))
    })
}

/// Items that make the crate recompile when the manifest or a key file
/// changes (`include_bytes!` makes them inputs), or when
/// `MARKETGATE_MANIFEST` is set differently (`option_env!` tracks it).
pub(crate) fn rebuild_tracking(files: &[PathBuf]) -> TokenStream {
    let files = files
        .iter()
        .filter(|f| f.is_file())
        .map(|f| f.display().to_string());
    quote! {
        #(const _: &[u8] = ::core::include_bytes!(#files);)*
        const _: ::core::option::Option<&str> = ::core::option_env!(#MANIFEST_ENV);
    }
}

/// Whether this is the first gate the compiler expands, in this process,
/// in the crate being compiled against `manifest`.
///
/// What must be in a crate once (the `include_bytes!` that make the
/// manifest and keys inputs of the crate, and the crate's registration of
/// its indices) then comes from the first expansion only: one compiler
/// process compiles one crate, and every expansion's output is part of it.
/// Keyed by crate and manifest as well, for processes that expand for many
/// crates (an IDE's), where the output is never linked.
pub(crate) fn first_in_crate(manifest: &Manifest) -> bool {
    static SEEN: Mutex<BTreeSet<(String, String, PathBuf, u64)>> = Mutex::new(BTreeSet::new());
    let var = |name| std::env::var(name).unwrap_or_default();
    let key = (
        var("CARGO_MANIFEST_DIR"),
        var("CARGO_CRATE_NAME"),
        manifest.files.first().cloned().unwrap_or_default(),
        manifest.fingerprint,
    );
    SEEN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key)
}
