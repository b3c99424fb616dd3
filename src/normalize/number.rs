//! Numbers written as decimal text — JSON number literals and numeric strings — read
//! exactly: integers never pass through `f64`, so ids beyond 2^53 keep every digit.

use super::value::Mismatch;

/// The integer written by `text`: JSON number syntax, plus a leading `+` and leading zeros
/// (as strings may carry). A fraction or exponent is fine when the value is exactly an
/// integer (`5.0`, `1.2e3`); otherwise it is a [`Mismatch::Fraction`].
pub(crate) fn integer(text: &str) -> Result<i64, Mismatch> {
    // The common case, plain digits that cannot overflow, read at once.
    if (1..=18).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(text.bytes().fold(0, |n, digit| n * 10 + i64::from(digit - b'0')));
    }
    let (negative, unsigned) = match text.as_bytes().split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text.as_bytes()),
    };
    let (whole, rest) = split_digits(unsigned);
    if whole.is_empty() {
        return Err(Mismatch::Type);
    }
    let (fraction, rest) = match rest.split_first() {
        Some((b'.', after)) => match split_digits(after) {
            ([], _) => return Err(Mismatch::Type),
            split => split,
        },
        _ => (&[][..], rest),
    };
    let exponent = match rest.split_first() {
        None => 0,
        Some((b'e' | b'E', after)) => exponent(after)?,
        Some(_) => return Err(Mismatch::Type),
    };
    // Digits before this position are the integer part of the value.
    let point = (whole.len() as i64).saturating_add(exponent);
    let mut magnitude: u64 = 0;
    let mut position: i64 = 0;
    for &digit in whole.iter().chain(fraction) {
        let digit = u64::from(digit - b'0');
        if position < point {
            magnitude = shift_in(magnitude, digit)?;
        } else if digit != 0 {
            return Err(Mismatch::Fraction);
        }
        position += 1;
    }
    if magnitude != 0 {
        for _ in position..point {
            magnitude = shift_in(magnitude, 0)?;
        }
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude).ok_or(Mismatch::Range)
    } else {
        i64::try_from(magnitude).map_err(|_| Mismatch::Range)
    }
}

/// The float written by `text` (JSON number syntax, or what Rust parses from a string).
pub(crate) fn float(text: &str) -> Result<f64, Mismatch> {
    let value: f64 = text.parse().map_err(|_| Mismatch::Type)?;
    if value.is_finite() {
        Ok(value)
    } else if text.trim_start_matches(['-', '+']).starts_with(|c: char| c.is_ascii_digit()) {
        Err(Mismatch::Range)
    } else {
        Err(Mismatch::NotFinite)
    }
}

/// Appends one decimal digit to `magnitude`.
fn shift_in(magnitude: u64, digit: u64) -> Result<u64, Mismatch> {
    magnitude.checked_mul(10).and_then(|m| m.checked_add(digit)).ok_or(Mismatch::Range)
}

/// The leading ASCII digits of `bytes`, and the rest.
fn split_digits(bytes: &[u8]) -> (&[u8], &[u8]) {
    bytes.split_at(bytes.iter().take_while(|b| b.is_ascii_digit()).count())
}

