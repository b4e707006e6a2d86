//! Messages that point into the manifest:
//! `path:line:column: product `name`: problem`, one per problem found, so
//! that a seller fixes everything in one pass.

use std::fmt::{self, Write as _};
use std::path::Path;

/// 1-based line and column of a byte offset.
pub(crate) struct Position {
    line: usize,
    column: usize,
}

impl Position {
    pub(crate) fn of(text: &str, offset: usize) -> Position {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Position { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The messages about one manifest text.
pub(crate) struct Diagnostics<'a> {
    path: &'a Path,
    text: &'a str,
    messages: Vec<String>,
}

impl<'a> Diagnostics<'a> {
    pub(crate) fn new(path: &'a Path, text: &'a str) -> Self {
        Diagnostics {
            path,
            text,
            messages: Vec::new(),
        }
    }

    /// Reports `problem` at byte `offset`, about `product` if it has a name.
    pub(crate) fn error(
        &mut self,
        offset: usize,
        product: Option<&str>,
        problem: impl fmt::Display,
    ) {
        let mut msg = format!(
            "{}:{}",
            self.path.display(),
            Position::of(self.text, offset)
        );
        if let Some(product) = product {
            let _ = write!(msg, ": product `{product}`");
        }
        let _ = write!(msg, ": {problem}");
        self.messages.push(msg);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub(crate) fn into_messages(self) -> Vec<String> {
        self.messages
    }

    /// The messages about the product `name` whose table starts at `start`.
    pub(crate) fn product<'d>(
        &'d mut self,
        name: &'d str,
        start: usize,
    ) -> ProductDiagnostics<'d, 'a> {
        ProductDiagnostics {
            diagnostics: self,
            name,
            start,
            found: false,
        }
    }
}

/// The messages about one named product.
pub(crate) struct ProductDiagnostics<'d, 'a> {
    diagnostics: &'d mut Diagnostics<'a>,
    name: &'d str,
    start: usize,
    found: bool,
}

impl ProductDiagnostics<'_, '_> {
    /// Reports `problem` at byte `offset` (the value at fault).
    pub(crate) fn error(&mut self, offset: usize, problem: impl fmt::Display) {
        self.found = true;
        self.diagnostics.error(offset, Some(self.name), problem);
    }

    /// Reports a `problem` of the product as a whole, or a missing key, at
    /// its `[[product]]` table.
    pub(crate) fn at_table(&mut self, problem: impl fmt::Display) {
        self.error(self.start, problem);
    }

    /// Whether any problem was reported about this product.
    pub(crate) fn found_problems(&self) -> bool {
        self.found
    }
}
