//! Checks on the function and the options that need no manifest: what the
//! attributes cannot wrap, and quantities that can never be a count.

use syn::{Expr, ItemFn, ReturnType, UnOp};

use super::collect::{Gates, Kind};
use crate::errors;

/// Rejects a function the gates cannot wrap, and quantities that are
/// negative numbers. `kind` names the attribute in messages.
pub(super) fn validate(kind: Kind, gates: &Gates, func: &ItemFn) -> syn::Result<()> {
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
    errors::combine(
        gates
            .dimensions
            .iter()
            .filter_map(|d| d.quantity.as_ref())
            .filter_map(negative_literal),
    )
}

/// An error for `quantity = -1` and the like. Any other expression of a
/// signed or floating-point type is refused by the type system (the
/// runtime's `IntoQuantity` is implemented for unsigned integers only); a
/// negative literal is caught here because the unsuffixed literal is
/// inferred as `u64`, and rustc's own complaint about negating a `u64`
/// suggests a signed suffix that the quantity would then refuse.
fn negative_literal(quantity: &Expr) -> Option<syn::Error> {
    let Expr::Unary(negation) = quantity else {
        return None;
    };
    if !matches!(negation.op, UnOp::Neg(_)) {
        return None;
    }
    let mut operand = &*negation.expr;
    while let Expr::Paren(inner) = operand {
        operand = &inner.expr;
    }
    let Expr::Lit(literal) = operand else {
        return None;
    };
    matches!(literal.lit, syn::Lit::Int(_) | syn::Lit::Float(_)).then(|| {
        syn::Error::new_spanned(
            quantity,
            "a `#[metered]` quantity must be an unsigned integer, not a negative number: \
             AWS Marketplace takes usage quantities of zero or more",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_negated_numeric_literals_are_caught_here() {
        for expr in ["-1", "-(2)", "-1.5", "-3u64"] {
            let expr: Expr = syn::parse_str(expr).expect("expression");
            assert!(
                negative_literal(&expr).is_some(),
                "{}",
                quote::quote!(#expr)
            );
        }
        for expr in ["1", "n", "-n", "1.5", "!0", "a - 1"] {
            let expr: Expr = syn::parse_str(expr).expect("expression");
            assert!(
                negative_literal(&expr).is_none(),
                "{}",
                quote::quote!(#expr)
            );
        }
    }
}
