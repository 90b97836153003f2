//! The datasets shipped in data/: every file byte for byte as its README says (line count and
//! sha256), and the real records through the loaders: GSM8K solutions without calculator
//! annotations, one step per line; MATH solutions one step per paragraph, environments kept
//! whole; every reference solution ends in a step that states its gold answer.

use std::path::{Path, PathBuf};

use mcts_ps::task::{gsm8k, math, split_steps, TaskKind};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

/// `(file, lines, sha256)` as listed in data/gsm8k/README.md and data/math/README.md.
const FILES: &[(&str, usize, &str)] = &[
    ("gsm8k/train.jsonl", 7473, "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"),
    ("gsm8k/test.jsonl", 1319, "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
    ("math/train.jsonl", 7500, "7302d5d23b38977015fe90291f82267b7f8c8d5739cc9643e7d6c4804afca89d"),
    ("math/test.jsonl", 5000, "4c5cc63d04ada5c1c9bfe49d64af8a5aeac4d42e30b43c6023b34185656c71a9"),
    ("math/math500.jsonl", 500, "839048bafb8a3fb684e5f629f5e87369a56680cee6a8b9a7c8fbccf1593e05a7"),
    ("gsm_symbolic/train.jsonl", 3981, "2bf957fedfc86880070d7322855b8f1cb6ae38367fce72981c2e212d1a508107"),
    ("gsm_symbolic/test.jsonl", 1000, "d1262d688ca67ff66206f5692e0e364293c5773b77811ba19a6549a6135c4e4e"),
];

#[test]
fn shipped_files_are_the_releases_byte_for_byte() {
    for (rel, lines, sha) in FILES {
        let bytes = std::fs::read(data(rel)).unwrap();
        let got = mcts_ps::util::sha256_hex(&bytes);
        assert_eq!(&got, sha, "{rel}: sha256");
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), *lines, "{rel}: lines");
        // The README beside each file lists the same hash (so the two cannot drift apart).
        let dir = Path::new(rel).parent().unwrap();
        let readme = match dir.to_str().unwrap() {
            "gsm_symbolic" => std::fs::read_to_string(data("README.md")).unwrap(),
            d => std::fs::read_to_string(data(&format!("{d}/README.md"))).unwrap(),
        };
        assert!(readme.contains(sha), "{rel}: its sha256 is not in its README");
    }
}

#[test]
fn gsm8k_solutions_are_steps_without_calculator_annotations() {
    for (rel, n) in [("gsm8k/train.jsonl", 7473), ("gsm8k/test.jsonl", 1319)] {
        let problems = gsm8k::load(&data(rel)).unwrap();
        assert_eq!(problems.len(), n, "{rel}");
        let raw: Vec<serde_json::Value> = std::fs::read_to_string(data(rel))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mut annotated = 0;
        for (p, r) in problems.iter().zip(&raw) {
            let sol = p.solution.as_deref().unwrap();
            assert!(!sol.contains("<<") && !sol.contains(">>"), "{rel} #{}: {sol}", p.id);
            let released = r["answer"].as_str().unwrap();
            annotated += usize::from(released.contains("<<"));
            // One step per non-empty line of the released solution, then the answer step.
            let lines = released.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("####")).count();
            let steps = split_steps(sol);
            assert_eq!(steps.len(), lines + 1, "{rel} #{}", p.id);
            assert_eq!(*steps.last().unwrap(), format!("The final answer is {}.", p.answer));
            assert!(TaskKind::Gsm8k.is_final_step(steps.last().unwrap()));
            assert!(steps[..steps.len() - 1].iter().all(|s| !s.contains('\n')));
        }
        // Nearly every released solution carries annotations: the stripping is exercised.
        assert!(annotated * 10 > n * 9, "{rel}: {annotated} of {n} annotated");
    }
}

#[test]
fn math_solutions_are_paragraph_steps_with_environments_whole() {
    for (rel, n, left_out) in
        [("math/train.jsonl", 7498, 2), ("math/test.jsonl", 5000, 0), ("math/math500.jsonl", 500, 0)]
    {
        let (problems, notes) = math::load_noting(&data(rel)).unwrap();
        assert_eq!(problems.len(), n, "{rel}");
        // The two empty \boxed{} of MATH train (README: train/number_theory/7115 and 7117) are
        // left out with a note each.
        assert_eq!(notes.len(), left_out, "{rel}: {notes:?}");
        let mut multi = 0;
        for p in &problems {
            let sol = p.solution.as_deref().unwrap();
            let steps = split_steps(sol);
            multi += usize::from(steps.len() > 1);
            for s in &steps {
                assert!(
                    s.matches("\\begin{").count() <= s.matches("\\end{").count(),
                    "{rel} #{}: a step splits an environment: {s}",
                    p.id
                );
            }
            assert!(steps.last().unwrap().contains("\\boxed"), "{rel} #{}", p.id);
            assert!(p.meta.contains_key("level") && p.meta.contains_key("type"), "{rel} #{}", p.id);
        }
        // About a quarter of MATH solutions have more than one paragraph.
        assert!(multi * 5 > n && multi * 2 < n, "{rel}: {multi} of {n} multi-step");
    }
    // Subjects and levels as counted in data/math/README.md (test split).
    let test = math::load(&data("math/test.jsonl")).unwrap();
    let count = |k: &str, v: &str| test.iter().filter(|p| p.meta[k] == v).count();
    assert_eq!(count("type", "Algebra"), 1187);
    assert_eq!(count("type", "Precalculus"), 546);
    assert_eq!(count("level", "Level 5"), 1324);
    assert_eq!(count("level", "Level 1"), 437);
}

/// Overlaps between the shipped files by normalised question (case and whitespace ignored), as
/// data/README.md lists them; the expected counts come from an independent Python check
/// (`''.join(q.lower().split())` over each file's question field).
#[test]
fn overlaps_between_shipped_datasets() {
    let gsm = |rel: &str| gsm8k::load(&data(rel)).unwrap();
    let mth = |rel: &str| math::load(&data(rel)).unwrap();
    let overlap = |pool: &[mcts_ps::task::Problem], other: &[mcts_ps::task::Problem]| {
        let mut p = pool.to_vec();
        mcts_ps::task::drop_overlaps(&mut p, other)
    };
    // (repeats of the other file, repeats within the pool)
    assert_eq!(overlap(&gsm("gsm8k/train.jsonl"), &gsm("gsm8k/test.jsonl")), (0, 0));
    assert_eq!(overlap(&mth("math/train.jsonl"), &mth("math/test.jsonl")), (2, 2));
    assert_eq!(overlap(&mth("math/train.jsonl"), &mth("math/math500.jsonl")), (0, 2));
    assert_eq!(overlap(&gsm("gsm_symbolic/train.jsonl"), &gsm("gsm_symbolic/test.jsonl")), (0, 23));
    assert_eq!(overlap(&gsm("gsm_symbolic/train.jsonl"), &gsm("gsm8k/test.jsonl")), (0, 23));
    assert_eq!(overlap(&gsm("gsm8k/train.jsonl"), &gsm("gsm_symbolic/test.jsonl")), (0, 0));
    // MATH-500 is a subset of the MATH test split.
    assert_eq!(overlap(&mth("math/math500.jsonl"), &mth("math/test.jsonl")), (500, 0));
}
