//! How a shadow model agrees with the arm that answered the client: exact and argmax agreement, largest
//! and mean absolute difference, cosine similarity, and the shadow's own errors, latency and shed count.
//! Running totals here; exported as gauges and counters labelled by endpoint and shadow.

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use switchyard_protocol::{Tensor, TensorData};

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Agreement {
    pub compared: u64,
    pub exact: u64,
    pub argmax_agree: u64,
    pub argmax_rows: u64,
    pub cosine_sum: f64,
    pub mean_abs_diff_sum: f64,
    pub max_abs_diff: f64,
    pub errors: u64,
    pub shed: u64,
}

#[derive(Debug)]
pub struct ShadowStats {
    totals: Mutex<Agreement>,
    /// Copies shed, apart from the totals: counted on the request path, so one atomic, never a lock.
    shed: std::sync::atomic::AtomicU64,
    /// Registered once: counting a shed or finished copy touches atomics only.
    handles: Handles,
}

#[derive(Debug)]
struct Handles {
    shed: Counter,
    ok: Counter,
    error: Counter,
    duration: Histogram,
    exact: Gauge,
    argmax: Gauge,
    cosine: Gauge,
    mean_abs_diff: Gauge,
    max_abs_diff: Gauge,
}

impl ShadowStats {
    pub fn new(endpoint: &str, shadow: &str) -> Self {
        let labels = [("endpoint", endpoint.to_owned()), ("shadow", shadow.to_owned())];
        let outcome = |o: &'static str| {
            let [e, s] = labels.clone();
            counter!("switchyard_shadow_requests_total", &[e, s, ("outcome", o.to_owned())])
        };
        let handles = Handles {
            shed: counter!("switchyard_shadow_shed_total", &labels),
            ok: outcome("success"),
            error: outcome("error"),
            duration: histogram!("switchyard_shadow_duration_seconds", &labels),
            exact: gauge!("switchyard_shadow_exact_agreement_ratio", &labels),
            argmax: gauge!("switchyard_shadow_argmax_agreement_ratio", &labels),
            cosine: gauge!("switchyard_shadow_cosine_similarity", &labels),
            mean_abs_diff: gauge!("switchyard_shadow_mean_abs_diff", &labels),
            max_abs_diff: gauge!("switchyard_shadow_max_abs_diff", &labels),
        };
        Self { totals: Mutex::default(), shed: std::sync::atomic::AtomicU64::new(0), handles }
    }

    pub fn snapshot(&self) -> Agreement {
        let mut a = *self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        a.shed = self.shed.load(std::sync::atomic::Ordering::Relaxed);
        a
    }

    pub fn shed(&self) {
        self.shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.handles.shed.increment(1);
    }

    pub fn failed(&self) {
        self.totals.lock().unwrap_or_else(PoisonError::into_inner).errors += 1;
        self.handles.error.increment(1);
    }

    /// Compares the shadow's outputs with the primary's, output by output (same names).
    pub fn compare(&self, primary: &[Tensor], shadow: &[Tensor], took: Duration) {
        self.handles.duration.record(took.as_secs_f64());
        self.handles.ok.increment(1);
        let mut t = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        for p in primary {
            let Some(s) = shadow.iter().find(|s| s.name == p.name) else { continue };
            t.compared += 1;
            t.exact += u64::from(p.data == s.data && p.shape == s.shape);
            let (Some(a), Some(b)) = (as_f64(&p.data), as_f64(&s.data)) else { continue };
            if a.len() != b.len() || a.is_empty() {
                continue;
            }
            let diffs = a.iter().zip(&b).map(|(x, y)| (x - y).abs());
            let (max, sum) = diffs.fold((0.0f64, 0.0), |(m, s), d| (m.max(d), s + d));
            t.max_abs_diff = t.max_abs_diff.max(max);
            t.mean_abs_diff_sum += sum / a.len() as f64;
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let denom = norm(&a) * norm(&b);
            t.cosine_sum += if denom > 0.0 { dot / denom } else { f64::from(u8::from(max == 0.0)) };
            let row = p.shape.last().copied().unwrap_or(a.len()).max(1);
            for (ra, rb) in a.chunks(row).zip(b.chunks(row)) {
                t.argmax_rows += 1;
                t.argmax_agree += u64::from(argmax(ra) == argmax(rb));
            }
        }
        let n = t.compared.max(1) as f64;
        let h = &self.handles;
        h.exact.set(t.exact as f64 / n);
        h.argmax.set(t.argmax_agree as f64 / t.argmax_rows.max(1) as f64);
        h.cosine.set(t.cosine_sum / n);
        h.mean_abs_diff.set(t.mean_abs_diff_sum / n);
        h.max_abs_diff.set(t.max_abs_diff);
    }
}

fn as_f64(d: &TensorData) -> Option<Vec<f64>> {
    Some(match d {
        TensorData::Fp32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Fp64(v) => v.clone(),
        TensorData::Fp16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::Bf16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::Int32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Int64(v) => v.iter().map(|&x| x as f64).collect(),
        _ => return None,
    })
}

fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().fold((0, f64::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: Vec<f32>) -> Tensor {
        Tensor { name: "y".into(), shape: vec![2, 2], data: TensorData::Fp32(v) }
    }

    #[test]
    fn agreement_is_measured() {
        let s = ShadowStats::new("e", "m/1");
        s.compare(&[t(vec![1.0, 0.0, 0.0, 1.0])], &[t(vec![1.0, 0.0, 0.0, 1.0])], Duration::ZERO);
        s.compare(&[t(vec![1.0, 0.0, 0.0, 1.0])], &[t(vec![0.0, 1.0, 0.0, 1.5])], Duration::ZERO);
        let a = s.snapshot();
        assert_eq!((a.compared, a.exact, a.argmax_rows, a.argmax_agree), (2, 1, 4, 3));
        assert_eq!(a.max_abs_diff, 1.0);
        assert!(a.cosine_sum < 2.0 && a.cosine_sum > 1.0);
    }
}
