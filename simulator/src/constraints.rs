//! The length and pattern constraints of the two service models, as plain
//! functions.
//!
//! Smithy lengths count Unicode scalar values, and Smithy patterns are
//! ECMA-262 regular expressions that match anywhere unless anchored; each
//! function cites the pattern it implements.

/// `ProductCode`: length 0–255, pattern `^[-a-zA-Z0-9/=:_.@]*$`.
pub(crate) fn is_product_code(s: &str) -> bool {
    s.chars().count() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-/=:_.@".contains(c))
}

/// `TagKey` (length 1–100) and `TagValue` (length 1–256): pattern
/// `^[a-zA-Z0-9+ -=._:\/@]+$`. Inside the class, ` -=` is the range U+0020
/// to U+003D, so space, `!"#$%&'()*+,-./`, digits, `:;<=` are all allowed.
pub(crate) fn is_tag_text(s: &str, max: usize) -> bool {
    let len = s.chars().count();
    (1..=max).contains(&len)
        && s.chars()
            .all(|c| c.is_ascii_alphabetic() || (' '..='=').contains(&c) || "._:/@".contains(c))
}

/// `UsageQuantityAsDecimalString` / `AllocatedUsageQuantityAsDecimalString`:
/// length 1–17, pattern `^(0|[1-9][0-9]{0,9})(\.[0-9]{1,6})?$`. Returns the
/// value in millionths.
pub(crate) fn parse_decimal_quantity(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 17 {
        return None;
    }
    let (whole, fraction) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    let whole_ok = whole == "0"
        || (!whole.is_empty()
            && whole.len() <= 10
            && !whole.starts_with('0')
            && whole.bytes().all(|b| b.is_ascii_digit()));
    if !whole_ok {
        return None;
    }
    let mut micros = whole.parse::<u64>().ok()? * 1_000_000;
    if let Some(fraction) = fraction {
        if fraction.is_empty()
            || fraction.len() > 6
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let scale = 10u64.pow(u32::try_from(6 - fraction.len()).ok()?);
        micros += fraction.parse::<u64>().ok()? * scale;
    }
    Some(micros)
}

/// License Manager's `Arn`: length ≤ 2048, pattern
/// `^arn:aws[a-zA-Z-]*:[A-Za-z0-9][A-Za-z0-9_/.-]{0,62}:[A-Za-z0-9_/.-]{0,63}:[A-Za-z0-9_/.-]{0,63}:[A-Za-z0-9][A-Za-z0-9:_/+=,@.-]{0,1023}$`.
pub(crate) fn is_arn(s: &str) -> bool {
    fn segment(s: &str, max: usize) -> bool {
        s.len() <= max
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_/.-".contains(c))
    }
    fn leading(s: &str) -> bool {
        s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
    }
    if s.chars().count() > 2048 {
        return false;
    }
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return false;
    };
    *arn == "arn"
        && partition
            .strip_prefix("aws")
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_alphabetic() || c == '-'))
        && leading(service)
        && segment(service, 63)
        && segment(region, 63)
        && segment(account, 63)
        && leading(resource)
        && resource.len() <= 1024
        && resource
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_/+=,@.-".contains(c))
}

/// License Manager's `ClientToken`: length ≤ 2048, pattern `\S+` (unanchored,
/// so at least one non-whitespace character).
pub(crate) fn is_lm_client_token(s: &str) -> bool {
    s.chars().count() <= 2048 && s.chars().any(|c| !c.is_whitespace())
}

/// `length(min..=max)` in Unicode scalar values.
pub(crate) fn has_length(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_codes() {
        assert!(is_product_code("mgsim-pro-hourly"));
        assert!(is_product_code("a/b=c:d_e.f@g"));
        assert!(is_product_code(""));
        assert!(!is_product_code("has space"));
        assert!(!is_product_code("semi;colon"));
        assert!(!is_product_code(&"a".repeat(256)));
        assert!(is_product_code(&"a".repeat(255)));
    }

    #[test]
    fn tags_follow_the_literal_class() {
        assert!(is_tag_text("team", 100));
        assert!(is_tag_text("a b+c-d=e.f_g:h/i@j", 100));
        // The range U+0020..U+003D lets these through, as the model's regex does.
        assert!(is_tag_text("!#$%&'()*,;<", 100));
        assert!(!is_tag_text("", 100));
        assert!(!is_tag_text("a>b", 100));
        assert!(!is_tag_text("a?b", 100));
        assert!(!is_tag_text("über", 100));
        assert!(!is_tag_text(&"k".repeat(101), 100));
        assert!(is_tag_text(&"v".repeat(256), 256));
    }

    #[test]
    fn decimal_quantities() {
        assert_eq!(parse_decimal_quantity("0"), Some(0));
        assert_eq!(parse_decimal_quantity("17"), Some(17_000_000));
        assert_eq!(parse_decimal_quantity("17.00"), Some(17_000_000));
        assert_eq!(parse_decimal_quantity("17.42"), Some(17_420_000));
        assert_eq!(parse_decimal_quantity("0.000001"), Some(1));
        assert_eq!(
            parse_decimal_quantity("9999999999.999999"),
            Some(9_999_999_999_999_999)
        );
        for bad in [
            "",
            "017",
            "1.",
            ".5",
            "1.1234567",
            "-1",
            "1e3",
            "12345678901",
            "1,5",
        ] {
            assert_eq!(parse_decimal_quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn arns() {
        assert!(is_arn(
            "arn:aws:license-manager::294406891311:license:l-0123456789abcdef"
        ));
        assert!(is_arn("arn:aws-us-gov:s3:::bucket"));
        assert!(!is_arn("arn:azure:x::1:y"));
        assert!(!is_arn("arn:aws:-bad::1:y"));
        assert!(!is_arn("arn:aws:svc::1:"));
        assert!(!is_arn("not-an-arn"));
        assert!(!is_arn("arn:aws:svc::1:has space"));
    }

    #[test]
    fn license_manager_client_tokens() {
        assert!(is_lm_client_token("abc"));
        assert!(is_lm_client_token(" a "));
        assert!(!is_lm_client_token(""));
        assert!(!is_lm_client_token("   "));
        assert!(!is_lm_client_token(&"x".repeat(2049)));
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(has_length("ééé", 1, 3));
        assert!(!has_length("", 1, 3));
    }
}
