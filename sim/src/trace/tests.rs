//! Trace tests: fingerprints, records, batching, the text form and verification.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::text::parse_fingerprint;
use super::*;

struct Labeled(&'static str, u8);

impl Traced for Labeled {
    fn kind(&self) -> &'static str {
        self.0
    }
    fn write_payload(&self, out: &mut Vec<u8>) {
        out.push(self.1);
    }
}

/// An event with any payload.
struct Raw(Vec<u8>);

impl Traced for Raw {
    fn kind(&self) -> &'static str {
        "raw"
    }
    fn write_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

#[test]
fn fingerprints_round_trip_through_hex_and_malformed_ones_are_refused() {
    for payload in [
        vec![],
        vec![7; 5],
        vec![0xab; 31],
        vec![1; 32],
        vec![2; 500],
    ] {
        let fp = fingerprint(&payload);
        let hex = to_hex(&fp);
        assert_eq!(parse_fingerprint(&hex), Some(fp.clone()));
        if hex != hex.to_uppercase() {
            assert_eq!(parse_fingerprint(&hex.to_uppercase()), None);
        }
    }
    // Lengths that disagree with the tag, an unknown tag, odd digits.
    for bad in [
        "",
        "02ab",
        "00ab",
        "20",
        "abc",
        &"ff".repeat(31),
        &"ff".repeat(33),
    ] {
        assert_eq!(parse_fingerprint(bad), None, "{bad}");
    }
}

#[test]
fn fast_rendering_matches_the_format_macro() {
    for (time, node) in [
        (0, 0),
        (9, 10),
        (1_234_567_890_123, u32::MAX),
        (u64::MAX, 7),
    ] {
        let digest: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(73)).collect();
        let mut fast = String::new();
        render_line(
            &mut fast,
            SimTime::from_micros(time),
            NodeId::new(node),
            "k",
            &digest,
        )
        .unwrap();
        let slow = format!("{time} {node} k {}\n", to_hex(&digest));
        assert_eq!(fast, slow);
    }
}

#[test]
fn short_payloads_are_their_own_fingerprint_and_long_ones_are_hashed() {
    assert_eq!(fingerprint(&[7, 8, 9]), [3, 7, 8, 9]);
    assert_eq!(fingerprint(&[]), [0]);
    // A payload of 31 zero bytes and one of 30 differ by their length byte.
    assert_ne!(fingerprint(&[0; 31]), fingerprint(&[0; 30]));
    let long = fingerprint(&[1; 32]);
    assert_eq!(long[0], 0xff);
    assert_eq!(long[1..], Sha256::digest([1; 32])[..31]);
    assert_ne!(long, fingerprint(&[1; 33]));
}

#[test]
fn the_hash_is_sha256_of_the_records_whatever_the_batching() {
    let mut recorder = TraceRecorder::new();
    recorder.header(9).unwrap();
    let mut expected = Sha256::new();
    expected.update(b"agora-trace v2\0");
    expected.update(9u64.to_le_bytes());
    // Enough records to cross several batches.
    for i in 0..1_000u32 {
        let event = Labeled("ping", i as u8);
        recorder
            .record(SimTime::from_micros(u64::from(i)), NodeId::new(i), &event)
            .unwrap();
        expected.update(u64::from(i).to_le_bytes());
        expected.update(i.to_le_bytes());
        expected.update([4]);
        expected.update(b"ping");
        expected.update(fingerprint(&[i as u8]));
        if i == 500 {
            assert_eq!(recorder.trace_hash(), to_hex(&expected.clone().finalize()));
        }
    }
    // A long payload is replaced by its digest in the record.
    let long = Raw(vec![5; 40]);
    recorder
        .record(SimTime::from_micros(7_000), NodeId::new(3), &long)
        .unwrap();
    expected.update(7_000u64.to_le_bytes());
    expected.update(3u32.to_le_bytes());
    expected.update([3]);
    expected.update(b"raw");
    expected.update([0xff]);
    expected.update(&Sha256::digest([5; 40])[..31]);
    assert_eq!(recorder.trace_hash(), to_hex(&expected.finalize()));
    assert_eq!(recorder.events_recorded(), 1_001);
}

#[test]
fn empty_trace_hashes_to_sha256_of_nothing() {
    assert_eq!(
        TraceRecorder::new().trace_hash(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn kinds_with_whitespace_are_rejected() {
    let mut recorder = TraceRecorder::new();
    let bad = Labeled("two words", 0);
    assert!(matches!(
        recorder.record(SimTime::ZERO, NodeId::new(0), &bad),
        Err(TraceError::InvalidKind { .. })
    ));
    assert!(
        recorder
            .record(SimTime::ZERO, NodeId::new(0), &Labeled("", 0))
            .is_err()
    );
    let long = Labeled("a-kind-label-longer-than-32-bytes", 0);
    assert!(
        recorder
            .record(SimTime::ZERO, NodeId::new(0), &long)
            .is_err()
    );
    assert_eq!(recorder.events_recorded(), 0);
}

#[test]
fn every_field_changes_the_hash() {
    let hash_of = |time: u64, node: u32, kind: &'static str, payload: u8| {
        let mut recorder = TraceRecorder::new();
        recorder
            .record(
                SimTime::from_micros(time),
                NodeId::new(node),
                &Labeled(kind, payload),
            )
            .unwrap();
        recorder.trace_hash()
    };
    let base = hash_of(1, 2, "a", 3);
    assert_ne!(base, hash_of(9, 2, "a", 3));
    assert_ne!(base, hash_of(1, 9, "a", 3));
    assert_ne!(base, hash_of(1, 2, "b", 3));
    assert_ne!(base, hash_of(1, 2, "a", 9));
    assert_eq!(base, hash_of(1, 2, "a", 3));
}

#[test]
fn malformed_and_backwards_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let digest = "0100";

    let path = dir.path().join("old.trace");
    std::fs::write(&path, format!("agora-trace v1 seed 1\n5 0 ping {digest}\n")).unwrap();
    assert!(matches!(
        verify_trace(&path),
        Err(TraceError::Malformed { line: 1, .. })
    ));

    let path = dir.path().join("short.trace");
    std::fs::write(&path, "1 2 ping\n").unwrap();
    assert!(matches!(
        verify_trace(&path),
        Err(TraceError::Malformed { line: 1, .. })
    ));

    let path = dir.path().join("backwards.trace");
    std::fs::write(&path, format!("5 0 ping {digest}\n4 0 ping {digest}\n")).unwrap();
    assert!(matches!(
        verify_trace(&path),
        Err(TraceError::TimeWentBackwards { line: 2, .. })
    ));

    let missing = dir.path().join("missing.trace");
    assert!(matches!(
        verify_trace(&missing),
        Err(TraceError::Read { .. })
    ));
}
