//! Code generation for `#[entitled]` and `#[metered]`.
//!
//! Both attributes on one function are expanded together, by whichever runs
//! first: all checks come before the quantity and the body, so a call
//! denied by either gate never counts, whatever the attribute order.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{AttrStyle, Attribute, Expr, ItemFn, Path, ReturnType, Type};

use crate::args::{CountOn, EntitledArgs, MeteredArgs, Name};
use crate::manifest::{self, Manifest};
use crate::suggest;

/// Which attribute is being expanded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Entitled,
    Metered,
}

impl Kind {
    fn attr(self) -> &'static str {
        match self {
            Kind::Entitled => "#[entitled]",
            Kind::Metered => "#[metered]",
        }
    }
}

struct Gates {
    features: Vec<Name>,
    dimensions: Vec<MeteredArgs>,
    on_denied: Option<Expr>,
    krate: Option<Path>,
}

/// Entry point shared by both attributes.
pub(crate) fn gate(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let err = syn::Error::new(
                Span::call_site(),
                format!("{} applies to a function with a body", kind.attr()),
            );
            let mut out = err.into_compile_error();
            out.extend(item);
            return out;
        }
    };
    match expand(kind, args, &mut func) {
        Ok(tokens) => tokens,
        Err(err) => {
            // Emit the function as written (minus our other attributes, which
            // would report the same problem again) so that call sites don't
            // cascade into unrelated errors.
            func.attrs.retain(|a| sibling_kind(a).is_none());
            let mut out = err.into_compile_error();
            out.extend(func.into_token_stream());
            out
        }
    }
}

/// Whether an attribute is one of ours, by its last path segment.
fn sibling_kind(attr: &Attribute) -> Option<Kind> {
    let last = attr.path().segments.last()?;
    if last.ident == "entitled" {
        Some(Kind::Entitled)
    } else if last.ident == "metered" {
        Some(Kind::Metered)
    } else {
        None
    }
}

fn attr_args(attr: &Attribute) -> TokenStream {
    match &attr.meta {
        syn::Meta::List(list) => list.tokens.clone(),
        syn::Meta::Path(_) | syn::Meta::NameValue(_) => TokenStream::new(),
    }
}

fn collect(kind: Kind, args: TokenStream, func: &mut ItemFn) -> syn::Result<Gates> {
    let mut gates = Gates {
        features: Vec::new(),
        dimensions: Vec::new(),
        on_denied: None,
        krate: None,
    };
    let mut errors: Vec<syn::Error> = Vec::new();
    let mut add = |kind: Kind, args: TokenStream, span: Span, gates: &mut Gates| {
        let common = match kind {
            Kind::Entitled => match EntitledArgs::parse(args, span) {
                Ok(a) => {
                    for f in a.features {
                        if gates.features.iter().any(|g| g.value == f.value) {
                            errors.push(syn::Error::new(
                                f.span,
                                format!("feature `{}` is required twice on this function", f.value),
                            ));
                        } else {
                            gates.features.push(f);
                        }
                    }
                    a.common
                }
                Err(e) => return errors.push(e),
            },
            Kind::Metered => match MeteredArgs::parse(args, span) {
                Ok(mut a) => {
                    let common = std::mem::take(&mut a.common);
                    if gates
                        .dimensions
                        .iter()
                        .any(|d| d.dimension.value == a.dimension.value)
                    {
                        errors.push(syn::Error::new(
                            a.dimension.span,
                            format!(
                                "dimension `{}` is metered twice on this function; use one \
                                 `#[metered]` with `quantity = ..`",
                                a.dimension.value
                            ),
                        ));
                    } else {
                        gates.dimensions.push(a);
                    }
                    common
                }
                Err(e) => return errors.push(e),
            },
        };
        if let Some(expr) = common.on_denied {
            if gates.on_denied.is_some() {
                errors.push(syn::Error::new(
                    expr.span(),
                    "`on_denied` is given on more than one attribute of this function; give it once",
                ));
            } else {
                gates.on_denied = Some(expr);
            }
        }
        if let Some(path) = common.krate {
            match &gates.krate {
                Some(existing)
                    if existing.to_token_stream().to_string()
                        != path.to_token_stream().to_string() =>
                {
                    errors.push(syn::Error::new(
                        path.span(),
                        "the attributes of this function name different `crate` paths",
                    ));
                }
                _ => gates.krate = Some(path),
            }
        }
    };
    add(kind, args, Span::call_site(), &mut gates);
    let mut kept = Vec::new();
    for attr in std::mem::take(&mut func.attrs) {
        match sibling_kind(&attr) {
            Some(kind) => add(kind, attr_args(&attr), attr.span(), &mut gates),
            None => kept.push(attr),
        }
    }
    func.attrs = kept;
    match errors.into_iter().reduce(|mut a, b| {
        a.combine(b);
        a
    }) {
        Some(e) => Err(e),
        None => Ok(gates),
    }
}

