//! Where the `marketgate` crate is: `::marketgate` unless a re-exporter or
//! a renamed dependency says otherwise with `crate = "path"`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Expr, LitStr, Path};

/// The value of a `crate = "..."` option, as a path.
pub(crate) fn parse(value: &Expr) -> syn::Result<Path> {
    let lit = match value {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => s.clone(),
        other => {
            return Err(syn::Error::new(
                other.span(),
                "expected a string literal for `crate`, e.g. `crate = \"my_marketgate\"`",
            ));
        }
    };
    lit.parse::<Path>().map_err(|_| not_a_path(&lit))
}

fn not_a_path(lit: &LitStr) -> syn::Error {
    syn::Error::new(
        lit.span(),
        "`crate` must name a path to the marketgate crate, e.g. `crate = \"my_marketgate\"`",
    )
}

/// The runtime's support module for generated code (`__private`), under
/// the crate path given by `crate = "..."` if any. Absolute, so a local
/// item named `marketgate` cannot capture it.
pub(crate) fn private(krate: Option<&Path>) -> TokenStream {
    match krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::marketgate::__private),
    }
}
