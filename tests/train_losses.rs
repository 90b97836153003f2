//! Golden tests of the training losses against PyTorch (float64 reference values made by
//! tests/fixtures/losses/make_loss_reference.py), the gradient of eq. (2) against PyTorch's,
//! and one gradient against a finite difference.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Int, Tensor, TensorData};
use mcts_ps::train::fused;
use mcts_ps::train::loss::{dpo, nll, sequence_log_probs, token_kl, weighted_nll_kl};

type B = Autodiff<Flex>;

struct Fx {
    v: serde_json::Value,
    shape: [usize; 3],
}

impl Fx {
    fn load() -> Self {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/losses/losses.json");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        let shape = [
            v["B"].as_u64().unwrap() as usize,
            v["L"].as_u64().unwrap() as usize,
            v["V"].as_u64().unwrap() as usize,
        ];
        Self { v, shape }
    }
    fn f32s(&self, key: &str) -> Vec<f32> {
        self.v[key].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
    }
    fn t3(&self, key: &str) -> Tensor<B, 3> {
        Tensor::from_data(TensorData::new(self.f32s(key), self.shape), &Default::default())
    }
    fn targets(&self) -> Tensor<B, 2, Int> {
        let t: Vec<i64> = self.v["targets"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        Tensor::from_data(TensorData::new(t, [self.shape[0], self.shape[1]]), &Default::default())
    }
    fn mask(&self) -> Tensor<B, 2> {
        Tensor::from_data(
            TensorData::new(self.f32s("mask"), [self.shape[0], self.shape[1]]),
            &Default::default(),
        )
    }
    fn weights(&self) -> Tensor<B, 1> {
        Tensor::from_data(TensorData::new(self.f32s("weights"), [self.shape[0]]), &Default::default())
    }
}

fn scalar(t: Tensor<B, 1>) -> f64 {
    t.into_data().to_vec::<f32>().unwrap()[0] as f64
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn eq2_weighted_nll_plus_kl_matches_pytorch() {
    let f = Fx::load();
    let beta = f.v["beta"].as_f64().unwrap();
    let loss = weighted_nll_kl(f.t3("logits"), f.t3("ref"), f.targets(), f.mask(), f.weights(), beta);
    let want = f.v["eq2"].as_f64().unwrap();
    let got = scalar(loss);
    assert!(close(got, want, 1e-5), "{got} vs {want}");
    // Pieces: sequence log-probs and masked KL per sequence.
    let seq: Vec<f32> =
        sequence_log_probs(f.t3("logits"), f.targets(), f.mask()).into_data().to_vec().unwrap();
    for (a, b) in seq.iter().zip(f.v["seq_log_probs"].as_array().unwrap()) {
        assert!(close(*a as f64, b.as_f64().unwrap(), 1e-5));
    }
    let kl: Vec<f32> =
        (token_kl(f.t3("logits"), f.t3("ref")) * f.mask()).sum_dim(1).into_data().to_vec().unwrap();
    for (a, b) in kl.iter().zip(f.v["kl_masked"].as_array().unwrap()) {
        assert!(close(*a as f64, b.as_f64().unwrap(), 1e-5));
    }
}

#[test]
fn eq2_gradient_matches_pytorch_and_a_finite_difference() {
    let f = Fx::load();
    let beta = f.v["beta"].as_f64().unwrap();
    let logits = f.t3("logits").require_grad();
    let loss = weighted_nll_kl(logits.clone(), f.t3("ref"), f.targets(), f.mask(), f.weights(), beta);
    let grads = loss.backward();
    let g: Vec<f32> = logits.grad(&grads).unwrap().into_data().to_vec().unwrap();
    let want = f.f32s("eq2_grad");
    let max = g.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max < 1e-6, "max abs grad diff {max}");
    // Finite difference (central, h = 1e-2, in f32) on a logit of a masked position.
    let base = f.f32s("logits");
    let i = 5 * 2 + 3; // batch 0, position 2, vocab 3
    let eval = |delta: f32| {
        let mut x = base.clone();
        x[i] += delta;
        let t = Tensor::<B, 3>::from_data(TensorData::new(x, f.shape), &Default::default());
        scalar(weighted_nll_kl(t, f.t3("ref"), f.targets(), f.mask(), f.weights(), beta))
    };
    let h = 1e-2;
    let fd = (eval(h) - eval(-h)) / (2.0 * h as f64);
    assert!((fd - g[i] as f64).abs() < 1e-3, "finite difference {fd} vs autodiff {}", g[i]);
    assert!(g[i].abs() > 1e-3, "the checked gradient is not trivially zero");
}

