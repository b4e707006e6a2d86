//! Literals in generated code.

use proc_macro2::TokenStream;
use quote::quote;

/// A `u64` literal that pedantic clippy finds readable: hexadecimal in
/// groups of four digits (`0x0123_4567_89ab_cdef_u64`).
pub(crate) fn u64_literal(value: u64) -> TokenStream {
    let hex = format!("{value:016x}");
    let grouped = hex
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("_");
    format!("0x{grouped}_u64")
        .parse()
        .unwrap_or_else(|_| quote!(#value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_hex_digits_by_four() {
        assert_eq!(
            u64_literal(0x0123_4567_89ab_cdef).to_string(),
            "0x0123_4567_89ab_cdef_u64"
        );
        assert_eq!(u64_literal(0).to_string(), "0x0000_0000_0000_0000_u64");
    }
}
