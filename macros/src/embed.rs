//! The catalog as static data: the validated manifest written out as a
//! `static` `marketgate::Catalog`, for `catalog!()` and `#[marketgate::main]`.

use std::collections::BTreeSet;

use marketgate_manifest::{MAX_FEATURES, Manifest, Pricing, Product, Tier, UnitModel};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::LitByteStr;

use crate::args::MainArgs;
use crate::literal::u64_literal;
use crate::{crate_path, manifest};

/// `marketgate::catalog!()`.
pub(crate) fn catalog(args: TokenStream) -> TokenStream {
    let result = MainArgs::parse(args).and_then(|args| {
        let manifest = manifest::load(Span::call_site())?;
        let p = crate_path::private(args.krate.as_ref());
        Ok(catalog_expr(&p, &manifest))
    });
    result.unwrap_or_else(syn::Error::into_compile_error)
}

/// An expression of type `&'static Catalog` for `manifest`; `p` is the
/// runtime's private module.
pub(crate) fn catalog_expr(p: &TokenStream, manifest: &Manifest) -> TokenStream {
    let products = manifest
        .products
        .iter()
        .map(|product| product_expr(p, product));
    let fingerprint = u64_literal(manifest.fingerprint);
    let path = manifest.display_path();
    let features = &manifest.features;
    let dimensions = &manifest.dimensions;
    let tracking = manifest::rebuild_tracking(&manifest.files);
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

fn product_expr(p: &TokenStream, product: &Product) -> TokenStream {
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
    let max_unreported = product.max_unreported;
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
                let model = match e.model {
                    Some(UnitModel::Floating) => {
                        quote!(::core::option::Option::Some(#p::UnitModel::Floating))
                    }
                    Some(UnitModel::Drawdown) => {
                        quote!(::core::option::Option::Some(#p::UnitModel::Drawdown))
                    }
                    None => quote!(::core::option::Option::None),
                };
                let features = feature_set(p, &e.features);
                quote!(#p::EntitlementSpec::__new(#name, #unit, #value, #model, #features))
            });
            quote!(::core::option::Option::Some(#p::LicenseSpec::__new(#sku, #fp, #base, &[#(#ents),*])))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        #p::Product::__new(
            #name, #code, #tier, #pricing, #features, #mask, #max_unreported, #registration, #license
        )
    }
}

/// A `FeatureSet` constant: the feature indices as a bit set in words.
fn feature_set(p: &TokenStream, indices: &BTreeSet<usize>) -> TokenStream {
    let mut words = [0u64; MAX_FEATURES / 64];
    for i in indices {
        words[i / 64] |= 1 << (i % 64);
    }
    let words = words.iter().map(|w| u64_literal(*w));
    quote!(#p::FeatureSet::__from_words([#(#words),*]))
}
