//! Replays every input in `tests/data/fuzz_regression/` (crashes found by
//! `fuzz/fuzz_targets/recording_reader.rs`, and seeds) through the same code the fuzz target
//! runs. Also what `scripts/fuzz-recorder` falls back to when `cargo fuzz` is unavailable.

// Test helpers outside #[test] fns: the workspace lets tests unwrap and index (clippy.toml),
// which clippy applies only to #[test] bodies.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::path::Path;

/// The fuzz target's body, kept identical to `fuzz/fuzz_targets/recording_reader.rs`.
fn exercise(data: &[u8]) {
    let _ = recorder::verify(data, None);
    let _ = recorder::info(data);
    if let Ok(rec) = recorder::Recording::parse(data) {
        let _ = rec.index();
        for r in rec.records().take(10_000) {
            if r.is_err() {
                break;
            }
        }
        let _ = rec.records_from(rec.end_us() / 2).count();
    }
    let key = recorder::RecordingKey::new(ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
    if let Ok(plan) = recorder::seal(data, &key) {
        let keep = usize::try_from(plan.keep_len).unwrap();
        let mut sealed = data[..keep].to_vec();
        sealed.extend_from_slice(&plan.trailer);
        assert!(recorder::verify(&sealed, Some(&key.verifying_key())).is_authentic());
    }
}

fn corpus_dirs() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("tests/data/fuzz_regression")];
    // The fuzz corpus, when a fuzz run has produced one.
    dirs.push(root.join("../fuzz/corpus/recording_reader"));
    if let Ok(extra) = std::env::var("SEKISHO_FUZZ_CORPUS") {
        dirs.push(extra.into());
    }
    dirs
}

#[test]
fn fuzz_regression_inputs_do_not_panic() {
    let mut n = 0;
    for dir in corpus_dirs() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd {
            let path = entry.unwrap().path();
            if path.is_file() {
                let data = std::fs::read(&path).unwrap();
                exercise(&data);
                n += 1;
            }
        }
    }
    assert!(n > 0, "no regression inputs found");
}
