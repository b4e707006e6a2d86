//! The annotated function: parsing it, and re-emitting it with a new body.
//!
//! Only the body is replaced; attributes, visibility and signature are
//! re-emitted as written, and the body keeps the user's braces, so spans
//! (and lints such as `dead_code`) stay the user's.

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::{AttrStyle, Attribute, ItemFn, ReturnType, Type};

/// Parses the item an attribute is on as a function with a body.
///
/// An item that parses but is something else (a struct, a function without
/// a body) gets `not_a_function`. An item that does not parse at all, such
/// as a function whose body is still being typed, gets syn's own error,
/// which points at the token where parsing stopped.
pub(crate) fn parse(
    item: TokenStream,
    not_a_function: impl FnOnce() -> syn::Error,
) -> syn::Result<ItemFn> {
    syn::parse2::<ItemFn>(item.clone()).map_err(|parse_error| {
        if is_some_item(item) {
            not_a_function()
        } else {
            parse_error
        }
    })
}

/// Whether `tokens` are some item, of any kind: module-level, or a trait's,
/// an impl's or an `extern` block's (where a function may have no body).
fn is_some_item(tokens: TokenStream) -> bool {
    syn::parse2::<syn::Item>(tokens.clone()).is_ok()
        || syn::parse2::<syn::TraitItem>(tokens.clone()).is_ok()
        || syn::parse2::<syn::ImplItem>(tokens.clone()).is_ok()
        || syn::parse2::<syn::ForeignItem>(tokens).is_ok()
}

/// Makes every attribute outer: inner ones (`#![..]` at the top of the body)
/// move out with the body's contents, so they must apply to the function.
pub(crate) fn outer_attrs(attrs: &mut [Attribute]) {
    for attr in attrs {
        attr.style = AttrStyle::Outer;
    }
}

/// The function with `body` in place of its body: attributes, visibility
/// and signature as written, and the body's own braces around `body`.
pub(crate) fn with_body(func: &ItemFn, body: TokenStream) -> TokenStream {
    let mut out = TokenStream::new();
    for attr in &func.attrs {
        attr.to_tokens(&mut out);
    }
    func.vis.to_tokens(&mut out);
    func.sig.to_tokens(&mut out);
    func.block
        .brace_token
        .surround(&mut out, |out| out.extend(body));
    out
}

/// The body's statements as a block expression, to run in place after the
/// checks.
///
/// The braces are ours, located where the user's are: the user's own
/// braces, nested in the function's, would be a block whose value is the
/// function's, and rustc's `unused_braces` lint reports such a block when
/// it holds one expression on one line (`fn f() -> T { expr }`). A span
/// from the expansion is exempt from that lint; located at the user's
/// braces, it still points diagnostics about the body at the body.
pub(crate) fn body_in_place(func: &ItemFn) -> TokenStream {
    let stmts = &func.block.stmts;
    let mut block = Group::new(Delimiter::Brace, quote!(#(#stmts)*));
    block.set_span(Span::call_site().located_at(func.block.brace_token.span.join()));
    TokenTree::Group(block).into()
}

/// Runs the body so that `return` and `?` inside it come back here: in an
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

/// A never-taken `return` of the function's type at the top of an `async`
/// block, so that `return` and `?` inside the block infer the function's
/// return type; with the lints that fire on such a fake return allowed.
fn type_hint(ret: &ReturnType) -> TokenStream {
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

/// Whether a type mentions `impl Trait`, which cannot be written on a
/// closure or a `let`.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(item: &str) -> Result<ItemFn, String> {
        let tokens: TokenStream = item.parse().expect("tokens");
        parse(tokens, || {
            syn::Error::new(Span::call_site(), "not a function")
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_function_with_a_body_parses() {
        assert!(parse_str("pub fn f(x: u64) -> u64 { x + 1 }").is_ok());
        assert!(parse_str("async fn f(&self) {}").is_ok());
    }

    #[test]
    fn other_items_are_not_functions() {
        for item in [
            "struct Export;",
            "fn declared(&self) -> u32;",
            "const N: u32 = 1;",
            "type T = u32;",
        ] {
            assert_eq!(
                parse_str(item).err().as_deref(),
                Some("not a function"),
                "{item}"
            );
        }
    }

    #[test]
    fn a_body_that_does_not_parse_gets_syns_error() {
        let err = parse_str("fn f(report: &str) -> u32 { let title = report.; 1 }")
            .expect_err("does not parse");
        assert_ne!(err, "not a function");
        assert!(err.contains("expected"), "{err}");
    }

    #[test]
    fn the_impl_trait_check_looks_inside_generics() {
        let ty: Type = syn::parse_quote!(Result<impl Iterator<Item = u32>, E>);
        assert!(contains_impl_trait(&ty));
        let ty: Type = syn::parse_quote!(Result<Vec<u32>, E>);
        assert!(!contains_impl_trait(&ty));
    }
}
