//! Has a stream of values (a model output, or one input feature) drifted away from a reference? The
//! reference fixes bins (edges at its quantiles, so each bin holds about the same share of it); the
//! recent values are counted into the same bins over a sliding window; the two histograms are compared
//! by the population stability index (PSI), Kullback–Leibler divergence (recent against reference) and
//! Jensen–Shannon divergence (symmetric, bounded by ln 2). PSI over 0.1 is a warning and over 0.25
//! critical, the usual data-drift rule of thumb; both thresholds are settable.
//!
//! Bounded memory and O(1) work per value: the window is a ring of `blocks` sub-windows of counts, the
//! oldest dropped whole when a new one starts, so it always covers between `window - window/blocks` and
//! `window` of the latest values. The divergences are computed when asked (off the request path), over
//! `bins` counts. Empty bins are smoothed with half a count, so no divergence is infinite.

use serde::Serialize;

/// Reference bins: the inner edges (values below `edges[0]` fall in bin 0, at or above the last edge in
/// the last bin) and the reference's share in each bin.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    edges: Vec<f64>,
    shares: Vec<f64>,
}

/// Why a reference cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("a drift reference needs at least {needed} finite values, not {got}")]
    TooFew { needed: usize, got: usize },
    #[error("a drift reference needs between 2 and 100 bins, not {0}")]
    Bins(usize),
    #[error("a series is named `input:<tensor>[<column>]` or `output:<tensor>[<column>]` (no `[..]`: column 0)")]
    Name,
}

impl Reference {
    /// Bins at the quantiles of `sample` (`bins` of them, fewer where values repeat), and the sample's
    /// share in each.
    pub fn from_sample(sample: &[f64], bins: usize) -> Result<Self, ReferenceError> {
        if !(2..=100).contains(&bins) {
            return Err(ReferenceError::Bins(bins));
        }
        let mut v: Vec<f64> = sample.iter().copied().filter(|x| x.is_finite()).collect();
        let needed = bins * 10;
        if v.len() < needed {
            return Err(ReferenceError::TooFew { needed, got: v.len() });
        }
        v.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = (1..bins).map(|i| v[i * v.len() / bins]).collect();
        edges.dedup();
        let mut counts = vec![0u64; edges.len() + 1];
        for x in &v {
            counts[bin(&edges, *x)] += 1;
        }
        Ok(Self { shares: smoothed(&counts), edges })
    }

    pub fn bins(&self) -> usize {
        self.shares.len()
    }

    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// The bin of `x` (NaN in the last bin).
    pub fn bin(&self, x: f64) -> usize {
        bin(&self.edges, x)
    }
}

fn bin(edges: &[f64], x: f64) -> usize {
    if x.is_nan() { edges.len() } else { edges.partition_point(|e| *e <= x) }
}

/// Shares with half a count added to every bin, so none is zero.
fn smoothed(counts: &[u64]) -> Vec<f64> {
    let total = counts.iter().sum::<u64>() as f64 + 0.5 * counts.len() as f64;
    counts.iter().map(|&c| (c as f64 + 0.5) / total).collect()
}

/// The divergences of a window from its reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Divergence {
    pub psi: f64,
    /// KL(recent || reference), in nats.
    pub kl: f64,
    /// Jensen–Shannon divergence, in nats (at most ln 2).
    pub js: f64,
    /// Values in the window.
    pub count: u64,
}

/// Compares two histograms' shares (same bins, none zero).
pub fn divergence(reference: &[f64], recent: &[f64]) -> (f64, f64, f64) {
    let (mut psi, mut kl, mut js) = (0.0, 0.0, 0.0);
    for (&q, &p) in reference.iter().zip(recent) {
        psi += (p - q) * (p / q).ln();
        kl += p * (p / q).ln();
        let m = 0.5 * (p + q);
        js += 0.5 * p * (p / m).ln() + 0.5 * q * (q / m).ln();
    }
    (psi, kl, js)
}

/// How far a stream has drifted, by its PSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Warning,
    Critical,
}

/// PSI thresholds: `warning` (default 0.1) and `critical` (default 0.25).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warning: f64,
    pub critical: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { warning: 0.1, critical: 0.25 }
    }
}

impl Thresholds {
    pub fn level(&self, psi: f64) -> Level {
        if psi > self.critical {
            Level::Critical
        } else if psi > self.warning {
            Level::Warning
        } else {
            Level::Ok
        }
    }
}

/// The recent values' bin counts over a sliding window (module header).
#[derive(Debug, Clone)]
pub struct Window {
    /// `blocks` sub-windows of bin counts, a ring; `current` is being filled.
    blocks: Vec<Vec<u64>>,
    filled: Vec<u64>,
    current: usize,
    per_block: u64,
}

impl Window {
    /// A window of about `window` values over `bins` bins, in `blocks` sub-windows.
    pub fn new(bins: usize, window: u64, blocks: usize) -> Self {
        let blocks = blocks.max(1);
        Self {
            blocks: vec![vec![0; bins]; blocks],
            filled: vec![0; blocks],
            current: 0,
            per_block: (window / blocks as u64).max(1),
        }
    }

