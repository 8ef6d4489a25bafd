//! Dynamic batching: while an instance is free, requests waiting in the queue that can be merged (same
//! inputs with the same datatypes and the same non-batch dimensions, same outputs asked for) are joined
//! along the first dimension into one model call, and the outputs are cut back so each caller gets
//! exactly its own rows. Requests that cannot be merged wait for the next call; nothing is merged wrongly.

use std::time::Duration;
use switchyard_backend::BackendError;
use switchyard_protocol::Tensor;

/// When and how much to merge (Triton's `dynamic_batching`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchPolicy {
    /// How long the first request may wait for others; zero takes only what is already queued.
    pub max_queue_delay: Duration,
    /// Batch sizes to stop at as soon as they are reached.
    pub preferred: Vec<usize>,
}

/// Whether two requests' inputs and outputs line up so their rows can be stacked.
pub(crate) fn compatible(a: &[Tensor], a_outputs: &[String], b: &[Tensor], b_outputs: &[String]) -> bool {
    a_outputs == b_outputs
        && a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.data.datatype() == y.data.datatype()
                && x.shape.len() == y.shape.len()
                && x.shape[1..] == y.shape[1..]
        })
}

/// The first dimension of a request's inputs, when they all share one.
pub(crate) fn rows(inputs: &[Tensor]) -> Option<usize> {
    let first = inputs.first()?.shape.first().copied()?;
    inputs.iter().all(|t| t.shape.first() == Some(&first)).then_some(first)
}

/// Stacks several requests' inputs (all compatible) along the first dimension.
pub(crate) fn merge(mut requests: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>, BackendError> {
    let mut merged = requests.remove(0);
    for request in requests {
        for (into, t) in merged.iter_mut().zip(request) {
            into.shape[0] += t.shape[0];
            into.data.append(t.data).map_err(|e| BackendError::Inference(e.to_string()))?;
        }
    }
    Ok(merged)
}

/// Cuts merged outputs back into one set per request, `rows` rows each, in order.
pub(crate) fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, BackendError> {
    let total: usize = rows.iter().sum();
    let mut per: Vec<Vec<Tensor>> = rows.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for mut out in outputs {
        if out.shape.first() != Some(&total) {
            return Err(BackendError::Inference(format!(
                "output '{}' has shape {:?}, not {total} rows: the model cannot be batched",
                out.name, out.shape
            )));
        }
        let per_row = out.data.len().checked_div(total).unwrap_or(0);
        for (i, &r) in rows.iter().enumerate() {
            let rest = out.data.split_off(r * per_row);
            let mut shape = out.shape.clone();
            shape[0] = r;
            per[i].push(Tensor { name: out.name.clone(), shape, data: std::mem::replace(&mut out.data, rest) });
        }
    }
    Ok(per)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_protocol::TensorData;

    fn t(name: &str, rows: usize, v: Vec<f32>) -> Tensor {
        let cols = v.len() / rows.max(1);
        Tensor { name: name.into(), shape: vec![rows, cols], data: TensorData::Fp32(v) }
    }

    #[test]
    fn merge_then_split_gives_each_caller_its_rows() {
        let merged = merge(vec![vec![t("x", 1, vec![1., 2.])], vec![t("x", 2, vec![3., 4., 5., 6.])]]).unwrap();
        assert_eq!(merged[0].shape, vec![3, 2]);
        assert_eq!(merged[0].data, TensorData::Fp32(vec![1., 2., 3., 4., 5., 6.]));
        let back = split(merged, &[1, 2]).unwrap();
        assert_eq!(back[0][0], t("x", 1, vec![1., 2.]));
        assert_eq!(back[1][0], t("x", 2, vec![3., 4., 5., 6.]));
    }

    #[test]
    fn only_matching_requests_are_compatible() {
        let out = vec!["y".to_string()];
        let a = [t("x", 1, vec![1., 2.])];
        assert!(compatible(&a, &out, &[t("x", 3, vec![0.; 6])], &out));
        assert!(!compatible(&a, &out, &[t("x", 1, vec![0.; 3])], &out), "other width");
        assert!(!compatible(&a, &out, &[t("z", 1, vec![0.; 2])], &out), "other input");
        assert!(!compatible(&a, &out, &a, &["w".to_string()]), "other outputs");
        let ints = [Tensor { name: "x".into(), shape: vec![1, 2], data: TensorData::Int32(vec![1, 2]) }];
        assert!(!compatible(&a, &out, &ints, &out), "other datatype");
    }

    #[test]
    fn outputs_without_the_batch_rows_are_an_error() {
        assert!(split(vec![t("y", 2, vec![1., 2.])], &[1, 2]).is_err());
    }
}
