//! Names of the per-step statistics that methods log to `metrics.jsonl` and the figures read
//! back: written and parsed here only.

/// Modality m's coefficient B_m: `coeff_{m}`.
pub fn coeff(m: usize) -> String {
    format!("coeff_{m}")
}

/// Modality m's group factor for `code` of an attribute level: `factor_{m}_{level}_{code}`
/// (the first level is [`FIRST_LEVEL`]).
pub fn factor(m: usize, level: &str, code: i64) -> String {
    format!("factor_{m}_{level}_{code}")
}

/// The tag of the first (or only) attribute level in statistic names.
pub const FIRST_LEVEL: &str = "group";

/// Whether the fairness priority held (1) or not (0); `priority_{level}` for further levels.
pub const PRIORITY: &str = "priority";
/// The generalised method's fairness loss.
pub const FAIRNESS_LOSS: &str = "fairness_loss";
/// The generalised method's direction term.
pub const DIRECTION_LOSS: &str = "direction_loss";

/// Modality m's encoder update relative to its parameters, ||delta theta|| / ||theta||, of the
/// real step (`update_{m}`) or of the counterfactual unmodulated one (`update_unmodulated_{m}`).
pub fn update(m: usize, unmodulated: bool) -> String {
    match unmodulated {
        true => format!("update_unmodulated_{m}"),
        false => format!("update_{m}"),
    }
}

/// The modality and kind of an [`update`] name.
pub fn parse_update(key: &str) -> Option<(usize, bool)> {
    match key.strip_prefix("update_unmodulated_") {
        Some(m) => Some((m.parse().ok()?, true)),
        None => Some((key.strip_prefix("update_")?.parse().ok()?, false)),
    }
}

/// The modality of a [`coeff`] name.
pub fn parse_coeff(key: &str) -> Option<usize> {
    key.strip_prefix("coeff_")?.parse().ok()
}

/// The modality and group code of a first-level [`factor`] name.
pub fn parse_factor(key: &str) -> Option<(usize, i64)> {
    let rest = key.strip_prefix("factor_")?;
    let (m, code) = rest.split_once(&format!("_{FIRST_LEVEL}_"))?;
    Some((m.parse().ok()?, code.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        assert_eq!(parse_coeff(&coeff(3)), Some(3));
        assert_eq!(parse_factor(&factor(1, FIRST_LEVEL, 2)), Some((1, 2)));
        assert_eq!(parse_factor(&factor(1, "gender", 2)), None);
        assert_eq!(parse_coeff("coeff_x"), None);
        assert_eq!(parse_update(&update(2, true)), Some((2, true)));
        assert_eq!(parse_update(&update(0, false)), Some((0, false)));
    }
}
