//! The wrapped function: the checks, then the quantities, the body and the
//! records, in the body's own braces. When nothing counts after the body
//! (`#[entitled]` alone, `on = call`) the body runs in place; otherwise in
//! a closure or an `async` block, so that every return is observed.
//!
//! ```text
//! fn f(..) -> R {
//!     <manifest tracking, crate registration: first expansion in the crate only>
//!     <one call-site static per gate>
//!     if !feature_granted(i) { return <denial>; }      // every #[entitled] feature
//!     if !dimension_enabled(j) { return <denial>; }    // every #[metered] dimension
//!     let q = quantity(..);                             // once admitted
//!     record(j, q);                                     // on = call
//!     let result = <body>;                              // on = success | return
//!     record(j, q);                                     // on = return
//!     if <result succeeded> { record(j, q); }           // on = success
//!     result
//! }
//! ```

use marketgate_manifest::Manifest;
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, ReturnType};

use super::quantity;
use super::resolve::Resolved;
use crate::args::{CountOn, MeteredArgs, Name};
use crate::literal::u64_literal;
use crate::{crate_path, function, manifest};

/// The function `func` gated by `gates`, compiled against `manifest`.
pub(super) fn emit(gates: &Resolved, manifest: &Manifest, func: &mut ItemFn) -> TokenStream {
    let p = crate_path::private(gates.krate.as_ref());
    // Once per crate: what makes it rebuild when the manifest changes, and
    // the registration start-up checks the crate's indices with.
    let once = if manifest::first_in_crate(manifest) {
        let tracking = manifest::rebuild_tracking(&manifest.files);
        let registration = registration(&p, manifest);
        quote!(#tracking #registration)
    } else {
        TokenStream::new()
    };
    let mut sites = Sites::new(&p);
    let denial = Denial::new(&p, gates, func);

    let mut checks = TokenStream::new();
    for feature in &gates.features {
        let site = sites.add(&quote!(#p::SiteKind::Feature), &feature.name, feature.index);
        let index = feature.index;
        let deny = denial.value(&site);
        checks.extend(quote! {
            #[allow(clippy::unused_unit)]
            if !#p::feature_granted(#index) {
                return #deny;
            }
        });
    }
    let mut records = Records::default();
    for (n, dimension) in gates.dimensions.iter().enumerate() {
        let index = dimension.index;
        let site = sites.add(
            &quote!(#p::SiteKind::Dimension),
            &dimension.metered.dimension,
            index,
        );
        let deny = denial.value(&site);
        checks.extend(quote! {
            #[allow(clippy::unused_unit)]
            if !#p::dimension_enabled(#index) {
                return #deny;
            }
        });
        records.add(&p, n, index, &dimension.metered);
    }

    function::outer_attrs(&mut func.attrs);
    let body = records.around_body(&p, func);
    let sites = sites.tokens;
    function::with_body(
        func,
        quote! {
            #once
            #sites
            #checks
            #body
        },
    )
}

/// The crate's [`CompiledManifest`](marketgate::__private::CompiledManifest):
/// the manifest's feature and dimension names in index order.
pub(crate) fn registration(p: &TokenStream, manifest: &Manifest) -> TokenStream {
    let fingerprint = u64_literal(manifest.fingerprint);
    let path = manifest.display_path();
    let features = &manifest.features;
    let dimensions = &manifest.dimensions;
    quote! {
        #[#p::linkme::distributed_slice(#p::COMPILED_MANIFESTS)]
        #[linkme(crate = #p::linkme)]
        static MARKETGATE_COMPILED_MANIFEST: #p::CompiledManifest = #p::CompiledManifest::__new(
            #fingerprint,
            #path,
            &[#(#features),*],
            &[#(#dimensions),*],
            ::core::concat!(::core::module_path!(), " (", ::core::file!(), ":", ::core::line!(), ")"),
        );
    }
}

/// The call sites, one `static` per gate: what a denial explains itself
/// with.
struct Sites<'a> {
    p: &'a TokenStream,
    tokens: TokenStream,
    count: usize,
}

impl<'a> Sites<'a> {
    fn new(p: &'a TokenStream) -> Self {
        Sites {
            p,
            tokens: TokenStream::new(),
            count: 0,
        }
    }

    /// Adds the site of `name` (a feature or dimension, by `kind`) and
    /// returns the name of its static.
    fn add(&mut self, kind: &TokenStream, name: &Name, index: usize) -> Ident {
        let p = self.p;
        let ident = format_ident!("MARKETGATE_SITE_{}", self.count);
        self.count += 1;
        let value = &name.value;
        self.tokens.extend(quote! {
            static #ident: #p::CallSite = #p::CallSite::__new(
                #kind,
                #value,
                #index,
                ::core::concat!(::core::file!(), ":", ::core::line!()),
            );
        });
        ident
    }
}

/// What a denied call returns.
struct Denial<'a> {
    p: &'a TokenStream,
    on_denied: Option<&'a syn::Expr>,
    ret_span: Span,
}

