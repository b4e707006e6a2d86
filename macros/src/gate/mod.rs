//! `#[entitled]` and `#[metered]`.
//!
//! Both attributes on one function are expanded together, by whichever
//! runs first: all checks come before the quantity and the body, so a call
//! denied by either gate never counts, whatever the attribute order.
//!
//! The stages, in order: `collect` gathers the arguments of every gate
//! attribute on the function; `validate` rejects what cannot be wrapped;
//! `resolve` turns names into indices with the manifest; `emit` writes the
//! wrapped function (`quantity` its quantity expressions). On error the
//! function is still emitted, as written, next to the error, so that call
//! sites do not cascade into unrelated errors.

mod collect;
mod emit;
mod quantity;
mod resolve;
mod validate;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ItemFn;

use self::collect::Kind;
pub(crate) use self::emit::registration;
use crate::{function, manifest};

/// `#[entitled(..)]`.
pub(crate) fn entitled(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Entitled, args, item)
}

/// `#[metered(..)]`.
pub(crate) fn metered(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Metered, args, item)
}

fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let not_a_function = || {
        syn::Error::new(
            Span::call_site(),
            format!("{} applies to a function with a body", kind.attr()),
        )
    };
    let mut func = match function::parse(item.clone(), not_a_function) {
        Ok(func) => func,
        Err(err) => {
            let mut out = err.into_compile_error();
            out.extend(item);
            return out;
        }
    };
    match gate(kind, args, &mut func) {
        Ok(tokens) => tokens,
        Err(err) => {
            // Emit the function as written, minus our other attributes,
            // which would report the same problem again.
            func.attrs.retain(|a| Kind::of(a).is_none());
            let mut out = err.into_compile_error();
            out.extend(func.into_token_stream());
            out
        }
    }
}

fn gate(kind: Kind, args: TokenStream, func: &mut ItemFn) -> syn::Result<TokenStream> {
    let gates = collect::collect(kind, args, func)?;
    validate::validate(kind, &gates, func)?;
    let manifest = manifest::load(Span::call_site())?;
    let resolved = resolve::resolve(gates, &manifest)?;
    Ok(emit::emit(&resolved, &manifest, func))
}
