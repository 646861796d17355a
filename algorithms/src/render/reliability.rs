//! A reliability diagram as a PNG: forecast probability (x, 0..1) against
//! observed frequency (y, 0..1), the diagonal of perfect reliability, and
//! one curve per series (e.g. Raincast and persistence) through its
//! non-empty bins, each bin a dot.

use super::font::{glyph, ink_columns, text_width, GAP, GLYPH_W};
use super::RenderError;

/// Side of the square plot area, pixels.
const PLOT_PX: usize = 240;
/// Margins: left (y labels), right, top (title), bottom (x labels).
const LEFT: usize = 34;
const RIGHT: usize = 10;
const TOP: usize = 22;
const BOTTOM: usize = 30;

/// Palette indices.
const WHITE: u8 = 0;
const GRID: u8 = 1;
const INK: u8 = 2;
/// The series colours start here.
const SERIES: u8 = 3;
const PALETTE: [[u8; 3]; 6] = [
    [255, 255, 255],
    [215, 218, 224],
    [40, 44, 56],
    [35, 105, 225], // first series: blue
    [240, 140, 20], // second: orange
    [25, 160, 65],  // third: green
];

/// One curve of the diagram: a label and its points `(mean forecast
/// probability, observed frequency)`, both 0..1, in bin order.
#[derive(Debug, Clone, PartialEq)]
pub struct ReliabilitySeries {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: u8) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            self.px[y as usize * self.w + x as usize] = c;
        }
    }

    /// A line of width ~2 px (Bresenham, doubled).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: u8, thick: bool) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            if thick {
                self.set(x + 1, y, c);
                self.set(x, y + 1, c);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn dot(&mut self, (x, y): (i64, i64), c: u8) {
        for dy in -2..=2 {
            for dx in -2..=2 {
                if dx * dx + dy * dy <= 5 {
                    self.set(x + dx, y + dy, c);
                }
            }
        }
    }

    fn text(&mut self, x: usize, y: usize, s: &str, c: u8) {
        let mut cx = x as i64;
        for ch in s.chars() {
            let (first, width) = ink_columns(ch);
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..width {
                    if bits & (1 << (GLYPH_W - 1 - (first + col))) != 0 {
                        self.set(cx + col as i64, (y + row) as i64, c);
                    }
                }
            }
            cx += (width + GAP) as i64;
        }
    }
}

/// Renders the diagram (at most 3 series; more are left out) with a title.
/// Points outside 0..1 are clamped; NaN points are skipped.
pub fn render_reliability_png(
    title: &str,
    series: &[ReliabilitySeries],
) -> Result<Vec<u8>, RenderError> {
    let (w, h) = (LEFT + PLOT_PX + RIGHT, TOP + PLOT_PX + BOTTOM);
    let mut cv = Canvas {
        w,
        h,
        px: vec![WHITE; w * h],
    };
    let at = |p: f64, q: f64| -> (i64, i64) {
        let (p, q) = (p.clamp(0.0, 1.0), q.clamp(0.0, 1.0));
        (
            (LEFT as f64 + p * PLOT_PX as f64).round() as i64,
            ((TOP + PLOT_PX) as f64 - q * PLOT_PX as f64).round() as i64,
        )
    };
    // Grid every 0.2 with labels, the frame, the diagonal.
    for k in 0..=5 {
        let v = k as f64 / 5.0;
        cv.line(at(v, 0.0), at(v, 1.0), GRID, false);
        cv.line(at(0.0, v), at(1.0, v), GRID, false);
        let label = format!("{v:.1}");
        let (x, y) = at(v, 0.0);
        cv.text(
            (x as usize).saturating_sub(text_width(&label, 1) as usize / 2),
            y as usize + 4,
            &label,
            INK,
        );
        let (x, y) = at(0.0, v);
        cv.text(
            x as usize - 4 - text_width(&label, 1) as usize,
            (y as usize).saturating_sub(5),
            &label,
            INK,
        );
    }
    for (a, b) in [
        ((0.0, 0.0), (1.0, 0.0)),
        ((0.0, 0.0), (0.0, 1.0)),
        ((1.0, 0.0), (1.0, 1.0)),
        ((0.0, 1.0), (1.0, 1.0)),
    ] {
        cv.line(at(a.0, a.1), at(b.0, b.1), INK, false);
    }
    cv.line(at(0.0, 0.0), at(1.0, 1.0), INK, false);
    cv.text(LEFT, 6, title, INK);
    cv.text(
        LEFT + PLOT_PX / 2 - 40,
        TOP + PLOT_PX + 17,
        "forecast probability",
        INK,
    );
    // Series and their legend (top left, inside the plot).
    for (i, s) in series
        .iter()
        .take(PALETTE.len() - SERIES as usize)
        .enumerate()
    {
        let c = SERIES + i as u8;
        let pts: Vec<(i64, i64)> = s
            .points
            .iter()
            .filter(|(p, q)| p.is_finite() && q.is_finite())
            .map(|(p, q)| at(*p, *q))
            .collect();
        for pair in pts.windows(2) {
            cv.line(pair[0], pair[1], c, true);
        }
        for p in &pts {
            cv.dot(*p, c);
        }
        let y = TOP + 6 + 13 * i;
        cv.line(
            ((LEFT + 8) as i64, (y + 4) as i64),
            ((LEFT + 22) as i64, (y + 4) as i64),
            c,
            true,
        );
        cv.text(LEFT + 27, y, &s.label, INK);
    }
    super::indexed_png(
        (w as u32, h as u32),
        png::BitDepth::Eight,
        PALETTE.concat(),
        None,
        &cv.px,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn diagram_decodes_and_draws_each_series() {
        let s = vec![
            ReliabilitySeries {
                label: "raincast".into(),
                points: vec![(0.05, 0.02), (0.5, 0.4), (0.95, 0.8)],
            },
            ReliabilitySeries {
                label: "persistence".into(),
                points: vec![(0.0, 0.05), (1.0, 0.6)],
            },
        ];
        let png = render_reliability_png("demo +5 min", &s).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(png));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!(
            (info.width as usize, info.height as usize),
            (LEFT + PLOT_PX + RIGHT, TOP + PLOT_PX + BOTTOM)
        );
        let px = &buf[..info.buffer_size()];
        for c in [SERIES, SERIES + 1, INK, GRID] {
            assert!(px.iter().filter(|v| **v == c).count() > 20, "colour {c}");
        }
        // No series: still a diagram, no series colour.
        let png = render_reliability_png("empty", &[]).unwrap();
        let mut r = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        assert!(!buf[..info.buffer_size()].contains(&SERIES));
    }
}