#[test]
fn nll_matches_pytorch() {
    let f = Fx::load();
    let got = scalar(nll(f.t3("logits"), f.targets(), f.mask()));
    let want = f.v["nll"].as_f64().unwrap();
    assert!(close(got, want, 1e-5), "{got} vs {want}");
}

/// The trainer's form (`train::fused`): logits at the masked positions only, loss and gradient
/// in closed form. Same PyTorch values, and the same gradient at those positions (the full
/// form's gradient is zero elsewhere).
#[test]
fn closed_form_losses_on_the_masked_rows_match_pytorch() {
    let f = Fx::load();
    let [b, l, v] = f.shape;
    let mask = f.f32s("mask");
    let rows: Vec<usize> = (0..b * l).filter(|&i| mask[i] == 1.0).collect();
    assert!(!rows.is_empty() && rows.len() < b * l, "the fixture masks some positions");
    let pick = |key: &str| -> Vec<f32> {
        let x = f.f32s(key);
        rows.iter().flat_map(|&r| x[r * v..(r + 1) * v].to_vec()).collect()
    };
    let all_t: Vec<u32> =
        f.v["targets"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    let tg: Vec<u32> = rows.iter().map(|&r| all_t[r]).collect();
    let w = f.f32s("weights");
    let rw: Vec<f32> = rows.iter().map(|&r| w[r / l]).collect();
    let n = fused::nll(&pick("logits"), v, &tg);
    let want = f.v["nll"].as_f64().unwrap();
    assert!(close(n.value, want, 1e-6), "nll {} vs {want}", n.value);
    let beta = f.v["beta"].as_f64().unwrap();
    let e = fused::weighted_nll_kl(&pick("logits"), &pick("ref"), v, &tg, &rw, beta, b);
    let want = f.v["eq2"].as_f64().unwrap();
    assert!(close(e.value, want, 1e-6), "eq2 {} vs {want}", e.value);
    let full = f.f32s("eq2_grad");
    let want: Vec<f32> = rows.iter().flat_map(|&r| full[r * v..(r + 1) * v].to_vec()).collect();
    let max = e.grad.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max < 1e-6, "max abs grad diff {max}");
}

/// Through a model: the surrogate `sum(logits_rows * G)` gives the parameters the gradient
/// autodiff gives through the tensor form of eq. (2) on full logits.
#[test]
fn the_surrogate_gives_the_parameters_the_autodiff_gradient() {
    use mcts_ps::model::rope::Rope;
    use mcts_ps::model::{Llama, LlamaConfig};
    use mcts_ps::train::data::{batch, Example};
    let cfg = LlamaConfig::tiny(50, 32);
    let dev = Default::default();
    let model = Llama::<B>::init(&cfg, 3, &dev);
    let reference = Llama::<Flex>::init(&cfg, 4, &dev);
    let rope = Rope::<B>::new(&cfg, 32, &dev);
    let ex = [
        Example { tokens: vec![1, 5, 9, 2, 7, 7, 3], loss_from: 3, weight: 0.8 },
        Example { tokens: vec![4, 4, 8, 1, 2], loss_from: 2, weight: -0.4 },
    ];
    let exr: Vec<&Example> = ex.iter().collect();
    let bt = batch::<B>(&exr, &dev);
    let beta = 0.1;
    // Tensor form on full logits.
    let full = model.forward(bt.inputs.clone(), &rope);
    let rfull = reference.forward(bt.inputs.clone().inner(), &rope.inner());
    let loss = weighted_nll_kl(
        full,
        Tensor::from_inner(rfull),
        bt.targets.clone(),
        bt.mask.clone(),
        bt.weights.clone(),
        beta,
    );
    let value = scalar(loss.clone());
    let g1 = loss.backward();
    let w = &model.layers[0].q.weight;
    let a: Vec<f32> = w.val().grad(&g1).unwrap().into_data().to_vec().unwrap();
    // Closed form on the loss rows.
    let logits = model.forward_rows(bt.inputs.clone(), bt.loss_rows.clone(), &rope);
    let rl = reference.forward_rows(bt.inputs.clone().inner(), bt.loss_rows.clone().inner(), &rope.inner());
    let host: Vec<f32> = logits.clone().into_data().to_vec().unwrap();
    let rhost: Vec<f32> = rl.into_data().to_vec().unwrap();
    let e = fused::weighted_nll_kl(&host, &rhost, 50, &bt.loss_targets, &bt.loss_weights, beta, 2);
    assert!(close(e.value, value, 1e-5), "{} vs {value}", e.value);
    assert_same_grad(&a, &surrogate_grad(logits, e.grad, w), 1e-5, 1e-6);
}