/// Loads the manifest, turning its problems into errors at `span`.
pub(crate) fn load_manifest(span: Span) -> syn::Result<Manifest> {
    manifest::load().map_err(|e| {
        e.messages
            .into_iter()
            .map(|m| syn::Error::new(span, m))
            .reduce(|mut a, b| {
                a.combine(b);
                a
            })
            .unwrap_or_else(|| syn::Error::new(span, "invalid Marketplace.toml"))
    })
}

fn unknown_name(kind: &str, name: &Name, known: &[String], manifest: &Manifest) -> syn::Error {
    let hint = match suggest::closest(&name.value, known.iter().map(String::as_str)) {
        Some(s) => format!("did you mean `{s}`?"),
        None if known.is_empty() => format!("it declares no {kind}s"),
        None => format!(
            "declared {kind}s: {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    syn::Error::new(
        name.span,
        format!(
            "no product in {} has the {kind} `{}`; {hint}",
            manifest.display_path(),
            name.value
        ),
    )
}

fn contains_impl_trait(ty: &Type) -> bool {
    fn walk(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|t| match t {
            TokenTree::Ident(i) => i == "impl",
            TokenTree::Group(g) => walk(g.stream()),
            TokenTree::Punct(_) | TokenTree::Literal(_) => false,
        })
    }
    walk(ty.to_token_stream())
}

