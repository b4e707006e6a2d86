//! Gathering every gate attribute on one function: the one being expanded
//! and the others stacked with it, whose arguments are taken here and whose
//! attributes are removed so that they do not expand a second time.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ItemFn, Path};

use crate::args::{Common, EntitledArgs, MeteredArgs, Name};
use crate::errors;

/// Which attribute is being expanded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Entitled,
    Metered,
}

impl Kind {
    /// The attribute as written in messages.
    pub(super) fn attr(self) -> &'static str {
        match self {
            Kind::Entitled => "#[entitled]",
            Kind::Metered => "#[metered]",
        }
    }

    /// Whether `attr` is one of ours, by its last path segment (it may be
    /// written `entitled`, `marketgate::entitled` or through a re-export).
    pub(super) fn of(attr: &Attribute) -> Option<Kind> {
        let last = attr.path().segments.last()?;
        if last.ident == "entitled" {
            Some(Kind::Entitled)
        } else if last.ident == "metered" {
            Some(Kind::Metered)
        } else {
            None
        }
    }
}

/// Everything the gate attributes on one function ask for.
pub(super) struct Gates {
    /// Features that must all be granted, in the order written.
    pub(super) features: Vec<Name>,
    /// Dimensions to meter, one per `#[metered]`.
    pub(super) dimensions: Vec<MeteredArgs>,
    /// The value to return when denied, given on at most one attribute.
    pub(super) on_denied: Option<Expr>,
    /// `crate = "..."`, the same on every attribute that gives it.
    pub(super) krate: Option<Path>,
}

/// Parses the arguments of the attribute being expanded (`kind`, `args`)
/// and of every other gate attribute on `func`, which are removed from it.
/// Every problem is reported, not only the first.
pub(super) fn collect(kind: Kind, args: TokenStream, func: &mut ItemFn) -> syn::Result<Gates> {
    let mut gates = Gates {
        features: Vec::new(),
        dimensions: Vec::new(),
        on_denied: None,
        krate: None,
    };
    let mut errors = Vec::new();
    gates.add(kind, args, Span::call_site(), &mut errors);
    let mut kept = Vec::new();
    for attr in std::mem::take(&mut func.attrs) {
        match Kind::of(&attr) {
            Some(kind) => gates.add(kind, attr_args(&attr), attr.span(), &mut errors),
            None => kept.push(attr),
        }
    }
    func.attrs = kept;
    errors::combine(errors)?;
    Ok(gates)
}

/// The tokens inside an attribute's parentheses.
fn attr_args(attr: &Attribute) -> TokenStream {
    match &attr.meta {
        syn::Meta::List(list) => list.tokens.clone(),
        syn::Meta::Path(_) | syn::Meta::NameValue(_) => TokenStream::new(),
    }
}

impl Gates {
    /// Adds one attribute's arguments; `span` is the attribute's, for an
    /// attribute written without any.
    fn add(&mut self, kind: Kind, args: TokenStream, span: Span, errors: &mut Vec<syn::Error>) {
        let common = match kind {
            Kind::Entitled => match EntitledArgs::parse(args, span) {
                Ok(args) => {
                    self.add_features(args.features, errors);
                    args.common
                }
                Err(e) => return errors.push(e),
            },
            Kind::Metered => match MeteredArgs::parse(args, span) {
                Ok(mut args) => {
                    let common = std::mem::take(&mut args.common);
                    self.add_dimension(args, errors);
                    common
                }
                Err(e) => return errors.push(e),
            },
        };
        self.add_common(common, errors);
    }

    fn add_features(&mut self, features: Vec<Name>, errors: &mut Vec<syn::Error>) {
        for f in features {
            if self.features.iter().any(|g| g.value == f.value) {
                errors.push(syn::Error::new(
                    f.span,
                    format!("feature `{}` is required twice on this function", f.value),
                ));
            } else {
                self.features.push(f);
            }
        }
    }

    fn add_dimension(&mut self, metered: MeteredArgs, errors: &mut Vec<syn::Error>) {
        let name = &metered.dimension;
        if self
            .dimensions
            .iter()
            .any(|d| d.dimension.value == name.value)
        {
            errors.push(syn::Error::new(
                name.span,
                format!(
                    "dimension `{}` is metered twice on this function; use one \
                     `#[metered]` with `quantity = ..`",
                    name.value
                ),
            ));
        } else {
            self.dimensions.push(metered);
        }
    }

    fn add_common(&mut self, common: Common, errors: &mut Vec<syn::Error>) {
        if let Some(expr) = common.on_denied {
            if self.on_denied.is_some() {
                errors.push(syn::Error::new(
                    expr.span(),
                    "`on_denied` is given on more than one attribute of this function; give it once",
                ));
            } else {
                self.on_denied = Some(expr);
            }
        }
        if let Some(path) = common.krate {
            match &self.krate {
                Some(existing)
                    if existing.to_token_stream().to_string()
                        != path.to_token_stream().to_string() =>
                {
                    errors.push(syn::Error::new(
                        path.span(),
                        "the attributes of this function name different `crate` paths",
                    ));
                }
                _ => self.krate = Some(path),
            }
        }
    }
}