    /// Counts one value in bin `b`.
    pub fn add(&mut self, b: usize) {
        if self.filled[self.current] == self.per_block {
            self.current = (self.current + 1) % self.blocks.len();
            self.blocks[self.current].iter_mut().for_each(|c| *c = 0);
            self.filled[self.current] = 0;
        }
        if let Some(c) = self.blocks[self.current].get_mut(b) {
            *c += 1;
            self.filled[self.current] += 1;
        }
    }

    /// Values in the window now.
    pub fn count(&self) -> u64 {
        self.filled.iter().sum()
    }

    /// The window's divergence from `reference`; `None` while it holds fewer than `min_count` values.
    pub fn divergence(&self, reference: &Reference, min_count: u64) -> Option<Divergence> {
        let count = self.count();
        if count < min_count.max(1) {
            return None;
        }
        let mut counts = vec![0u64; reference.bins()];
        for block in &self.blocks {
            for (c, b) in counts.iter_mut().zip(block) {
                *c += b;
            }
        }
        let (psi, kl, js) = divergence(&reference.shares, &smoothed(&counts));
        Some(Divergence { psi, kl, js, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard normal draws from a seeded xorshift (Box–Muller).
    fn normals(n: usize, seed: u64, shift: f64) -> Vec<f64> {
        let mut s = seed;
        let mut u = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n).map(|_| shift + (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos()).collect()
    }

    fn psi_of(shift: f64, seed: u64) -> Divergence {
        let reference = Reference::from_sample(&normals(20_000, 1, 0.0), 10).unwrap();
        let mut w = Window::new(reference.bins(), 5_000, 10);
        for x in normals(5_000, seed, shift) {
            w.add(reference.bin(x));
        }
        w.divergence(&reference, 1_000).unwrap()
    }

    #[test]
    fn an_unshifted_stream_stays_below_the_warning_and_shifts_cross_it() {
        let t = Thresholds::default();
        let same = psi_of(0.0, 2);
        assert_eq!(t.level(same.psi), Level::Ok, "{same:?}");
        assert!(same.psi < 0.02 && same.kl < 0.02 && same.js < 0.01, "{same:?}");
        // A mean shift of d standard deviations has a PSI near d^2: 0.4 is a warning, 1 critical.
        let warned = psi_of(0.4, 3);
        assert_eq!(t.level(warned.psi), Level::Warning, "{warned:?}");
        let one = psi_of(1.0, 4);
        assert_eq!(t.level(one.psi), Level::Critical, "{one:?}");
        assert!(one.js < std::f64::consts::LN_2 && one.kl > warned.kl, "{one:?} {warned:?}");
    }

    #[test]
    fn divergences_match_their_definitions() {
        let (psi, kl, js) = divergence(&[0.5, 0.5], &[0.9, 0.1]);
        let kl_want = 0.9 * (0.9f64 / 0.5).ln() + 0.1 * (0.1f64 / 0.5).ln();
        let psi_want = 0.4 * (0.9f64 / 0.5).ln() - 0.4 * (0.1f64 / 0.5).ln();
        assert!((kl - kl_want).abs() < 1e-12 && (psi - psi_want).abs() < 1e-12);
        assert!(js > 0.0 && js < kl);
        assert_eq!(divergence(&[0.2, 0.8], &[0.2, 0.8]), (0.0, 0.0, 0.0));
    }

    #[test]
    fn the_window_forgets_old_values_in_blocks() {
        let reference = Reference::from_sample(&normals(5_000, 5, 0.0), 10).unwrap();
        let mut w = Window::new(reference.bins(), 1_000, 10);
        for x in normals(3_000, 6, 3.0) {
            w.add(reference.bin(x));
        }
        assert_eq!(w.count(), 1_000);
        assert_eq!(Thresholds::default().level(w.divergence(&reference, 100).unwrap().psi), Level::Critical);
        // A window of unshifted values replaces them all.
        for x in normals(1_000, 7, 0.0) {
            w.add(reference.bin(x));
        }
        assert!(w.divergence(&reference, 100).unwrap().psi < 0.1);
        assert!(Window::new(10, 1_000, 10).divergence(&reference, 100).is_none());
    }

    #[test]
    fn references_need_enough_values_and_sane_bins() {
        assert_eq!(Reference::from_sample(&[1.0; 50], 10), Err(ReferenceError::TooFew { needed: 100, got: 50 }));
        assert_eq!(Reference::from_sample(&[1.0; 50], 1), Err(ReferenceError::Bins(1)));
        // A constant sample collapses to two bins (below and at the value).
        let r = Reference::from_sample(&[1.0; 200], 10).unwrap();
        assert_eq!((r.bins(), r.bin(0.5), r.bin(1.0), r.bin(f64::NAN)), (2, 0, 1, 1));
    }
}
