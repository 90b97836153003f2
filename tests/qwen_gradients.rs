//! The gradient through Qwen3's q/k norms (fused RMSNorm kernel over heads, then RoPE and
//! attention) against central finite differences.
//!
//! Its own test binary on purpose: a `backward()` on a test thread calls the fused kernels'
//! rayon loops from outside the pool, and burn-autodiff 0.21 cleans up after every backward by
//! locking every live graph; with the trainer's two halves running their backward passes on
//! the pool's workers in another test of the same process, the workers can wait on this
//! graph's lock while this backward waits on the workers.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Param};
use burn::tensor::{DType, Int, Tensor, TensorData};
use mcts_ps::model::rope::Rope;
use mcts_ps::model::weights::load_hf_model;
use mcts_ps::model::Llama;
use mcts_ps::rng::Stream;

type AB = Autodiff<Flex>;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn logits<B: burn::tensor::backend::Backend>(m: &Llama<B>, ids: &[u32]) -> Vec<f32> {
    let dev = Default::default();
    let t = Tensor::<B, 2, Int>::from_data(
        TensorData::new(ids.iter().map(|&x| x as i64).collect::<Vec<_>>(), [1, ids.len()]),
        &dev,
    );
    m.forward(t, &Rope::new(&m.config, 64, &dev)).into_data().to_vec().unwrap()
}

/// d/dw of a fixed linear function of the logits, for `w` = element `i` of layer 0's q norm (or
/// k norm): autodiff through the fused kernels against central differences in f64-summed f32.
#[test]
fn q_k_norm_gradients_match_finite_differences() {
    let ids: Vec<u32> = vec![5, 17, 99, 3, 64, 8];
    let dev = Default::default();
    let coef: Vec<f32> = {
        let mut s = Stream::new(0, "coef", &[]);
        (0..ids.len() * 128).map(|_| (s.next_f64() * 2.0 - 1.0) as f32).collect()
    };
    let objective = |m: &Llama<Flex>| -> f64 {
        logits(m, &ids).iter().zip(&coef).map(|(l, c)| (*l as f64) * (*c as f64)).sum()
    };
    for which in ["q_norm", "k_norm"] {
        let model = load_hf_model::<AB>(&dir("tiny_qwen3"), &dev, DType::F32).unwrap().0;
        let t = Tensor::<AB, 2, Int>::from_data(
            TensorData::new(ids.iter().map(|&x| x as i64).collect::<Vec<_>>(), [1, ids.len()]),
            &dev,
        );
        let out = model.forward(t, &Rope::new(&model.config, 64, &dev)).reshape([ids.len() * 128]);
        let c = Tensor::<AB, 1>::from_data(TensorData::new(coef.clone(), [coef.len()]), &dev);
        let grads = (out * c).sum().backward();
        let norm = |m: &Llama<AB>| {
            let l = &m.layers[0];
            if which == "q_norm" { l.q_norm.clone() } else { l.k_norm.clone() }.unwrap()
        };
        let g: Vec<f32> = norm(&model).grad(&grads).unwrap().into_data().to_vec().unwrap();
        for i in [0usize, 7, 31] {
            let h = 1e-2f32;
            let shifted = |delta: f32| {
                let mut m = model.valid();
                let l = &mut m.layers[0];
                let p = if which == "q_norm" { l.q_norm.as_mut() } else { l.k_norm.as_mut() }.unwrap();
                let mut v: Vec<f32> = p.val().into_data().to_vec().unwrap();
                v[i] += delta;
                *p = Param::from_tensor(Tensor::from_data(TensorData::new(v, [32]), &dev));
                objective(&m)
            };
            let fd = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
            let ad = g[i] as f64;
            eprintln!("{which}[{i}]: autodiff {ad:.5}, finite differences {fd:.5}");
            assert!(
                (fd - ad).abs() <= 2e-3 * fd.abs().max(1.0),
                "{which}[{i}]: autodiff {ad}, finite differences {fd}"
            );
        }
    }
}
