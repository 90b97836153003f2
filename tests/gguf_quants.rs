//! Golden test of the ggml block decoders (`mcts_ps::model::quants`) against gguf-py: random
//! blocks of every type and the values `gguf.quants.dequantize` gives them, made by
//! `tests/fixtures/gguf_quants/make_quants.py` (gguf 0.19.0, numpy 2.4.6). Every value must
//! match bit for bit: both sides compute in f32, in ggml's order, without fused multiply-adds.

use std::path::Path;

use mcts_ps::model::quants;

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
}

#[test]
fn every_type_matches_gguf_py_bit_for_bit() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_quants/quants.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON");
    let cases = doc["cases"].as_array().expect("cases");
    let mut seen = Vec::new();
    let mut failures = Vec::new();
    for case in cases {
        let name = case["type"].as_str().expect("type");
        let id = case["id"].as_u64().expect("id") as u32;
        let format = quants::format(id).unwrap_or_else(|| panic!("{name} ({id}) is not decoded"));
        assert_eq!(format.name, name, "id {id}");
        let raw = hex(case["bytes"].as_str().expect("bytes"));
        let want: Vec<f32> = hex(case["values"].as_str().expect("values"))
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let blocks = case["blocks"].as_u64().expect("blocks") as usize;
        assert_eq!(raw.len(), blocks * format.bytes_per_block, "{name}: fixture bytes");
        let mut got = Vec::new();
        format.dequantize(&raw, &mut got);
        assert_eq!(got.len(), want.len(), "{name}: value count");
        let mut differ = 0;
        let mut max_abs = 0f32;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            if g.to_bits() != w.to_bits() {
                if differ < 5 {
                    failures.push(format!(
                        "{name} block {} value {}: got {g:e} ({:#010x}), gguf-py {w:e} ({:#010x})",
                        i / format.values_per_block,
                        i % format.values_per_block,
                        g.to_bits(),
                        w.to_bits()
                    ));
                }
                differ += 1;
                max_abs = max_abs.max((g - w).abs());
            }
        }
        println!(
            "{name:5} {blocks:3} blocks {:5} values  {differ} differ  max |diff| {max_abs:e}  ({})",
            want.len(),
            case["reference"].as_str().unwrap_or("")
        );
        seen.push(id);
    }
    assert!(failures.is_empty(), "values differ from gguf-py:\n{}", failures.join("\n"));
    let all: Vec<u32> = quants::FORMATS.iter().map(|f| f.id).collect();
    for id in all {
        assert!(seen.contains(&id), "the fixture has no case for type {id}; rerun make_quants.py");
    }
}
