//! Embedding the validated manifest as static data, and `#[marketgate::main]`.

use std::collections::BTreeSet;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{ItemFn, LitByteStr};

use crate::args::MainArgs;
use crate::expand::{
    load_manifest, outer_attrs, private_path, rebuild_tracking, run_body, u64_literal,
};
use crate::manifest::{Manifest, Pricing, Tier};

fn feature_set(p: &TokenStream, indices: &BTreeSet<usize>) -> TokenStream {
    let mut words = [0u64; crate::manifest::MAX_FEATURES / 64];
    for i in indices {
        words[i / 64] |= 1 << (i % 64);
    }
    let words = words.iter().map(|w| u64_literal(*w));
    quote!(#p::FeatureSet::__from_words([#(#words),*]))
}

/// An expression of type `&'static Catalog` for `manifest`.
pub(crate) fn catalog_expr(p: &TokenStream, manifest: &Manifest) -> TokenStream {
    let products = manifest.products.iter().map(|product| {
        let name = &product.name;
        let code = &product.code;
        let tier = match product.tier {
            Tier::Paid => quote!(#p::Tier::Paid),
            Tier::Free => quote!(#p::Tier::Free),
        };
        let pricing = match product.pricing {
            Pricing::Hourly => quote!(#p::Pricing::Hourly),
            Pricing::Monthly => quote!(#p::Pricing::Monthly),
            Pricing::Custom => quote!(#p::Pricing::Custom),
            Pricing::Contract => quote!(#p::Pricing::Contract),
        };
        let features = feature_set(p, &product.features);
        let mask = u64_literal(product.dimensions.iter().fold(0u64, |m, i| m | (1 << i)));
        let registration = match &product.key {
            Some((version, key)) => {
                let spki = LitByteStr::new(&key.spki, Span::call_site());
                let rsa = LitByteStr::new(&key.rsa, Span::call_site());
                quote!(::core::option::Option::Some(#p::RegistrationKey::__new(#version, #spki, #rsa)))
            }
            None => quote!(::core::option::Option::None),
        };
        let license = match &product.license {
            Some(l) => {
                let sku = &l.sku;
                let fp = &l.key_fingerprint;
                let base = feature_set(p, &l.base_features);
                let ents = l.entitlements.iter().map(|e| {
                    let name = &e.name;
                    let unit = &e.unit;
                    let value = match &e.value {
                        Some(v) => quote!(::core::option::Option::Some(#v)),
                        None => quote!(::core::option::Option::None),
                    };
                    let features = feature_set(p, &e.features);
                    quote!(#p::EntitlementSpec::__new(#name, #unit, #value, #features))
                });
                quote!(::core::option::Option::Some(#p::LicenseSpec::__new(#sku, #fp, #base, &[#(#ents),*])))
            }
            None => quote!(::core::option::Option::None),
        };
        quote! {
            #p::Product::__new(#name, #code, #tier, #pricing, #features, #mask, #registration, #license)
        }
    });
    let fingerprint = u64_literal(manifest.fingerprint);
    let path = manifest.display_path();
    let features = &manifest.features;
    let dimensions = &manifest.dimensions;
    let tracking = rebuild_tracking(&manifest.files);
    quote! {{
        #tracking
        static MARKETGATE_CATALOG: #p::Catalog = #p::Catalog::__new(
            #fingerprint,
            #path,
            &[#(#products),*],
            &[#(#features),*],
            &[#(#dimensions),*],
        );
        &MARKETGATE_CATALOG
    }}
}

/// `marketgate::catalog!()`.
pub(crate) fn catalog_macro(args: TokenStream) -> TokenStream {
    let result = MainArgs::parse(args).and_then(|args| {
        let manifest = load_manifest(Span::call_site())?;
        let p = private_path(args.krate.as_ref());
        Ok(catalog_expr(&p, &manifest))
    });
    result.unwrap_or_else(syn::Error::into_compile_error)
}

/// Whether another attribute on `main` is an async runtime's entry point.
fn has_runtime_attr(func: &ItemFn) -> bool {
    func.attrs.iter().any(|a| {
        let segments: Vec<String> = a
            .path()
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        segments.len() >= 2 && matches!(segments.last().map(String::as_str), Some("main" | "test"))
    })
}

/// `#[marketgate::main]`.
pub(crate) fn main_attr(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let mut out = syn::Error::new(
                Span::call_site(),
                "#[marketgate::main] applies to the program's `fn main`",
            )
            .into_compile_error();
            out.extend(item);
            return out;
        }
    };
    match expand_main(args, &mut func) {
        Ok(tokens) => tokens,
        Err(err) => {
            let mut out = err.into_compile_error();
            if func.sig.asyncness.is_some() && func.sig.ident == "main" {
                // The original would add "`main` is not allowed to be `async`".
                out.extend(quote!(
                    fn main() {}
                ));
            } else {
                out.extend(func.into_token_stream());
            }
            out
        }
    }
}

fn expand_main(args: TokenStream, func: &mut ItemFn) -> syn::Result<TokenStream> {
    let args = MainArgs::parse(args)?;
    if let Some(constness) = &func.sig.constness {
        return Err(syn::Error::new(
            constness.span,
            "#[marketgate::main] cannot be used on a `const fn`",
        ));
    }
    if func.sig.asyncness.is_some() && !has_runtime_attr(func) {
        return Err(syn::Error::new(
            func.sig.asyncness.map_or_else(Span::call_site, |a| a.span),
            "an `async fn main` needs an async runtime: put `#[tokio::main]` below \
             `#[marketgate::main]`",
        ));
    }
    let manifest = load_manifest(Span::call_site())?;
    let p = private_path(args.krate.as_ref());
    let catalog = catalog_expr(&p, &manifest);
    let guard = syn::Ident::new("marketgate_guard", Span::mixed_site());
    let result = syn::Ident::new("marketgate_result", Span::mixed_site());
    let run = run_body(func);
    let body = if func.sig.asyncness.is_some() {
        quote! {
            let #guard = #p::main_start(#catalog).await;
            let #result = #run;
            #p::main_finish(#guard).await;
            #result
        }
    } else {
        quote! {
            let #guard = #p::main_start_blocking(#catalog);
            #[allow(clippy::redundant_closure_call)]
            let #result = #run;
            #p::main_finish_blocking(#guard);
            #result
        }
    };
    outer_attrs(&mut func.attrs);
    let mut out = TokenStream::new();
    for attr in &func.attrs {
        attr.to_tokens(&mut out);
    }
    func.vis.to_tokens(&mut out);
    func.sig.to_tokens(&mut out);
    func.block
        .brace_token
        .surround(&mut out, |out| out.extend(body));
    Ok(out)
}
