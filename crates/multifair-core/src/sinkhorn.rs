//! Debiased Sinkhorn divergence between two 1-D point clouds with uniform weights and the
//! quadratic cost |x - y|^2 / 2 (geomloss's `SamplesLoss("sinkhorn", p=2, blur)`, eps = blur^2),
//! written in the log domain so that small blurs stay finite. Small inputs (a batch's losses)
//! make the plain O(n m) iteration enough.

/// log sum_j exp(v_j), stable.
fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// Entropic OT value OT_eps(a, b) = <a, f> + <b, g> at the fixed point of the dual updates,
/// with eps annealed from the cloud's diameter down to `eps` (eps-scaling).
fn entropic_ot(x: &[f64], y: &[f64], eps: f64) -> f64 {
    let (n, m) = (x.len(), y.len());
    let (log_a, log_b) = (-(n as f64).ln(), -(m as f64).ln());
    let cost = |i: usize, j: usize| (x[i] - y[j]).powi(2) / 2.0;
    let lo = x.iter().chain(y).cloned().fold(f64::INFINITY, f64::min);
    let hi = x.iter().chain(y).cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut e = ((hi - lo).powi(2) / 2.0).max(eps);
    let (mut f, mut g) = (vec![0.0; n], vec![0.0; m]);
    let (mut at_target, mut iterations) = (0, 0);
    // Bounded: the annealing halves e at most ~2100 times over f64's range, then at most 2000
    // iterations at the target.
    while iterations < 5000 {
        iterations += 1;
        for (i, fi) in f.iter_mut().enumerate() {
            *fi = -e * log_sum_exp((0..m).map(|j| log_b + (g[j] - cost(i, j)) / e));
        }
        let mut change: f64 = 0.0;
        for (j, gj) in g.iter_mut().enumerate() {
            let new = -e * log_sum_exp((0..n).map(|i| log_a + (f[i] - cost(i, j)) / e));
            change = change.max((new - *gj).abs());
            *gj = new;
        }
        if e > eps {
            e = (e * 0.5).max(eps);
        } else {
            at_target += 1;
            if change < 1e-12 || at_target >= 2000 {
                break;
            }
        }
    }
    f.iter().sum::<f64>() / n as f64 + g.iter().sum::<f64>() / m as f64
}

/// S_eps(a, b) = OT_eps(a, b) - OT_eps(a, a) / 2 - OT_eps(b, b) / 2, eps = blur^2. NaN when a
/// point or the blur is not finite or the blur is not positive (a diverged run's losses): the
/// caller's loss turns NaN and the run stops, where the iteration would never settle.
pub fn sinkhorn_divergence(x: &[f64], y: &[f64], blur: f64) -> f64 {
    if x.is_empty() || y.is_empty() {
        return 0.0;
    }
    if !(blur.is_finite() && blur > 0.0) || !x.iter().chain(y).all(|v| v.is_finite()) {
        return f64::NAN;
    }
    let eps = blur * blur;
    entropic_ot(x, y, eps) - entropic_ot(x, x, eps) / 2.0 - entropic_ot(y, y, eps) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_points_cost_exactly_half_the_squared_distance() {
        // One point each: the only coupling moves all mass, and OT(a, a) = 0.
        assert!((sinkhorn_divergence(&[0.5], &[2.0], 0.1) - 1.125).abs() < 1e-9);
    }

    #[test]
    fn a_translated_cloud_costs_half_the_squared_shift() {
        // For the quadratic cost, OT_eps(a, a + t) = OT_eps(a, a) + t^2 / 2 for any eps: the
        // cross term averages to zero over couplings with equal marginals.
        let a = [0.0, 1.0, 3.0, 3.5];
        let b: Vec<f64> = a.iter().map(|v| v + 0.7).collect();
        for blur in [0.05, 0.1, 1.0] {
            let s = sinkhorn_divergence(&a, &b, blur);
            assert!((s - 0.245).abs() < 1e-8, "blur {blur}: {s}");
        }
        assert!(sinkhorn_divergence(&a, &a, 0.1).abs() < 1e-9);
    }

    /// Inputs a diverging run produces end at once, as NaN: infinite or NaN losses, a blur of
    /// 0 (the annealing would never reach it).
    #[test]
    fn non_finite_points_or_a_zero_blur_give_nan_at_once() {
        for (x, blur) in [
            ([0.0, f64::INFINITY], 0.1),
            ([0.0, f64::NAN], 0.1),
            ([0.0, 1.0], 0.0),
        ] {
            assert!(sinkhorn_divergence(&x, &[0.5], blur).is_nan());
        }
    }

    #[test]
    fn stays_finite_for_a_tiny_blur_and_large_costs() {
        let a = [0.0, 10.0, 20.0];
        let b = [5.0, 15.0];
        let s = sinkhorn_divergence(&a, &b, 0.01);
        assert!(s.is_finite() && s > 0.0, "{s}");
    }
}
