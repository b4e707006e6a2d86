//! Drawdown units: counted units of a contract product that AWS License
//! Manager consumes for good, and the journal that makes drawing them
//! crash-safe.

// Nothing outside the tests uses the journal yet: the runtime integration
// follows.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod journal;