impl<'a> Denial<'a> {
    fn new(p: &'a TokenStream, gates: &'a Resolved, func: &ItemFn) -> Self {
        let ret_span = match &func.sig.output {
            ReturnType::Type(_, ty) => ty.span(),
            ReturnType::Default => func.sig.ident.span(),
        };
        Denial {
            p,
            on_denied: gates.on_denied.as_ref(),
            ret_span,
        }
    }

    /// `on_denied`'s value, or the denial explained by `site` converted to
    /// the return type. The conversion is spanned at the return type, so a
    /// type that cannot carry a denial is reported there.
    fn value(&self, site: &Ident) -> TokenStream {
        let p = self.p;
        match self.on_denied {
            Some(expr) => quote!(#expr),
            None => respan(quote!(#p::deny(#p::explain(&#site))), self.ret_span),
        }
    }
}

/// The quantities and the records, grouped by when they count.
#[derive(Default)]
struct Records {
    quantities: TokenStream,
    on_call: TokenStream,
    on_success: TokenStream,
    on_return: TokenStream,
}

impl Records {
    /// Adds the `n`th metered dimension, at `index`.
    fn add(&mut self, p: &TokenStream, n: usize, index: usize, metered: &MeteredArgs) {
        let quantity = match &metered.quantity {
            Some(expr) => {
                let var = format_ident!("marketgate_quantity_{}", n, span = Span::mixed_site());
                self.quantities
                    .extend(quantity::let_quantity(p, &var, expr));
                quote!(#var)
            }
            None => quote!(1),
        };
        let record = match &metered.tags {
            Some(expr) => {
                let var = format_ident!("marketgate_tags_{}", n, span = Span::mixed_site());
                self.quantities.extend(quote_spanned! {expr.span()=>
                    let #var = #p::tags(#expr);
                });
                quote!(#p::record_tagged(#index, #quantity, #var);)
            }
            None => quote!(#p::record(#index, #quantity);),
        };
        match metered.on {
            CountOn::Call => self.on_call.extend(record),
            CountOn::Success => self.on_success.extend(record),
            CountOn::Return => self.on_return.extend(record),
        }
    }

    /// The quantities, the body, and the records around it.
    fn around_body(self, p: &TokenStream, func: &ItemFn) -> TokenStream {
        let Records {
            quantities,
            on_call,
            on_success,
            on_return,
        } = self;
        if on_success.is_empty() && on_return.is_empty() {
            // Nothing to observe after the body: run it in place, no closure.
            let block = function::body_in_place(func);
            return quote! {
                #quantities
                #on_call
                #block
            };
        }
        let result = Ident::new("marketgate_result", Span::mixed_site());
        let run = function::run_body(func);
        let after = if on_success.is_empty() {
            TokenStream::new()
        } else {
            quote! {
                if {
                    #[allow(unused_imports)]
                    use #p::{AnyOutcome as _, ResultOutcome as _};
                    (&#p::Outcome(&#result)).succeeded()
                } {
                    #on_success
                }
            }
        };
        quote! {
            #quantities
            #on_call
            #[allow(clippy::redundant_closure_call)]
            let #result = #run;
            #on_return
            #after
            #result
        }
    }
}

/// `tokens` with every span replaced by `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}
