//! marketgate-macros
