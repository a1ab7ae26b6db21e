//! Where the labels go: every label inside the plot area, none over another, and none
//! over a curve where a free place exists.

/// A rectangle in pixels, `x0..x1` × `y0..y1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rect {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

impl Rect {
    /// `w` × `h` with its top-left corner at `(x, y)`.
    pub fn at((x, y): (i32, i32), (w, h): (i32, i32)) -> Self {
        Rect {
            x0: x,
            y0: y,
            x1: x.saturating_add(w),
            y1: y.saturating_add(h),
        }
    }

    fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }

    fn contains(&self, (x, y): (i32, i32)) -> bool {
        self.x0 <= x && x <= self.x1 && self.y0 <= y && y <= self.y1
    }

    /// Whether the segment `a`–`b` passes through the rectangle (sampled every 2 px).
    fn crosses(&self, a: (i32, i32), b: (i32, i32)) -> bool {
        let (dx, dy) = (
            i64::from(b.0) - i64::from(a.0),
            i64::from(b.1) - i64::from(a.1),
        );
        let n = (dx.abs().max(dy.abs()) / 2).clamp(1, 4_000);
        (0..=n).any(|k| {
            let x = i64::from(a.0) + dx * k / n;
            let y = i64::from(a.1) + dy * k / n;
            match (i32::try_from(x), i32::try_from(y)) {
                (Ok(x), Ok(y)) => self.contains((x, y)),
                _ => false,
            }
        })
    }

    /// Moved (not resized) to lie inside `area` as far as it fits.
    fn clamped(self, area: &Rect) -> Rect {
        let (w, h) = (self.x1 - self.x0, self.y1 - self.y0);
        let x = self.x0.min(area.x1 - w).max(area.x0);
        let y = self.y0.min(area.y1 - h).max(area.y0);
        Rect::at((x, y), (w, h))
    }
}

/// Places labels one after another inside `area`.
#[derive(Debug)]
pub(super) struct Layout {
    area: Rect,
    taken: Vec<Rect>,
    lines: Vec<((i32, i32), (i32, i32))>,
}

impl Layout {
    /// Labels go inside `area` (the plot area, shrunk by a small inset).
    pub fn new(area: Rect) -> Self {
        Layout {
            area,
            taken: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// A drawn polyline (pixels) that labels should not cover.
    pub fn avoid_line(&mut self, points: &[(i32, i32)]) {
        for pair in points.windows(2) {
            if let [a, b] = pair {
                self.lines.push((*a, *b));
            }
        }
    }

    /// A drawn box (a marker) that labels should not cover.
    pub fn avoid(&mut self, r: Rect) {
        self.taken.push(r);
    }

    /// The top-left corner for a label of `size`: the first of `candidates` (top-left
    /// corners, each moved inside the area) that covers neither another label nor a
    /// line; else the first that covers no label; else the first. Always inside the area
    /// when the label is no larger than it.
    pub fn place(&mut self, size: (i32, i32), candidates: &[(i32, i32)]) -> (i32, i32) {
        let rects: Vec<Rect> = candidates
            .iter()
            .map(|c| Rect::at(*c, size).clamped(&self.area))
            .collect();
        let free = |r: &Rect| !self.taken.iter().any(|t| t.overlaps(r));
        let clear = |r: &Rect| !self.lines.iter().any(|(a, b)| r.crosses(*a, *b));
        let chosen = rects
            .iter()
            .find(|r| free(r) && clear(r))
            .or_else(|| rects.iter().find(|r| free(r)))
            .or(rects.first())
            .copied()
            .unwrap_or_else(|| Rect::at((self.area.x0, self.area.y0), size));
        self.taken.push(chosen);
        (chosen.x0, chosen.y0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_inside_and_apart() {
        let area = Rect::at((10, 10), (200, 100));
        let mut l = Layout::new(area);
        l.avoid_line(&[(10, 10), (210, 110)]);
        // Asked for past the right edge: moved inside.
        let a = l.place((50, 10), &[(190, 50), (20, 90)]);
        assert!(a.0 + 50 <= 210 && a.0 >= 10 && a.1 >= 10 && a.1 + 10 <= 110);
        // The same place again: another candidate, not on top of the first.
        let b = l.place((50, 10), &[(190, 50), (20, 20), (20, 95)]);
        assert!(!Rect::at(a, (50, 10)).overlaps(&Rect::at(b, (50, 10))));
        // Off the diagonal line where a candidate allows it.
        let c = l.place((20, 10), &[(100, 55), (150, 20)]);
        assert_eq!(c, (150, 20));
    }
}