/// An exponent (`+12`, `-3`, `7`) that ends the text; saturates instead of overflowing.
fn exponent(bytes: &[u8]) -> Result<i64, Mismatch> {
    let (negative, unsigned) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, bytes),
    };
    let (digits, rest) = split_digits(unsigned);
    if digits.is_empty() || !rest.is_empty() {
        return Err(Mismatch::Type);
    }
    let size = digits
        .iter()
        .fold(0i64, |acc, d| acc.saturating_mul(10).saturating_add(i64::from(d - b'0')));
    Ok(if negative { -size } else { size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Ids beyond 2^53 and the i64 extremes are read exactly.
    #[test]
    fn integers_are_exact() {
        assert_eq!(integer("953730645354352640"), Ok(953_730_645_354_352_640));
        assert_eq!(integer("9007199254740993"), Ok(9_007_199_254_740_993));
        assert_eq!(integer("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(integer("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(integer("-0"), Ok(0));
        assert_eq!(integer("+007"), Ok(7));
        // Plain digits are read at once up to 18 of them, and by the general path beyond.
        assert_eq!(integer("007"), Ok(7));
        assert_eq!(integer("999999999999999999"), Ok(999_999_999_999_999_999));
        assert_eq!(integer("0000000000000000007"), Ok(7));
        assert_eq!(integer("1000000000000000000"), Ok(1_000_000_000_000_000_000));
    }

    /// Beyond i64, in either direction, is out of range.
    #[test]
    fn overflow_is_out_of_range() {
        assert_eq!(integer("9223372036854775808"), Err(Mismatch::Range));
        assert_eq!(integer("-9223372036854775809"), Err(Mismatch::Range));
        assert_eq!(integer("1e19"), Err(Mismatch::Range));
        assert_eq!(integer("1e999999999999999999999"), Err(Mismatch::Range));
    }

    /// A fraction or exponent is accepted only when the value is exactly an integer.
    #[test]
    fn whole_valued_fractions_and_exponents() {
        assert_eq!(integer("5.0"), Ok(5));
        assert_eq!(integer("1.25e2"), Ok(125));
        assert_eq!(integer("12500e-2"), Ok(125));
        assert_eq!(integer("0e99999"), Ok(0));
        assert_eq!(integer("0.0e-999999999999999999999"), Ok(0));
        assert_eq!(integer("9007199254740993.0"), Ok(9_007_199_254_740_993));
        assert_eq!(integer("1.5"), Err(Mismatch::Fraction));
        assert_eq!(integer("5.0000000000000000001"), Err(Mismatch::Fraction));
        assert_eq!(integer("125e-3"), Err(Mismatch::Fraction));
        assert_eq!(integer("1e-999999999999999999999"), Err(Mismatch::Fraction));
    }

    /// Text that is not a number is a type mismatch, whatever digits it holds.
    #[test]
    fn non_numbers_are_type_mismatches() {
        for text in ["", "-", "abc", "12a", " 12", "12 ", "1.", ".5", "1e", "1e+", "0x10", "1_000"]
        {
            assert_eq!(integer(text), Err(Mismatch::Type), "{text:?}");
        }
    }

    /// Floats parse JSON literals and numeric strings; overflow and NaN/inf are refused.
    #[test]
    fn floats() {
        assert_eq!(float("1.5"), Ok(1.5));
        assert_eq!(float("-2e-3"), Ok(-0.002));
        assert_eq!(float("1e400"), Err(Mismatch::Range));
        assert_eq!(float("-1e400"), Err(Mismatch::Range));
        assert_eq!(float("NaN"), Err(Mismatch::NotFinite));
        assert_eq!(float("-inf"), Err(Mismatch::NotFinite));
        assert_eq!(float("one"), Err(Mismatch::Type));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Every i64, written plainly, with `.0`, or as mantissa and exponent, reads back.
        #[test]
        fn every_i64_round_trips(n in any::<i64>(), zeros in 0usize..4) {
            prop_assert_eq!(integer(&n.to_string()), Ok(n));
            prop_assert_eq!(integer(&format!("{n}.{}", "0".repeat(zeros + 1))), Ok(n));
            let scaled = format!("{n}{}e-{zeros}", "0".repeat(zeros));
            prop_assert_eq!(integer(&scaled), Ok(n));
        }

        /// A number whose last fraction digit is not zero is never taken as an integer.
        #[test]
        fn true_fractions_are_refused(n in any::<i32>(), frac in 1u32..1000, digit in 1u8..10) {
            let text = format!("{n}.{frac:03}{digit}");
            prop_assert_eq!(integer(&text), Err(Mismatch::Fraction));
        }
    }
}
