//! Several problems reported at once: errors are collected while parsing or
//! resolving, then merged into one `syn::Error` that rustc shows as one
//! diagnostic per problem.

/// `Ok(())` when there is nothing to report, else every error combined.
pub(crate) fn combine(errors: impl IntoIterator<Item = syn::Error>) -> syn::Result<()> {
    match errors.into_iter().reduce(|mut all, next| {
        all.combine(next);
        all
    }) {
        Some(all) => Err(all),
        None => Ok(()),
    }
}
