//! A deliberate lint in an annotated body, compiled only by the lint test
//! (`--cfg marketgate_lint_control`): it proves that the expansion keeps the
//! seller's own code visible to clippy, and that the lint run would catch a
//! lint if the expansion produced one.
#![cfg(marketgate_lint_control)]
#![deny(warnings, clippy::all, clippy::pedantic)]

use marketgate_tests::AppError;

#[marketgate::entitled("export")]
#[marketgate::metered(api_calls)]
fn annotated() -> Result<String, AppError> {
    let text = "".to_string(); // clippy::manual_string_new
    Ok(text)
}

#[test]
fn runs() {
    let _ = annotated();
}
