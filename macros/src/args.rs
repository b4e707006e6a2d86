//! Parsing attribute arguments. Options are collected first and validated
//! together; every error points at the offending token and names the valid
//! choices.

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitStr, Path, Token};

use crate::errors::combine;
use crate::{crate_path, suggest};

/// When a metered call counts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CountOn {
    /// The body returned `Ok` (or, for non-`Result` types, returned).
    Success,
    /// The body returned, `Ok` or `Err`.
    Return,
    /// The call was admitted (before the body runs).
    Call,
}

/// A feature or dimension name as written.
#[derive(Clone)]
pub(crate) struct Name {
    pub(crate) value: String,
    pub(crate) span: Span,
}

/// `#[entitled(...)]`.
pub(crate) struct EntitledArgs {
    pub(crate) features: Vec<Name>,
    pub(crate) common: Common,
}

/// `#[metered(...)]`.
pub(crate) struct MeteredArgs {
    pub(crate) dimension: Name,
    pub(crate) quantity: Option<Expr>,
    pub(crate) tags: Option<Expr>,
    pub(crate) on: CountOn,
    pub(crate) common: Common,
}

/// Options every gate attribute takes.
#[derive(Default)]
pub(crate) struct Common {
    pub(crate) on_denied: Option<Expr>,
    pub(crate) krate: Option<Path>,
}

/// `#[marketgate::main(...)]` and `catalog!(...)`.
#[derive(Default)]
pub(crate) struct MainArgs {
    pub(crate) krate: Option<Path>,
}

enum Item {
    Str(LitStr),
    Ident(Ident),
    Named(Ident, ParseValue),
}

enum ParseValue {
    Expr(Expr),
}

fn parse_items(input: ParseStream) -> syn::Result<Vec<Item>> {
    let mut items = Vec::new();
    while !input.is_empty() {
        if input.peek(LitStr) {
            items.push(Item::Str(input.parse()?));
        } else if input.peek(Token![crate]) && input.peek2(Token![=]) {
            let token: Token![crate] = input.parse()?;
            input.parse::<Token![=]>()?;
            items.push(Item::Named(
                Ident::new("crate", token.span),
                ParseValue::Expr(input.parse()?),
            ));
        } else if input.peek(Ident) && input.peek2(Token![=]) {
            let name: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            items.push(Item::Named(name, ParseValue::Expr(input.parse()?)));
        } else if input.peek(Ident) {
            items.push(Item::Ident(input.parse()?));
        } else {
            return Err(input.error(
                "expected a name (`\"feature\"` or `dimension`) or an option (`name = value`)",
            ));
        }
        if input.is_empty() {
            break;
        }
        if !input.peek(Token![,]) {
            return Err(input.error(
                "expected `,` between arguments, as in `#[metered(dimension, quantity = <expr>)]`",
            ));
        }
        input.parse::<Token![,]>()?;
    }
    Ok(items)
}

