//! `entitlement!`, `checkout!` and `draw!`: a contract entitlement's name
//! checked against `Marketplace.toml` at compile time (a typo is an error
//! with a suggestion; the wrong model for the operation is an error that
//! says which one to use), then a call into the runtime.

use marketgate_manifest::{Manifest, UnitModel};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, LitStr, Path, Token};

use crate::{crate_path, manifest, suggest};

/// Which macro.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// `entitlement!("Name")`: any entitlement.
    Read,
    /// `checkout!("Name", n)`: a floating one.
    Checkout,
    /// `draw!("Name", n)`: a drawdown one.
    Draw,
}

impl Use {
    fn macro_name(self) -> &'static str {
        match self {
            Use::Read => "entitlement",
            Use::Checkout => "checkout",
            Use::Draw => "draw",
        }
    }
}

struct Args {
    name: LitStr,
    units: Option<Expr>,
    krate: Option<Path>,
}

fn parse(input: ParseStream, what: Use) -> syn::Result<Args> {
    let usage = match what {
        Use::Read => "`entitlement!(\"Name\")`",
        Use::Checkout => "`checkout!(\"Name\", units)`",
        Use::Draw => "`draw!(\"Name\", units)`",
    };
    let name: LitStr = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("expected the entitlement's name as a string literal: {usage}"),
        )
    })?;
    let mut units = None;
    let mut krate = None;
    while !input.is_empty() {
        input.parse::<Token![,]>()?;
        if input.is_empty() {
            break;
        }
        if input.peek(Token![crate]) && input.peek2(Token![=]) {
            input.parse::<Token![crate]>()?;
            input.parse::<Token![=]>()?;
            let value: Expr = input.parse()?;
            krate = Some(crate_path::parse(&value)?);
        } else if what != Use::Read && units.is_none() && krate.is_none() {
            units = Some(input.parse()?);
        } else {
            return Err(input.error(format!(
                "unexpected argument; {usage} (option: `crate = \"path\"`)"
            )));
        }
    }
    Ok(Args { name, units, krate })
}

/// Expands one of the three macros.
pub(crate) fn expand(tokens: TokenStream, what: Use) -> TokenStream {
    let result = (|input: ParseStream| parse(input, what))
        .parse2(tokens)
        .and_then(|args| {
            let manifest = manifest::load(Span::call_site())?;
            check(&args.name, what, &manifest)?;
            Ok(emit(&args, what, &manifest))
        });
    result.unwrap_or_else(syn::Error::into_compile_error)
}

/// The entitlement exists and its model allows `what`.
fn check(name: &LitStr, what: Use, manifest: &Manifest) -> syn::Result<()> {
    let value = name.value();
    let Some((product, entitlement)) = manifest.entitlement(&value) else {
        let hint = suggest::hint("entitlement", &value, manifest.entitlement_names());
        return Err(syn::Error::new(
            name.span(),
            format!(
                "no product in {} has the entitlement `{value}`; {hint}",
                manifest.display_path()
            ),
        ));
    };
    let model = entitlement.model;
    let wanted = match what {
        Use::Read => return Ok(()),
        Use::Checkout => UnitModel::Floating,
        Use::Draw => UnitModel::Drawdown,
    };
    if model == Some(wanted) {
        return Ok(());
    }
    let declared = match model {
        Some(m) => format!("`model = \"{}\"`", m.name()),
        None => "unit `None` (a tier)".to_owned(),
    };
    let instead = match model {
        Some(UnitModel::Floating) => "take its units with `marketgate::checkout!`",
        Some(UnitModel::Drawdown) => "draw its units with `marketgate::draw!`",
        None => "a tier has no units: `#[entitled(\"feature\")]` checks what it grants",
    };
    Err(syn::Error::new(
        name.span(),
        format!(
            "`{}!` needs a {} entitlement, but `{value}` of product `{}` has {declared}; {instead}",
            what.macro_name(),
            wanted.name(),
            product.name
        ),
    ))
}

fn emit(args: &Args, what: Use, manifest: &Manifest) -> TokenStream {
    let p = crate_path::private(args.krate.as_ref());
    let name = &args.name;
    let units = match &args.units {
        // An unsuffixed literal would be an `i32`: make it a `u64`.
        Some(Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(int),
            ..
        })) if int.suffix().is_empty() => {
            let int = syn::LitInt::new(&format!("{}_u64", int.base10_digits()), int.span());
            quote!(#int)
        }
        Some(units) => quote!(#p::IntoQuantity::into_quantity(#units)),
        None => quote!(1_u64),
    };
    // Once per crate, whichever macro expands first (see `gate::emit`).
    let tracking = if manifest::first_in_crate(manifest) {
        let tracking = manifest::rebuild_tracking(&manifest.files);
        let registration = crate::gate::registration(&p, manifest);
        quote!(#tracking #registration)
    } else {
        TokenStream::new()
    };
    match what {
        Use::Read => quote! {{
            #tracking
            #p::units::entitlement(#name)
        }},
        Use::Checkout => quote! {{
            #tracking
            #p::units::checkout(#name, #units)
        }},
        Use::Draw => quote! {{
            #tracking
            static MARKETGATE_DRAW_SITE: #p::units::DrawSite = #p::units::DrawSite::new(#name);
            MARKETGATE_DRAW_SITE.draw(#units)
        }},
    }
}
