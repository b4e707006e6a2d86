//! marketgate
