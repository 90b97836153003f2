//! The decode step's products alone, at the SmolLM2-135M shapes (30 layers of q, k, v, o,
//! gate, up, down, and the 49,152-column head), per weight type: milliseconds per step and the
//! bytes of weight streamed per second. Synthetic weights; rows (the batch) from the argument.
//!
//!   cargo run --release --example kernel_probe -- 1     # RAYON_NUM_THREADS=1 for one core
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, TensorData};
use mcts_ps::model::kernels::flex_linear::linear;
use mcts_ps::model::kernels::q8;
use mcts_ps::model::kernels::team;
use std::time::Instant;

/// An 8-bit weight buffer's bytes, as burn-flex's tensor shows them to the kernel.
fn bytes(buf: Vec<f32>) -> Vec<i8> {
    buf.iter().flat_map(|v| v.to_ne_bytes().map(|b| b as i8)).collect()
}

fn main() {
    let m: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    let shapes = [(576usize, 576usize, 2usize), (576, 192, 2), (576, 1536, 2), (1536, 576, 1)];
    let layers = 30;
    let mut w32 = Vec::new();
    let mut wq = Vec::new();
    let mut wb = Vec::new();
    let mut total = 0usize;
    for _ in 0..layers {
        for &(k, n, c) in &shapes {
            for _ in 0..c {
                let v: Vec<f32> =
                    (0..k * n).map(|i| ((i * 2654435761usize) % 1000) as f32 / 1000.0 - 0.5).collect();
                total += k * n;
                let (q, s) = q8::quantize(&v, k, n);
                wq.push((bytes(q8::storage(&q, &s)), k, n));
                let t = FlexTensor::from_data(TensorData::new(v.clone(), [k, n]));
                wb.push(FlexTensor::from_data(TensorData::new(v.clone(), [k, n]).convert_dtype(DType::BF16)));
                w32.push(t);
            }
        }
    }
    let hv: Vec<f32> =
        (0..576 * 49152).map(|i| ((i * 2654435761usize) % 1000) as f32 / 1000.0 - 0.5).collect();
    let (hq, hs) = q8::quantize(&hv, 576, 49152);
    let hq = bytes(q8::storage(&hq, &hs));
    let head = FlexTensor::from_data(TensorData::new(hv, [576, 49152]).convert_dtype(DType::BF16));
    let x576 = FlexTensor::from_data(TensorData::new(vec![0.1f32; m * 576], [m, 576]));
    let x1536 = FlexTensor::from_data(TensorData::new(vec![0.1f32; m * 1536], [m, 1536]));
    let xs = |k: usize| if k == 576 { &x576 } else { &x1536 };
    let reps = 20;
    // As the engine's single decode lane runs them: with the helper team allowed.
    let time = |f: &dyn Fn()| {
        team::exclusive(|| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
    };
    for round in 0..2 {
        let q8 = time(&|| {
            for (w, k, n) in &wq {
                std::hint::black_box(q8::linear(xs(*k), w, *k, *n));
            }
        });
        let bf = time(&|| {
            for w in &wb {
                std::hint::black_box(linear(xs(w.layout().shape()[0]), w));
            }
        });
        let f = time(&|| {
            for w in &w32 {
                std::hint::black_box(linear(xs(w.layout().shape()[0]), w));
            }
        });
        let h = time(&|| {
            std::hint::black_box(linear(&x576, &head));
        });
        let hq8 = time(&|| {
            std::hint::black_box(q8::linear(&x576, &hq, 576, 49152));
        });
        println!(
            "round {round} m={m}: layers q8 {:.2} ms ({:.1} GB/s), bf16 {:.2} ms ({:.1} GB/s), f32 {:.2} ms ({:.1} GB/s); head bf16 {:.2} ms ({:.1} GB/s), q8 {:.2} ms ({:.1} GB/s); calls {}",
            q8 * 1e3, total as f64 * 1.125 / q8 / 1e9, bf * 1e3, total as f64 * 2.0 / bf / 1e9, f * 1e3, total as f64 * 4.0 / f / 1e9,
            h * 1e3, 576.0 * 49152.0 * 2.0 / h / 1e9, hq8 * 1e3, 576.0 * 49152.0 * 1.125 / hq8 / 1e9, wq.len()
        );
    }
}
