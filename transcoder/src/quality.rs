//! Objective picture quality: PSNR and SSIM of luma planes, for tests and benchmarks.

use crate::picture::PlaneRef;

/// Mean squared error between two planes of the same size.
///
/// # Panics
///
/// If the planes differ in size.
#[must_use]
pub fn mse(a: PlaneRef<'_>, b: PlaneRef<'_>) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height), "plane sizes");
    let mut sum = 0u64;
    for y in 0..a.height {
        for (&p, &q) in a.row(y).iter().zip(b.row(y)) {
            let d = i64::from(p) - i64::from(q);
            sum += (d * d) as u64;
        }
    }
    sum as f64 / (a.width * a.height).max(1) as f64
}

/// PSNR in dB for an 8-bit plane's mean squared error (capped at 100 dB for identical planes).
#[must_use]
pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse <= 1e-10 { 100.0 } else { 10.0 * (255.0 * 255.0 / mse).log10() }
}

/// PSNR in dB between two planes.
#[must_use]
pub fn psnr(a: PlaneRef<'_>, b: PlaneRef<'_>) -> f64 {
    psnr_from_mse(mse(a, b))
}

/// Mean SSIM (Wang et al. 2004) over 8 × 8 windows every 4 samples, with uniform weights: 1.0
/// for identical planes, lower as structure is lost.
///
/// # Panics
///
/// If the planes differ in size.
#[must_use]
pub fn ssim(a: PlaneRef<'_>, b: PlaneRef<'_>) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height), "plane sizes");
    const WINDOW: usize = 8;
    const STEP: usize = 4;
    let c1 = (0.01f64 * 255.0).powi(2);
    let c2 = (0.03f64 * 255.0).powi(2);
    let n = (WINDOW * WINDOW) as f64;
    let (mut total, mut count) = (0.0, 0usize);
    let mut y = 0;
    while y + WINDOW <= a.height {
        let mut x = 0;
        while x + WINDOW <= a.width {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0u64, 0u64, 0u64, 0u64, 0u64);
            for row in y..y + WINDOW {
                for (&p, &q) in a.row(row)[x..x + WINDOW].iter().zip(&b.row(row)[x..x + WINDOW]) {
                    let (p, q) = (u64::from(p), u64::from(q));
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let (ma, mb) = (sa as f64 / n, sb as f64 / n);
            let va = saa as f64 / n - ma * ma;
            let vb = sbb as f64 / n - mb * mb;
            let cov = sab as f64 / n - ma * mb;
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            count += 1;
            x += STEP;
        }
        y += STEP;
    }
    if count == 0 { 1.0 } else { total / count as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsrc::TestPattern;

    #[test]
    fn identical_is_perfect_and_noise_is_not() {
        let a = TestPattern::new(160, 96).frame(3);
        assert_eq!(psnr(a.as_ref().y, a.as_ref().y), 100.0);
        assert!((ssim(a.as_ref().y, a.as_ref().y) - 1.0).abs() < 1e-9);
        let b = TestPattern::new(160, 96).frame(40);
        let (p, s) = (psnr(a.as_ref().y, b.as_ref().y), ssim(a.as_ref().y, b.as_ref().y));
        assert!(p < 25.0 && s < 0.9, "psnr {p} ssim {s}");
    }
}
