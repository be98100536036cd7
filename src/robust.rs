//! Robust statistics of pixel samples: the median and the noise σ it implies, shared by the
//! flat-field calibration, the label rule's background and the motion gate's background.

/// The median of `v` (reordered; the upper one of an even count); 0 for an empty slice.
pub fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    *v.select_nth_unstable_by(mid, f32::total_cmp).1
}

/// The noise σ of samples whose absolute deviations from their centre are `deviations`
/// (reordered): 1.4826 × their median, which is σ for Gaussian noise and ignores outliers.
pub fn sigma_from_deviations(deviations: &mut [f32]) -> f32 {
    1.4826 * median(deviations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value_and_ignores_outliers() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 3.0, "the upper of an even count");
        assert_eq!(median(&mut [1.0, 1.0, 1e9]), 1.0);
        assert_eq!(median(&mut []), 0.0);
        assert!((sigma_from_deviations(&mut [1.0, 2.0, 3.0]) - 2.9652).abs() < 1e-5);
    }
}
