//! `MeterUsage`'s `UsageAllocations`: the usage split into buckets by tags.

use std::collections::BTreeSet;

use serde_json::Value;

use super::members::{decimal_quantity, whole_quantity};
use super::quantity::Quantity;
use super::state::{Allocation, Tag};
use crate::constraints;
use crate::operation::{Failure, MeterUsageError, fail};
use crate::protocol::Input;

/// `UsageAllocations` holds 1 to 2500 allocations.
const MAX_ALLOCATIONS: usize = 2500;

/// A `TagList` holds 1 to 5 tags.
const MAX_TAGS: usize = 5;

/// AWS: allocations must sum to the usage quantity, use the same kind of
/// quantity (whole or decimal) as the request, and each have a unique set of
/// tags; a tag list has 1 to 5 valid tags (`InvalidTagException`).
pub(super) fn parse_allocations(
    list: &[Value],
    quantity: Quantity,
    decimal: bool,
) -> Result<Vec<Allocation>, Failure<MeterUsageError>> {
    use MeterUsageError as E;
    if list.is_empty() || list.len() > MAX_ALLOCATIONS {
        return Err(fail(
            E::InvalidUsageAllocationsException,
            format!("UsageAllocations must hold 1 to {MAX_ALLOCATIONS} allocations"),
        ));
    }
    let mut allocations = Vec::with_capacity(list.len());
    let mut tag_sets = BTreeSet::new();
    let mut sum: u64 = 0;
    for (i, item) in list.iter().enumerate() {
        let what = format!("UsageAllocations[{i}]");
        let invalid = E::InvalidUsageAllocationsException;
        let allocation = Input::structure(item, &what, invalid)?;
        let whole = allocation.int("AllocatedUsageQuantity", invalid)?;
        let text = allocation.str("AllocatedUsageQuantityAsDecimal", invalid)?;
        let amount = match (whole, text, decimal) {
            (Some(n), None, false) => whole_quantity(n, &format!("{what}.AllocatedUsageQuantity"))?,
            (None, Some(t), true) => {
                decimal_quantity(t, &format!("{what}.AllocatedUsageQuantityAsDecimal"))?
            }
            (Some(_), Some(_), _) | (None, None, _) => {
                return Err(fail(
                    E::InvalidUsageAllocationsException,
                    format!(
                        "{what} must specify exactly one of AllocatedUsageQuantity or AllocatedUsageQuantityAsDecimal"
                    ),
                ));
            }
            _ => {
                return Err(fail(
                    E::InvalidUsageAllocationsException,
                    format!(
                        "{what} must use the same type of quantity as the request: AllocatedUsageQuantity \
                         with UsageQuantity, AllocatedUsageQuantityAsDecimal with UsageQuantityAsDecimal"
                    ),
                ));
            }
        };
        let tags = match allocation.list("Tags", E::InvalidTagException)? {
            Some(tags) => parse_tags(tags, &what)?,
            None => Vec::new(),
        };
        let mut key: Vec<Tag> = tags.clone();
        key.sort();
        if !tag_sets.insert(key) {
            return Err(fail(
                E::InvalidUsageAllocationsException,
                format!("{what} repeats the tag set of an earlier allocation; each must be unique"),
            ));
        }
        sum = sum.saturating_add(amount.micros());
        allocations.push(Allocation {
            quantity: amount,
            tags,
        });
    }
    if sum != quantity.micros() {
        return Err(fail(
            E::InvalidUsageAllocationsException,
            format!(
                "Sum of allocated usage quantities ({}) is not equal to the usage quantity ({quantity})",
                Quantity::from_micros(sum)
            ),
        ));
    }
    Ok(allocations)
}

fn parse_tags(list: &[Value], what: &str) -> Result<Vec<Tag>, Failure<MeterUsageError>> {
    use MeterUsageError as E;
    if list.is_empty() || list.len() > MAX_TAGS {
        return Err(fail(
            E::InvalidTagException,
            format!("{what}.Tags must hold 1 to {MAX_TAGS} tags"),
        ));
    }
    let mut tags = Vec::with_capacity(list.len());
    let mut keys = BTreeSet::new();
    for (j, item) in list.iter().enumerate() {
        let tag_what = format!("{what}.Tags[{j}]");
        let tag = Input::structure(item, &tag_what, E::InvalidTagException)?;
        // Named with their path, unlike the top-level members' "X is required".
        let member = |name: &str| {
            tag.str(name, E::InvalidTagException)?.ok_or_else(|| {
                fail(
                    E::InvalidTagException,
                    format!("{tag_what}.{name} is required"),
                )
            })
        };
        let key = member("Key")?;
        let value = member("Value")?;
        if !constraints::is_tag_text(key, 100) {
            return Err(fail(
                E::InvalidTagException,
                format!("{tag_what}.Key {key:?} must be 1-100 characters of [a-zA-Z0-9+ -=._:/@]"),
            ));
        }
        if !constraints::is_tag_text(value, 256) {
            return Err(fail(
                E::InvalidTagException,
                format!(
                    "{tag_what}.Value {value:?} must be 1-256 characters of [a-zA-Z0-9+ -=._:/@]"
                ),
            ));
        }
        if !keys.insert(key) {
            return Err(fail(
                E::InvalidTagException,
                format!("{what}.Tags has the key {key:?} twice"),
            ));
        }
        tags.push(Tag {
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(tags)
}
