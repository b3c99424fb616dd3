//! Seeded generation helpers shared by the simulated datasets: a value is a pure function of
//! the seed and of where it sits (month, index), so the same seed always gives the same data.

use rand::Rng;

use crate::calendar::Month;

/// Months counted from January of year 0.
pub(crate) fn ordinal(month: Month) -> u64 {
    (month.year().max(0) as u64) * 12 + u64::from(month.month() - 1)
}

/// Mixes numbers into one well-spread seed (splitmix64 finaliser).
pub(crate) fn mix(parts: &[u64]) -> u64 {
    parts.iter().fold(0x9e37_79b9_7f4a_7c15, |acc, part| {
        let mut z = (acc ^ part).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// A random version-4 UUID in its lower-case text form, drawn from `rng`.
pub(crate) fn uuid(rng: &mut impl Rng) -> String {
    let bits: u128 = rng.random();
    let bits = (bits & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// `value` rounded to `digits` decimal places, as the APIs print their measurements.
pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    /// UUIDs have the 8-4-4-4-12 shape with the version-4 and variant bits set.
    #[test]
    fn uuids_look_like_uuids() {
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..100 {
            let id = uuid(&mut rng);
            let parts: Vec<_> = id.split('-').map(str::len).collect();
            assert_eq!(parts, [8, 4, 4, 4, 12], "{id}");
            assert_eq!(&id[14..15], "4", "{id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        }
        assert_eq!(round(164.2249, 2), 164.22);
    }
}
