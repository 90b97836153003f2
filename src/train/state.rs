//! Resumable training state: every parameter and the optimiser moments by parameter id, plus
//! the step, in `state.safetensors` + `state.json`. Restoring it and continuing gives the same
//! bytes as never stopping (the batch order is a pure function of the seed and epoch).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype as StDtype, SafeTensors};
use serde::{Deserialize, Serialize};

use super::optim::AdamW;
use crate::error::{Error, Result};

/// Counters saved beside the tensors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Optimiser steps completed.
    pub step: u64,
    /// Total steps of the run (a changed total means a different run).
    pub total_steps: u64,
}

fn values<T: burn::tensor::backend::Backend, const D: usize>(t: Tensor<T, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| Error::Other(format!("cannot read tensor: {e:?}")))
}

/// Writes the state of `model` and `opt` after `meta.step` steps into `dir` (atomically).
pub fn save<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    dir: &Path,
    model: &M,
    opt: &AdamW<AB::InnerBackend>,
    meta: &Meta,
) -> Result<()> {
    struct Collect<'a>(&'a mut Vec<(String, Vec<usize>, Vec<f32>)>, Option<Error>);
    impl<AB: AutodiffBackend> ModuleVisitor<AB> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
            let t = param.val();
            let shape = t.dims().to_vec();
            match values(t.inner()) {
                Ok(v) => self.0.push((format!("p{}", param.id.val()), shape, v)),
                Err(e) => self.1 = Some(e),
            }
        }
    }
    let mut tensors = Vec::new();
    let mut c = Collect(&mut tensors, None);
    model.visit(&mut c);
    if let Some(e) = c.1 {
        return Err(e);
    }
    for (id, (m, v)) in &opt.state {
        let n = m.dims()[0];
        tensors.push((format!("m{id}"), vec![n], values(m.clone())?));
        tensors.push((format!("v{id}"), vec![n], values(v.clone())?));
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(StDtype::F32, s.clone(), b).map(|v| (n.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Other(format!("training state: {e}")))?;
    let blob =
        safetensors::serialize(views, None).map_err(|e| Error::Other(format!("training state: {e}")))?;
    crate::util::write_atomic(&dir.join("state.safetensors"), &blob)?;
    let json = serde_json::to_string_pretty(meta).expect("meta serializes");
    crate::util::write_atomic(&dir.join("state.json"), json.as_bytes())
}

/// Reads a state written by [`save`], if `dir` holds one.
pub fn load<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    dir: &Path,
    model: M,
    opt: &mut AdamW<AB::InnerBackend>,
) -> Result<Option<(M, Meta)>> {
    let meta_path = dir.join("state.json");
    let st_path = dir.join("state.safetensors");
    if !meta_path.is_file() || !st_path.is_file() {
        return Ok(None);
    }
    let meta: Meta = serde_json::from_str(&crate::error::read_to_string(&meta_path)?).map_err(|e| {
        Error::Checkpoint { path: meta_path.clone(), message: format!("invalid training state: {e}") }
    })?;
    let raw = std::fs::read(&st_path).map_err(|e| Error::io(&st_path, e))?;
    let st = SafeTensors::deserialize(&raw)
        .map_err(|e| Error::Checkpoint { path: st_path.clone(), message: e.to_string() })?;
    let mut map: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for (name, view) in st.tensors() {
        let v: Vec<f32> =
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        map.insert(name, (view.shape().to_vec(), v));
    }
    struct Restore<'a> {
        map: &'a HashMap<String, (Vec<usize>, Vec<f32>)>,
        missing: Option<String>,
    }
    impl<AB: AutodiffBackend> ModuleMapper<AB> for Restore<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<AB, D>>) -> Param<Tensor<AB, D>> {
            let (id, tensor, mapper) = param.consume();
            let key = format!("p{}", id.val());
            match self.map.get(&key) {
                Some((shape, v)) if shape.as_slice() == tensor.dims().as_slice() => {
                    let req = tensor.is_require_grad();
                    let dims: [usize; D] = tensor.dims();
                    let mut t =
                        Tensor::<AB, D>::from_data(TensorData::new(v.clone(), dims), &tensor.device());
                    if req {
                        t = t.require_grad();
                    }
                    Param::from_mapped_value(ParamId::from(id.val()), t, mapper)
                }
                _ => {
                    self.missing.get_or_insert(key);
                    Param::from_mapped_value(id, tensor, mapper)
                }
            }
        }
    }
    let mut r = Restore { map: &map, missing: None };
    let model = model.map(&mut r);
    if let Some(k) = r.missing {
        return Err(Error::Checkpoint {
            path: st_path,
            message: format!("parameter {k} missing or of another shape"),
        });
    }
    let device = Default::default();
    let mut state = BTreeMap::new();
    for (name, (shape, v)) in &map {
        if let Some(id) = name.strip_prefix('m').and_then(|s| s.parse::<u64>().ok()) {
            let (_, vv) = map.get(&format!("v{id}")).ok_or_else(|| Error::Checkpoint {
                path: st_path.clone(),
                message: format!("moment v{id} missing"),
            })?;
            let m = Tensor::from_data(TensorData::new(v.clone(), [shape[0]]), &device);
            let vt = Tensor::from_data(TensorData::new(vv.clone(), [shape[0]]), &device);
            state.insert(id, (m, vt));
        }
    }
    opt.state = state;
    opt.step = meta.step;
    Ok(Some((model, meta)))
}
