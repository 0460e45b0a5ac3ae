//! A deterministic moving test picture, for the quality tests and the benchmark.
//!
//! Flat patterns flatter an encoder; this one has what a lesson stream has: a block of small
//! text-like glyphs scrolling like a document, a checkerboard drifting diagonally, a panning
//! gradient, and a shaded disc moving across it all. Every frame is a pure function
//! of its index, so runs are repeatable bit for bit.

use crate::picture::Picture;

/// The test picture generator for one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestPattern {
    width: usize,
    height: usize,
}

impl TestPattern {
    /// A generator of `width × height` pictures (even sizes, at least 16 × 16).
    #[must_use]
    pub const fn new(width: usize, height: usize) -> Self {
        Self { width, height }
    }

    /// Frame `index` as a new picture.
    #[must_use]
    pub fn frame(&self, index: u32) -> Picture {
        let mut picture = Picture::new(self.width, self.height);
        self.draw(index, &mut picture);
        picture
    }

    /// Draws frame `index` into `picture`, which must be of this generator's size.
    ///
    /// # Panics
    ///
    /// If the picture is of another size.
    pub fn draw(&self, index: u32, picture: &mut Picture) {
        assert_eq!((picture.width(), picture.height()), (self.width, self.height), "picture size");
        let (w, h) = (self.width as i64, self.height as i64);
        let n = i64::from(index);
        let short = w.min(h);
        // The disc follows a Lissajous path.
        let radius = short / 6;
        let phase = n as f64 / 30.0;
        let cx = w / 2 + ((w / 2 - radius) as f64 * 0.8 * (phase * 0.9).sin()) as i64;
        let cy = h / 2 + ((h / 2 - radius) as f64 * 0.8 * (phase * 1.3).cos()) as i64;
        // Text: lines of glyphs like a slide, the whole block scrolling up 1 px per frame.
        let cell_w = (short / 32).max(4);
        let cell_h = cell_w * 3 / 2;
        let line_h = cell_h * 3 / 2;
        let text_top = h / 12;
        let text_bottom = h * 5 / 12;
        let text_right = w * 11 / 12;
        let checker = (short / 22).max(2);
        let [y_plane, u_plane, v_plane] = picture.planes_mut();
        for (y, row) in y_plane.chunks_exact_mut(self.width).enumerate() {
            let y = y as i64;
            let in_text_rows = (text_top..text_bottom).contains(&y);
            let sy = y - text_top + n;
            let line = sy.div_euclid(line_h);
            let gy = sy.rem_euclid(line_h) * 9 / cell_h;
            for (x, sample) in row.iter_mut().enumerate() {
                let x = x as i64;
                // Background: a gradient panning right, 2 px per frame (a triangle wave, no seam).
                let period = 2 * w;
                let t = (x + 2 * n).rem_euclid(period);
                let tri = if t < w { t } else { period - t };
                let mut luma = 50 + tri * 120 / w + y * 30 / h;
                if in_text_rows && x >= w / 12 && x < text_right {
                    luma = 215;
                    let gx = (x - w / 12).rem_euclid(cell_w) * 7 / cell_w;
                    let glyph = (x - w / 12).div_euclid(cell_w) + line * 7919;
                    if gx < 5 && gy < 7 && glyph_bit(glyph, gx, gy) {
                        luma = 40;
                    }
                } else if y > h * 7 / 12 && x < w / 2 {
                    // A checkerboard drifting diagonally, 1 px per frame.
                    let on = ((x + n).div_euclid(checker) + (y + n).div_euclid(checker)) % 2 == 0;
                    luma = if on { 180 } else { 70 };
                }
                let (dx, dy) = (x - cx, y - cy);
                let d2 = dx * dx + dy * dy;
                if d2 < radius * radius {
                    // A soft shaded disc.
                    luma = 200 - d2 * 80 / (radius * radius);
                }
                *sample = luma.clamp(16, 235) as u8;
            }
        }
        let cw = self.width.div_ceil(2);
        for (y, (u_row, v_row)) in u_plane.chunks_exact_mut(cw).zip(v_plane.chunks_exact_mut(cw)).enumerate() {
            let y = 2 * y as i64;
            for (x, (u, v)) in u_row.iter_mut().zip(v_row.iter_mut()).enumerate() {
                let x = 2 * x as i64;
                let (dx, dy) = (x - cx, y - cy);
                let (cu, cv) = if dx * dx + dy * dy < radius * radius {
                    (90, 200)
                } else {
                    (100 + (x + 2 * n).rem_euclid(w) * 56 / w, 110 + y * 40 / h)
                };
                *u = cu.clamp(16, 240) as u8;
                *v = cv.clamp(16, 240) as u8;
            }
        }
    }
}

/// Bit (`gx`, `gy`) of glyph number `glyph`'s 5 × 7 bitmap; about one glyph in seven is a space.
fn glyph_bit(glyph: i64, gx: i64, gy: i64) -> bool {
    let mut z = (glyph as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    if z.is_multiple_of(7) {
        return false;
    }
    (z >> (gy * 5 + gx)) & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_repeatable_and_move() {
        let pattern = TestPattern::new(320, 180);
        let a = pattern.frame(7);
        assert_eq!(a, pattern.frame(7));
        let b = pattern.frame(8);
        let changed = a.as_ref().y.data.iter().zip(b.as_ref().y.data).filter(|(p, q)| p != q).count();
        assert!(changed > 320 * 180 / 4, "only {changed} samples moved");
    }
}
