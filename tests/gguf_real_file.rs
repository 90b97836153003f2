//! End-to-end check of `Gguf::tensor_f32` on a real file (ignored by default): every tensor of
//! Qwen2.5-Coder-0.5B-Instruct Q4_K_M against gguf-py's dequantisation, which
//! `tests/fixtures/gguf_quants/check_real_file.py` writes to `$GGUF_REAL_EXPECTED`
//! (`expected.f32` + `index.json`). Prints per ggml type the tensors, blocks and values compared,
//! how many values differ in their bits and the largest absolute difference; fails on any
//! difference. Steps: see check_real_file.py.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use mcts_ps::model::gguf::Gguf;

#[derive(Default)]
struct Tally {
    tensors: usize,
    blocks: usize,
    values: usize,
    differ: usize,
    max_abs: f32,
}

#[test]
#[ignore = "needs the 490 MB Qwen GGUF and gguf-py's expected values; see check_real_file.py"]
fn every_tensor_of_a_real_q4_k_m_file_matches_gguf_py() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let gguf_path = std::env::var_os("GGUF_REAL_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/fixtures/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"));
    let expected = std::env::var_os("GGUF_REAL_EXPECTED")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp/gguf-real-expected".into());
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(expected.join("index.json"))
            .unwrap_or_else(|e| panic!("{}/index.json: {e}; run check_real_file.py", expected.display())),
    )
    .expect("index.json");
    let mut values_file = std::fs::File::open(expected.join("expected.f32")).expect("expected.f32");
    let gguf = Gguf::open(&gguf_path).unwrap_or_else(|e| panic!("{}: {e}", gguf_path.display()));
    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    let mut first_failures = Vec::new();
    for t in index["tensors"].as_array().expect("tensors") {
        let name = t["name"].as_str().expect("name");
        let kind = t["type"].as_str().expect("type").to_string();
        let n = t["values"].as_u64().expect("values") as usize;
        let dims: Vec<usize> =
            t["dims"].as_array().expect("dims").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
        let (got_dims, got) = gguf.tensor_f32(name).expect("tensor_f32").expect("tensor present");
        assert_eq!(got_dims, dims, "{name}: dims");
        assert_eq!(got.len(), n, "{name}: values");
        let mut bytes = vec![0u8; n * 4];
        values_file.seek(SeekFrom::Start(t["offset"].as_u64().expect("offset") * 4)).expect("seek");
        values_file.read_exact(&mut bytes).expect("read expected values");
        let entry = tally.entry(kind.clone()).or_default();
        entry.tensors += 1;
        entry.blocks += t["blocks"].as_u64().expect("blocks") as usize;
        entry.values += n;
        for (i, (g, w)) in got.iter().zip(bytes.chunks_exact(4)).enumerate() {
            let w = f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            if g.to_bits() != w.to_bits() {
                if first_failures.len() < 10 {
                    first_failures.push(format!("{name} ({kind}) value {i}: got {g:e}, gguf-py {w:e}"));
                }
                entry.differ += 1;
                entry.max_abs = entry.max_abs.max((g - w).abs());
            }
        }
    }
    println!("{}", gguf_path.display());
    println!(
        "{:6} {:>8} {:>10} {:>12} {:>8} {:>12}",
        "type", "tensors", "blocks", "values", "differ", "max |diff|"
    );
    for (kind, t) in &tally {
        println!(
            "{kind:6} {:>8} {:>10} {:>12} {:>8} {:>12e}",
            t.tensors, t.blocks, t.values, t.differ, t.max_abs
        );
    }
    assert!(first_failures.is_empty(), "values differ from gguf-py:\n{}", first_failures.join("\n"));
}
