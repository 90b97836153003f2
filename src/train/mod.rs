//! Training: losses (eq. 2, NLL, DPO), the optimiser loop, LoRA, checkpoints and resumable
//! training state, and pretraining of the tiny model.

pub mod data;
pub mod fused;
pub mod lora;
pub mod loss;
pub mod optim;
pub mod pretrain;
pub mod state;
pub mod trainer;
