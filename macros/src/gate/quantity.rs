//! The `quantity = <expr>` of a `#[metered]`: evaluated once, converted to
//! `u64` units by the runtime.
//!
//! The runtime's conversion is generic over the unsigned integer types
//! (`IntoQuantity` for `u8`..`u64` and `usize`), which leaves an expression
//! whose type only the quantity would fix without a type: rustc falls back
//! to `i32` for an unsuffixed literal (`quantity = 3`, `1 << 20`) and calls
//! `n.into()` ambiguous. So the value is first offered to a local trait
//! implemented for `&&Quantity<u64>` and, one auto-deref further, for
//! `&Quantity<T>`: method resolution takes the first receiver that fits,
//! which pins an expression of undecided type to `u64` and leaves every
//! other type as it is, for the conversion to accept or to refuse with the
//! runtime's message ("a `#[metered]` quantity must be an unsigned integer,
//! not `i64`").

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::{Expr, Ident};

/// `let #var: u64 = <quantity>;` for the quantity expression `expr`; `p`
/// is the runtime's private module.
///
/// The expression is evaluated as the scrutinee of a `match` whose first
/// token is located at the expression's first token and whose arms at its
/// last: the argument of the conversion then spans exactly the expression,
/// so a type the conversion refuses is reported under it.
pub(super) fn let_quantity(p: &TokenStream, var: &Ident, expr: &Expr) -> TokenStream {
    let (first, last) = ends(expr);
    let value = Ident::new("marketgate_value", Span::mixed_site());
    let mut arms = Group::new(
        Delimiter::Brace,
        quote! {
            #value => {
                #[allow(dead_code)]
                struct MarketgateQuantity<'a, T>(&'a T);
                trait MarketgateUnsigned {
                    fn marketgate_unsigned(self);
                }
                impl MarketgateUnsigned for &&MarketgateQuantity<'_, u64> {
                    fn marketgate_unsigned(self) {}
                }
                impl<T> MarketgateUnsigned for &MarketgateQuantity<'_, T> {
                    fn marketgate_unsigned(self) {}
                }
                (&&MarketgateQuantity(&#value)).marketgate_unsigned();
                #value
            }
        },
    );
    arms.set_span(last);
    let scrutinee = quote_spanned!(first=> match #expr #arms);
    quote_spanned! {first=>
        let #var: u64 = #p::quantity(#scrutinee);
    }
}

/// The spans of the expression's first and last tokens.
fn ends(expr: &Expr) -> (Span, Span) {
    let mut tokens = expr.to_token_stream().into_iter();
    let first = tokens.next().map_or_else(Span::call_site, |t| t.span());
    let last = tokens.last().map_or(first, |t: TokenTree| t.span());
    (first, last)
}
