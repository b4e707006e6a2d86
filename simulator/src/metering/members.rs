//! Member checks both Metering operations share.

use super::quantity::Quantity;
use crate::constraints;
use crate::operation::{ErrorShape, Failure, MeterUsageError, fail};
use crate::protocol::Input;

/// `ProductCode`: required, matching the model's `[-a-zA-Z0-9/=:_.@]*` and
/// at most 255 characters; answered with the operation's `invalid` error
/// (`InvalidProductCodeException` in both).
pub(super) fn product_code<E: ErrorShape>(
    input: Input<'_>,
    invalid: E,
) -> Result<&str, Failure<E>> {
    let product_code = input.required_str("ProductCode", invalid)?;
    if !constraints::is_product_code(product_code) {
        return Err(fail(
            invalid,
            format!(
                "ProductCode {product_code:?} must match [-a-zA-Z0-9/=:_.@]* and be at most 255 characters"
            ),
        ));
    }
    Ok(product_code)
}

/// `UsageQuantity` and `AllocatedUsageQuantity` are int32 with range
/// 0..=2147483647.
const MAX_WHOLE_QUANTITY: i64 = 2_147_483_647;

/// A whole-number quantity member (`UsageQuantity`, `AllocatedUsageQuantity`).
pub(super) fn whole_quantity(n: i64, member: &str) -> Result<Quantity, Failure<MeterUsageError>> {
    u64::try_from(n)
        .ok()
        .filter(|n| i64::try_from(*n).is_ok_and(|n| n <= MAX_WHOLE_QUANTITY))
        .map(Quantity::whole)
        .ok_or_else(|| {
            Failure::new(
                MeterUsageError::InvalidUsageAllocationsException,
                format!("{member} {n} must be between 0 and {MAX_WHOLE_QUANTITY}"),
            )
        })
}

/// A decimal quantity member (`UsageQuantityAsDecimal`,
/// `AllocatedUsageQuantityAsDecimal`), as text.
pub(super) fn decimal_quantity(
    text: &str,
    member: &str,
) -> Result<Quantity, Failure<MeterUsageError>> {
    constraints::parse_decimal_quantity(text)
        .map(Quantity::from_micros)
        .ok_or_else(|| {
            Failure::new(
                MeterUsageError::InvalidUsageAllocationsException,
                format!("{member} {text:?} must match ^(0|[1-9][0-9]{{0,9}})(\\.[0-9]{{1,6}})?$"),
            )
        })
}
