//! Placeholder: the simulator lands with its own issue.