fn unknown_option(name: &Ident, valid: &[&str]) -> syn::Error {
    let given = name.to_string();
    let hint = suggest::closest(&given, valid.iter().copied())
        .map(|s| format!("did you mean `{s}`? "))
        .unwrap_or_default();
    syn::Error::new(
        name.span(),
        format!(
            "unknown option `{given}`; {hint}valid options: {}",
            valid
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

fn duplicate(name: &Ident) -> syn::Error {
    syn::Error::new(name.span(), format!("`{name}` is given more than once"))
}

/// Sets a once-only option, reporting a duplicate at its second mention.
fn set_once<T>(slot: &mut Option<T>, name: &Ident, value: T, errors: &mut Vec<syn::Error>) {
    if slot.is_some() {
        errors.push(duplicate(name));
    } else {
        *slot = Some(value);
    }
}

fn common_option(
    name: &Ident,
    value: &Expr,
    common: &mut Common,
    errors: &mut Vec<syn::Error>,
) -> bool {
    match name.to_string().as_str() {
        "on_denied" => set_once(&mut common.on_denied, name, value.clone(), errors),
        "crate" => match crate_path::parse(value) {
            Ok(path) => set_once(&mut common.krate, name, path, errors),
            Err(e) => errors.push(e),
        },
        _ => return false,
    }
    true
}

impl EntitledArgs {
    pub(crate) fn parse(tokens: TokenStream, attr_span: Span) -> syn::Result<Self> {
        let items = parse_items.parse2(tokens)?;
        let mut features: Vec<Name> = Vec::new();
        let mut common = Common::default();
        let mut errors = Vec::new();
        for item in items {
            match item {
                Item::Str(lit) => {
                    let value = lit.value();
                    if features.iter().any(|f| f.value == value) {
                        errors.push(syn::Error::new(
                            lit.span(),
                            format!("feature `{value}` is given more than once"),
                        ));
                    } else {
                        features.push(Name {
                            value,
                            span: lit.span(),
                        });
                    }
                }
                Item::Ident(ident) => errors.push(syn::Error::new(
                    ident.span(),
                    format!("feature names are string literals: write `#[entitled(\"{ident}\")]`"),
                )),
                Item::Named(name, ParseValue::Expr(value)) => {
                    if !common_option(&name, &value, &mut common, &mut errors) {
                        errors.push(unknown_option(&name, &["on_denied", "crate"]));
                    }
                }
            }
        }
        if features.is_empty() && errors.is_empty() {
            errors.push(syn::Error::new(
                attr_span,
                "`#[entitled]` needs the feature it requires: `#[entitled(\"feature\")]`",
            ));
        }
        combine(errors)?;
        Ok(EntitledArgs { features, common })
    }
}

impl MeteredArgs {
    pub(crate) fn parse(tokens: TokenStream, attr_span: Span) -> syn::Result<Self> {
        let items = parse_items.parse2(tokens)?;
        let mut dimension: Option<Name> = None;
        let mut quantity = None;
        let mut tags = None;
        let mut on = None;
        let mut common = Common::default();
        let mut errors = Vec::new();
        for item in items {
            let name = match item {
                Item::Str(lit) => Name {
                    value: lit.value(),
                    span: lit.span(),
                },
                Item::Ident(ident) => Name {
                    value: ident.to_string(),
                    span: ident.span(),
                },
                Item::Named(name, ParseValue::Expr(value)) => {
                    match name.to_string().as_str() {
                        "quantity" => set_once(&mut quantity, &name, value, &mut errors),
                        "tags" => set_once(&mut tags, &name, value, &mut errors),
                        "on" => match count_on(&value) {
                            Ok(v) => set_once(&mut on, &name, v, &mut errors),
                            Err(e) => errors.push(e),
                        },
                        _ => {
                            if !common_option(&name, &value, &mut common, &mut errors) {
                                errors.push(unknown_option(
                                    &name,
                                    &["quantity", "tags", "on", "on_denied", "crate"],
                                ));
                            }
                        }
                    }
                    continue;
                }
            };
            if dimension.is_some() {
                errors.push(syn::Error::new(
                    name.span,
                    "`#[metered]` takes one dimension; stack a second `#[metered(..)]` to \
                     meter another",
                ));
            } else {
                dimension = Some(name);
            }
        }
        let Some(dimension) = dimension else {
            errors.push(syn::Error::new(
                attr_span,
                "`#[metered]` needs the dimension it meters: `#[metered(dimension)]`",
            ));
            return Err(combine(errors).expect_err("an error was just pushed"));
        };
        combine(errors)?;
        Ok(MeteredArgs {
            dimension,
            quantity,
            tags,
            on: on.unwrap_or(CountOn::Success),
            common,
        })
    }
}

fn count_on(value: &Expr) -> syn::Result<CountOn> {
    let err = || {
        syn::Error::new(
            value.span(),
            "`on` is one of `success` (default: the call returned `Ok`), `return` (returned \
             `Ok` or `Err`) or `call` (counted when admitted, even if it later fails or panics)",
        )
    };
    match value {
        Expr::Path(p) if p.path.is_ident("success") => Ok(CountOn::Success),
        Expr::Path(p) if p.path.is_ident("call") => Ok(CountOn::Call),
        Expr::Return(r) if r.expr.is_none() => Ok(CountOn::Return),
        _ => Err(err()),
    }
}

impl MainArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let items = parse_items.parse2(tokens)?;
        let mut krate = None;
        let mut errors = Vec::new();
        for item in items {
            match item {
                Item::Named(name, ParseValue::Expr(value)) if name == "crate" => {
                    match crate_path::parse(&value) {
                        Ok(path) => set_once(&mut krate, &name, path, &mut errors),
                        Err(e) => errors.push(e),
                    }
                }
                Item::Named(name, _) => errors.push(unknown_option(&name, &["crate"])),
                Item::Str(lit) => errors.push(syn::Error::new(
                    lit.span(),
                    "unexpected argument; the only option is `crate = \"path\"`",
                )),
                Item::Ident(ident) => errors.push(syn::Error::new(
                    ident.span(),
                    "unexpected argument; the only option is `crate = \"path\"`",
                )),
            }
        }
        combine(errors)?;
        Ok(MainArgs { krate })
    }
}
