//! Replays the fuzz seeds (`fuzz/seeds/TARGET/`) and every crash input kept in
//! `fuzz/regressions/TARGET/` through the fuzz targets' own bodies (`fuzz/src/bodies.rs`,
//! compiled here too), so a fixed crash stays fixed without nightly or libFuzzer.
//!
//! A crash input whose fix is still pending goes in `fuzz/regressions/pending/TARGET/`: it is
//! replayed only by the ignored test `pending_regressions`.

// Helpers outside #[test] fns: clippy lets tests unwrap and index only inside #[test] bodies.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "../../fuzz/src/bodies.rs"]
mod bodies;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Files under `dir/TARGET/` for every target, sorted, as (target, path).
fn inputs(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut out = Vec::new();
    for target in bodies::TARGETS {
        let Ok(rd) = std::fs::read_dir(dir.join(target)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|p| (target, p)));
    }
    out
}

/// Runs each input in its own catch_unwind so one failure names its file and the rest still
/// run.
fn replay(dir: &Path) -> usize {
    let all = inputs(dir);
    let mut failed = Vec::new();
    for (target, path) in &all {
        let data = std::fs::read(path).unwrap();
        let ok = std::panic::catch_unwind(|| bodies::run(target, &data)).is_ok();
        if !ok {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "inputs that panic: {failed:#?}");
    all.len()
}

#[test]
fn seeds_do_not_panic() {
    let n = replay(&fuzz_dir().join("seeds"));
    // The seeds are committed: an empty directory means they were lost, not that all is well.
    assert!(n >= bodies::seeds().len(), "only {n} seeds found");
}

#[test]
fn regressions_do_not_panic() {
    let dir = fuzz_dir().join("regressions");
    // The regressions are committed: each one bodies::regressions() names must be there, so
    // a lost directory fails here instead of replaying nothing.
    let missing: Vec<String> = bodies::regressions()
        .into_iter()
        .map(|(target, name, _)| format!("{target}/{name}"))
        .filter(|f| !dir.join(f).is_file())
        .collect();
    assert!(missing.is_empty(), "regression inputs missing: {missing:?}");
    let n = replay(&dir);
    assert!(
        n >= bodies::regressions().len(),
        "replayed {n} regression inputs"
    );
    eprintln!("replayed {n} regression inputs");
}

#[test]
#[ignore = "crash inputs whose fix is pending in a file this suite does not own"]
fn pending_regressions() {
    replay(&fuzz_dir().join("regressions/pending"));
}

/// The seeded sequence really takes a connection through the acceptor and the connector to
/// the relay phase: otherwise the channel targets would fuzz only the error path.
#[test]
fn the_seeded_sequence_reaches_the_relay_phase() {
    use proxy::rdp::mitm::Action;
    let mut stage = bodies::Stage::new();
    for (client, frame) in bodies::sequence().unwrap() {
        assert!(
            stage.feed(0, client, &frame),
            "refused a frame of the sequence"
        );
    }
    let bodies::Stage::Relay(mut m) = stage else {
        panic!("the sequence did not reach the relay phase")
    };
    // A denied DVC create on drdynvc (1005) is answered by the machine itself.
    let create = [0x10, 7, b'U', b'R', b'B', b'D', b'R', b'C', 0];
    let mut user_data = vec![9, 0, 0, 0, 3, 0, 0, 0];
    user_data.extend_from_slice(&create);
    let frame = ironrdp_core::encode_vec(&ironrdp_pdu::x224::X224(
        ironrdp_pdu::mcs::McsMessage::SendDataIndication(ironrdp_pdu::mcs::SendDataIndication {
            initiator_id: 1002,
            channel_id: 1005,
            user_data: std::borrow::Cow::Owned(user_data),
        }),
    ))
    .unwrap();
    let actions = m.server_frame(&frame).unwrap();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Event { kind, .. } if *kind == "rdp.dvc-refused")),
        "{actions:?}"
    );
}

/// Writes `fuzz/regressions/` from [`bodies::regressions`] (run by hand after adding one:
/// `cargo test -p proxy --test fuzz_regressions -- --ignored write_fuzz_regressions`).
#[test]
#[ignore = "writes files; run by hand"]
fn write_fuzz_regressions() {
    for (target, name, bytes) in bodies::regressions() {
        let dir = fuzz_dir().join("regressions").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Writes `fuzz/seeds/` from [`bodies::seeds`] (run by hand after changing them:
/// `cargo test -p proxy --test fuzz_regressions -- --ignored write_fuzz_seeds`).
#[test]
#[ignore = "writes files; run by hand"]
fn write_fuzz_seeds() {
    for (target, name, bytes) in bodies::seeds() {
        let dir = fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
