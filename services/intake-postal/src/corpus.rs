//! What a real scanner does to a page, for the tests' generated corpus and
//! the benchmark's stacks: the sheet fed crooked (rotation, any angle), the
//! feed pulling one side (skew, a shear of a few degrees), and sensor noise
//! with dust specks. Seeded, so a failing page can be made again.

use image::{GrayImage, Luma};
use rand::{Rng, SeedableRng, rngs::StdRng};

#[derive(Debug, Clone, Copy)]
pub struct Distortion {
    /// Degrees, counter-clockwise.
    pub rotation: f64,
    /// Degrees of horizontal shear.
    pub skew: f64,
    /// Standard deviation of the grey noise, in levels (0-255).
    pub noise: f64,
    /// Share of pixels turned to black or white specks.
    pub specks: f64,
    pub seed: u64,
}

/// The page as the scanner would deliver it: distorted onto a white sheet
/// large enough to hold it whole.
pub fn distort(page: &GrayImage, d: Distortion) -> GrayImage {
    let (w, h) = (f64::from(page.width()), f64::from(page.height()));
    let (sin, cos) = d.rotation.to_radians().sin_cos();
    let shear = d.skew.to_radians().tan();
    // Forward map: shear then rotate about the centre.
    let forward = |x: f64, y: f64| {
        let (x, y) = (x - w / 2.0, y - h / 2.0);
        let x = x + shear * y;
        (x * cos - y * sin, x * sin + y * cos)
    };
    let corners = [(0.0, 0.0), (w, 0.0), (0.0, h), (w, h)].map(|(x, y)| forward(x, y));
    let half_w = corners.iter().map(|c| c.0.abs()).fold(0.0, f64::max);
    let half_h = corners.iter().map(|c| c.1.abs()).fold(0.0, f64::max);
    // Less a hair before rounding up: sin(180°) is not exactly 0 in floats.
    let (out_w, out_h) = (
        (2.0 * half_w - 1e-6).ceil() as u32,
        (2.0 * half_h - 1e-6).ceil() as u32,
    );
    let mut rng = StdRng::seed_from_u64(d.seed);
    let mut out = GrayImage::new(out_w, out_h);
    for (ox, oy, px) in out.enumerate_pixels_mut() {
        // Inverse map: un-rotate, un-shear, sample bilinearly.
        // Pixel centres, so a half turn lands each pixel on a pixel.
        let (x, y) = (f64::from(ox) + 0.5 - half_w, f64::from(oy) + 0.5 - half_h);
        let (x, y) = (x * cos + y * sin, -x * sin + y * cos);
        let x = x - shear * y;
        let v = sample(page, x + w / 2.0 - 0.5, y + h / 2.0 - 0.5);
        let v = if d.noise > 0.0 {
            v + gaussian(&mut rng) * d.noise
        } else {
            v
        };
        let v = if d.specks > 0.0 && rng.random::<f64>() < d.specks {
            if rng.random::<bool>() { 0.0 } else { 255.0 }
        } else {
            v
        };
        *px = Luma([v.clamp(0.0, 255.0) as u8]);
    }
    out
}

fn sample(img: &GrayImage, x: f64, y: f64) -> f64 {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, y0) = (x.floor() as i64, y.floor() as i64);
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let at = |x: i64, y: i64| {
        if x < 0 || y < 0 || x >= w || y >= h {
            255.0
        } else {
            f64::from(img.get_pixel(x as u32, y as u32).0[0])
        }
    };
    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
    let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The distortions of the corpus: rotations spread over 0 to 180 degrees
/// either way, skew up to 3 degrees, noise and specks of a worn scanner.
pub fn corpus_distortions(count: usize, seed: u64) -> Vec<Distortion> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            // Every fourth page lands on a right angle or upside down, as
            // most real misfeeds do; the rest at any angle.
            let rotation = match i % 4 {
                0 => [0.0, 90.0, 180.0, -90.0][(i / 4) % 4],
                _ => rng.random_range(-180.0..=180.0),
            };
            Distortion {
                rotation,
                skew: rng.random_range(-3.0..=3.0),
                noise: rng.random_range(0.0..=18.0),
                specks: rng.random_range(0.0..=0.004),
                seed: rng.random(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_turn_keeps_the_size_and_moves_the_corner() {
        let mut page = GrayImage::from_pixel(40, 20, Luma([255]));
        page.put_pixel(1, 1, Luma([0]));
        let turned = distort(
            &page,
            Distortion {
                rotation: 180.0,
                skew: 0.0,
                noise: 0.0,
                specks: 0.0,
                seed: 1,
            },
        );
        assert_eq!(turned.dimensions(), (40, 20));
        assert!(turned.get_pixel(38, 18).0[0] < 128);
        assert!(turned.get_pixel(1, 1).0[0] > 128);
    }

    #[test]
    fn a_quarter_turn_swaps_the_sides() {
        let page = GrayImage::from_pixel(40, 20, Luma([255]));
        let d = Distortion {
            rotation: 90.0,
            skew: 0.0,
            noise: 0.0,
            specks: 0.0,
            seed: 1,
        };
        assert_eq!(distort(&page, d).dimensions(), (20, 40));
    }
}