/// Tokens that make the crate recompile when the manifest or a key changes,
/// or when `MARKETGATE_MANIFEST` is set differently.
pub(crate) fn rebuild_tracking(files: &[std::path::PathBuf]) -> TokenStream {
    let env = manifest::MANIFEST_ENV;
    let files = files
        .iter()
        .filter(|f| f.is_file())
        .map(|f| f.display().to_string());
    quote! {
        #(const _: &[u8] = ::core::include_bytes!(#files);)*
        const _: ::core::option::Option<&str> = ::core::option_env!(#env);
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

/// A `u64` literal that pedantic clippy finds readable.
pub(crate) fn u64_literal(value: u64) -> TokenStream {
    let hex = format!("{value:016x}");
    let grouped = hex
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("_");
    format!("0x{grouped}_u64")
        .parse()
        .unwrap_or_else(|_| quote!(#value))
}

/// The runtime's private module, honouring `crate = "..."`.
pub(crate) fn private_path(krate: Option<&Path>) -> TokenStream {
    match krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::marketgate::__private),
    }
}

/// Outer attributes for the function: inner ones (`#![..]` at the top of the
/// body) become outer, since the body moves into a closure.
pub(crate) fn outer_attrs(attrs: &mut [Attribute]) {
    for attr in attrs {
        attr.style = AttrStyle::Outer;
    }
}

/// Lints that fire on the fake return used as a type hint in async bodies.
pub(crate) fn type_hint(ret: &ReturnType) -> TokenStream {
    match ret {
        ReturnType::Type(_, ty) if !contains_impl_trait(ty) => quote! {
            #[allow(
                unknown_lints,
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::empty_loop,
                clippy::let_unit_value,
                clippy::let_with_type_underscore,
                clippy::needless_return,
                clippy::unreachable
            )]
            if false {
                let marketgate_type_hint: #ty = loop {};
                return marketgate_type_hint;
            }
        },
        _ => TokenStream::new(),
    }
}

/// Runs `block` so that `return` and `?` inside it come back here: in an
/// immediately called closure (sync) or an awaited `async` block.
pub(crate) fn run_body(func: &ItemFn) -> TokenStream {
    let block = &func.block;
    let stmts = &block.stmts;
    if func.sig.asyncness.is_some() {
        let hint = type_hint(&func.sig.output);
        quote!(async move { #hint #(#stmts)* }.await)
    } else {
        let annotation = match &func.sig.output {
            ReturnType::Type(arrow, ty) if !contains_impl_trait(ty) => quote!(#arrow #ty),
            ReturnType::Type(..) => TokenStream::new(),
            ReturnType::Default => quote!(-> ()),
        };
        quote!((move || #annotation #block)())
    }
}

#[allow(clippy::too_many_lines)] // one linear template
fn expand(kind: Kind, args: TokenStream, func: &mut ItemFn) -> syn::Result<TokenStream> {
    let gates = collect(kind, args, func)?;
    let attr = kind.attr();
    if let Some(constness) = &func.sig.constness {
        return Err(syn::Error::new(
            constness.span,
            format!(
                "{attr} cannot be used on a `const fn`: entitlement is only known at run time; \
                 remove `const`"
            ),
        ));
    }
    if matches!(func.sig.output, ReturnType::Default) && gates.on_denied.is_none() {
        return Err(syn::Error::new(
            func.sig.ident.span(),
            format!(
                "{attr} needs a way to refuse the call, but `{}` returns `()`: return \
                 `Result<T, E>` where `E: From<marketgate::Denied>`, or give the value to \
                 return when denied with `on_denied = <expr>`",
                func.sig.ident
            ),
        ));
    }
    let manifest = load_manifest(Span::call_site())?;

    let p = private_path(gates.krate.as_ref());
    let manifest_path = manifest.display_path();
    let fingerprint = u64_literal(manifest.fingerprint);
    let tracking = rebuild_tracking(&manifest.files);
    let ret_span = match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => func.sig.ident.span(),
    };

    let mut errors: Vec<syn::Error> = Vec::new();
    let mut sites = TokenStream::new();
    let mut checks = TokenStream::new();
    let mut site_number = 0usize;
    let mut next_site =
        |kind_tokens: TokenStream, name: &Name, index: usize, sites: &mut TokenStream| {
            let ident = format_ident!("MARKETGATE_SITE_{}", site_number);
            site_number += 1;
            let value = &name.value;
            sites.extend(quote! {
                #[#p::linkme::distributed_slice(#p::CALL_SITES)]
                #[linkme(crate = #p::linkme)]
                static #ident: #p::CallSite = #p::CallSite::__new(
                    #kind_tokens,
                    #value,
                    #index,
                    #fingerprint,
                    #manifest_path,
                    ::core::concat!(::core::file!(), ":", ::core::line!()),
                );
            });
            ident
        };
    // Spanned at the return type, so a type that cannot carry the denial
    // is reported there.
    let deny = |site: &syn::Ident| match &gates.on_denied {
        Some(expr) => quote!(#expr),
        None => respan(quote!(#p::deny(#p::explain(&#site))), ret_span),
    };

    for feature in &gates.features {
        let Some(index) = manifest.feature_index(&feature.value) else {
            errors.push(unknown_name(
                "feature",
                feature,
                &manifest.features,
                &manifest,
            ));
            continue;
        };
        let site = next_site(quote!(#p::SiteKind::Feature), feature, index, &mut sites);
        let denial = deny(&site);
        checks.extend(quote! {
            #[allow(clippy::unused_unit)]
            if !#p::feature_granted(#index) {
                return #denial;
            }
        });
    }
    let mut quantities = TokenStream::new();
    let mut record_on_call = TokenStream::new();
    let mut record_after = TokenStream::new();
    let mut record_on_return = TokenStream::new();
    for (n, dim) in gates.dimensions.iter().enumerate() {
        let Some(index) = manifest.dimension_index(&dim.dimension.value) else {
            errors.push(unknown_name(
                "dimension",
                &dim.dimension,
                &manifest.dimensions,
                &manifest,
            ));
            continue;
        };
        let site = next_site(
            quote!(#p::SiteKind::Dimension),
            &dim.dimension,
            index,
            &mut sites,
        );
        let denial = deny(&site);
        checks.extend(quote! {
            #[allow(clippy::unused_unit)]
            if !#p::dimension_enabled(#index) {
                return #denial;
            }
        });
        let quantity = match &dim.quantity {
            Some(expr) => {
                let var = format_ident!("marketgate_quantity_{}", n, span = Span::mixed_site());
                quantities.extend(quote_spanned! {expr.span()=>
                    let #var: u64 = #p::quantity(#expr);
                });
                quote!(#var)
            }
            None => quote!(1),
        };
        let record = match &dim.tags {
            Some(expr) => {
                let var = format_ident!("marketgate_tags_{}", n, span = Span::mixed_site());
                quantities.extend(quote_spanned! {expr.span()=>
                    let #var = #p::tags(#expr);
                });
                quote!(#p::record_tagged(#index, #quantity, #var);)
            }
            None => quote!(#p::record(#index, #quantity);),
        };
        match dim.on {
            CountOn::Call => record_on_call.extend(record),
            CountOn::Success => record_after.extend(record),
            CountOn::Return => record_on_return.extend(record),
        }
    }
    if let Some(e) = errors.into_iter().reduce(|mut a, b| {
        a.combine(b);
        a
    }) {
        return Err(e);
    }

    outer_attrs(&mut func.attrs);
    let body = if record_after.is_empty() && record_on_return.is_empty() {
        // Nothing to observe after the body: run it in place, no closure.
        let block = &func.block;
        quote! {
            #quantities
            #record_on_call
            #block
        }
    } else {
        let result = syn::Ident::new("marketgate_result", Span::mixed_site());
        let run = run_body(func);
        let after = if record_after.is_empty() {
            TokenStream::new()
        } else {
            quote! {
                if {
                    #[allow(unused_imports)]
                    use #p::{AnyOutcome as _, ResultOutcome as _};
                    (&#p::Outcome(&#result)).succeeded()
                } {
                    #record_after
                }
            }
        };
        quote! {
            #quantities
            #record_on_call
            #[allow(clippy::redundant_closure_call)]
            let #result = #run;
            #record_on_return
            #after
            #result
        }
    };
    let attrs = &func.attrs;
    let vis = &func.vis;
    let sig = &func.sig;
    let brace = func.block.brace_token;
    let mut out = TokenStream::new();
    for attr in attrs {
        attr.to_tokens(&mut out);
    }
    vis.to_tokens(&mut out);
    sig.to_tokens(&mut out);
    // Reuse the body's braces so spans (and lints such as dead_code) stay the user's.
    brace.surround(&mut out, |out| {
        out.extend(quote! {
            #tracking
            #sites
            #checks
            #body
        });
    });
    Ok(out)
}
