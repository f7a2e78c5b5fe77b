//! Fuzzes the recording reader, verifier, info and seal over arbitrary bytes.
//! Keep the body identical to `exercise` in `recorder/tests/fuzz_regression.rs`, which replays
//! crash inputs saved in `recorder/tests/data/fuzz_regression/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
        let keep = usize::try_from(plan.keep_len).unwrap_or(usize::MAX);
        let mut sealed = data.get(..keep).unwrap_or_default().to_vec();
        sealed.extend_from_slice(&plan.trailer);
        assert!(recorder::verify(&sealed, Some(&key.verifying_key())).is_authentic());
    }
});