/// The gradient of `w` through the surrogate `sum(logits * grad)`.
fn surrogate_grad(logits: Tensor<B, 2>, grad: Vec<f32>, w: &burn::module::Param<Tensor<B, 2>>) -> Vec<f32> {
    let [n, v] = logits.dims();
    let g = Tensor::<B, 2>::from_data(TensorData::new(grad, [n, v]), &Default::default());
    let grads = (logits * g).sum().backward();
    w.val().grad(&grads).unwrap().into_data().to_vec().unwrap()
}

/// `b` equals the gradient `a` up to `rel` of its largest entry, which exceeds `floor` (the
/// check is not trivially met by zeros).
fn assert_same_grad(a: &[f32], b: &[f32], rel: f32, floor: f32) {
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    let max = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(scale > floor && max <= rel * scale, "max diff {max} of {scale}");
}

#[test]
fn dpo_matches_pytorch_and_the_hand_value() {
    let f = Fx::load();
    let d = &f.v["dpo"];
    let t = |k: &str| -> Tensor<B, 1> {
        let v: Vec<f32> = d[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let n = v.len();
        Tensor::from_data(TensorData::new(v, [n]), &Default::default())
    };
    let got = scalar(dpo(t("pc"), t("pr"), t("rc"), t("rr"), d["beta"].as_f64().unwrap()));
    let want = d["loss"].as_f64().unwrap();
    assert!(close(got, want, 1e-5), "{got} vs {want}");
    // By hand: margins -0.1, 0.3, -2.0 times beta 0.1; mean of ln(1 + exp(-x)).
    let hand = [-0.01f64, 0.03, -0.2].iter().map(|x| (1.0 + (-x).exp()).ln()).sum::<f64>() / 3.0;
    assert!(close(got, hand, 1e-5), "{got} vs {hand}");
}

/// DPO in closed form (`fused::dpo` through the surrogate) gives the parameters the gradient
/// autodiff gives through `sequence_log_probs` and `dpo` on full logits.
#[test]
fn dpo_closed_form_gives_the_autodiff_gradient() {
    use mcts_ps::model::rope::Rope;
    use mcts_ps::model::{Llama, LlamaConfig};
    use mcts_ps::train::data::{batch, Example, Pair};
    let cfg = LlamaConfig::tiny(40, 32);
    let dev = Default::default();
    let model = Llama::<B>::init(&cfg, 5, &dev);
    let rope = Rope::<B>::new(&cfg, 32, &dev);
    let pairs = [
        Pair { prompt: vec![1, 2, 3], chosen: vec![4, 5], rejected: vec![6, 7, 8] },
        Pair { prompt: vec![9, 3], chosen: vec![10, 11, 12], rejected: vec![13] },
    ];
    let refs = [(-6.5f32, -9.0f32), (-8.25, -3.5)];
    let beta = 0.5;
    let owned: Vec<Example> = pairs
        .iter()
        .flat_map(|p| {
            let (c, r) = p.examples();
            [c, r]
        })
        .collect();
    let exr: Vec<&Example> = owned.iter().collect();
    let bt = batch::<B>(&exr, &dev);
    let lp = sequence_log_probs(model.forward(bt.inputs.clone(), &rope), bt.targets.clone(), bt.mask.clone())
        .reshape([2, 2]);
    let t = |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v, [2]), &dev);
    let loss = dpo(
        lp.clone().narrow(1, 0, 1).reshape([2]),
        lp.narrow(1, 1, 1).reshape([2]),
        t(refs.iter().map(|r| r.0).collect()),
        t(refs.iter().map(|r| r.1).collect()),
        beta,
    );
    let value = scalar(loss.clone());
    let g1 = loss.backward();
    let w = &model.layers[1].gate.weight;
    let a: Vec<f32> = w.val().grad(&g1).unwrap().into_data().to_vec().unwrap();
    let logits = model.forward_rows(bt.inputs.clone(), bt.loss_rows.clone(), &rope);
    let host: Vec<f32> = logits.clone().into_data().to_vec().unwrap();
    let e = fused::dpo(&host, 40, &bt.loss_targets, &bt.loss_seq, &refs, beta);
    assert!(close(e.value, value, 1e-5), "{} vs {value}", e.value);
    assert_same_grad(&a, &surrogate_grad(logits, e.grad, w), 1e-4, 1e-7);
}
