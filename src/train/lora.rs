//! LoRA (Hu et al. 2021): trainable low-rank adapters on chosen projections, everything else
//! frozen. `B` starts at zero so the adapted model starts equal to the base model; saving a
//! checkpoint merges `W + A B * alpha / rank` (see `model::weights::hf_tensors`).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::model::llama::{Lora, Proj};
use crate::model::Llama;
use crate::rng::Stream;

/// Projection names LoRA can target.
pub const TARGETS: &[&str] = &["q", "k", "v", "o", "gate", "up", "down"];

/// Adds adapters of `rank` to the `targets` projections of every block and freezes all other
/// parameters. Adapter `A` is uniform in `+-1/sqrt(d_in)` from the stream `(seed, "lora")`.
pub fn add_lora<B: Backend>(
    model: Llama<B>,
    rank: usize,
    alpha: f64,
    targets: &[String],
    seed: u64,
) -> Llama<B> {
    struct Freeze;
    impl<B: Backend> ModuleMapper<B> for Freeze {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            param.set_require_grad(false)
        }
    }
    struct MaxId(u64);
    impl<B: Backend> ModuleVisitor<B> for MaxId {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0 = self.0.max(param.id.val());
        }
    }
    let mut max = MaxId(0);
    model.visit(&mut max);
    let mut next = max.0;
    let device = model.embed.val().device();
    let mut model = model.map(&mut Freeze);
    let mut s = Stream::new(seed, "lora", &[]);
    let scale = alpha / rank as f64;
    for layer in model.layers.iter_mut() {
        let projs: [(&str, &mut Proj<B>); 7] = [
            ("q", &mut layer.q),
            ("k", &mut layer.k),
            ("v", &mut layer.v),
            ("o", &mut layer.o),
            ("gate", &mut layer.gate),
            ("up", &mut layer.up),
            ("down", &mut layer.down),
        ];
        for (name, proj) in projs {
            if !targets.iter().any(|t| t == name) {
                continue;
            }
            let [d_in, d_out] = proj.dims();
            let bound = 1.0 / (d_in as f64).sqrt();
            let a: Vec<f32> = (0..d_in * rank).map(|_| ((s.next_f64() * 2.0 - 1.0) * bound) as f32).collect();
            next += 1;
            let a = Param::initialized(
                ParamId::from(next),
                Tensor::from_data(TensorData::new(a, [d_in, rank]), &device).require_grad(),
            );
            next += 1;
            let b =
                Param::initialized(ParamId::from(next), Tensor::zeros([rank, d_out], &device).require_grad());
            proj.lora = Some(Lora { a, b, scale });
        }
    }
    model
}
