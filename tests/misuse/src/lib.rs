//! Compile-fail cases live in `cases/`; see `tests/misuse.rs`.
