//! `#[marketgate::main]`: the program's entry point, verified before its
//! body runs.
//!
//! The body is replaced by: start-up with the embedded catalog (verify the
//! product, or log why not and exit with status 1), the user's body run so
//! that `return` and `?` come back here, then flushing usage and releasing
//! licenses before the body's value is returned unchanged.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::ItemFn;

use crate::args::MainArgs;
use crate::{crate_path, embed, function, manifest};

/// `#[marketgate::main]`.
pub(crate) fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    let not_main = || {
        syn::Error::new(
            Span::call_site(),
            "#[marketgate::main] applies to the program's `fn main`",
        )
    };
    let mut func = match function::parse(item.clone(), not_main) {
        Ok(func) => func,
        Err(err) => {
            let mut out = err.into_compile_error();
            out.extend(item);
            return out;
        }
    };
    match expand(args, &mut func) {
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

fn expand(args: TokenStream, func: &mut ItemFn) -> syn::Result<TokenStream> {
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
    let manifest = manifest::load(Span::call_site())?;
    let p = crate_path::private(args.krate.as_ref());
    let catalog = embed::catalog_expr(&p, &manifest);
    let guard = syn::Ident::new("marketgate_guard", Span::mixed_site());
    let result = syn::Ident::new("marketgate_result", Span::mixed_site());
    let run = function::run_body(func);
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
    function::outer_attrs(&mut func.attrs);
    Ok(function::with_body(func, body))
}

/// Whether another attribute on `main` is an async runtime's entry point
/// (`#[tokio::main]`, `#[async_std::main]`, `#[tokio::test]`, ...).
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
