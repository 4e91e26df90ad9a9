//! The seed corpora of the fuzz targets (`fuzz/corpus/*/seed-*`) are valid encodings of the
//! frames built here. After a format change, rewrite them with
//! `POSTBOX_WIRE_WRITE_SEEDS=1 cargo test -p postbox-wire --test it seeds`.

use std::path::PathBuf;

use bytes::BytesMut;
use postbox_wire::auth::{prove, Role};
use postbox_wire::{encode_frame, Challenge, Frame, FrameCodec, Hello, Proof};
use tokio_util::codec::Decoder;

use crate::strategies::one_of_each_kind;

/// The fixed identities of `fuzz/fuzz_targets/handshake.rs`: keep the two in step.
mod handshake_target {
    use postbox_wire::NodeAddr;

    pub(super) const SECRET: &[u8] = b"postbox-fuzz-secret";
    pub(super) const CLUSTER: &str = "fuzz";
    pub(super) const CLIENT_NONCE: [u8; 32] = [0x11; 32];
    pub(super) const SERVER_NONCE: [u8; 32] = [0x22; 32];

    pub(super) fn client() -> NodeAddr {
        NodeAddr {
            addr: "127.0.0.1:7001".into(),
            node_id: 1,
            incarnation: 1,
        }
    }

    pub(super) fn server() -> NodeAddr {
        NodeAddr {
            addr: "127.0.0.1:7002".into(),
            node_id: 2,
            incarnation: 1,
        }
    }
}

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// (file name, frames it holds) for the frame decoder's corpus.
fn frame_decoder_seeds() -> Vec<(String, Vec<Frame>)> {
    let frames = one_of_each_kind();
    let mut seeds: Vec<(String, Vec<Frame>)> = frames
        .iter()
        .map(|frame| (format!("seed-{}", frame.kind()), vec![frame.clone()]))
        .collect();
    seeds.push(("seed-batch".into(), frames));
    seeds
}

/// The handshake corpus: the three handshake frames, with proofs valid for the target's
/// fixed secret.
fn handshake_seeds() -> Vec<(String, Vec<Frame>)> {
    use handshake_target::*;
    let hello = Frame::Hello(Hello {
        version: postbox_wire::PROTOCOL_VERSION,
        cluster: CLUSTER.into(),
        node: client(),
        nonce: CLIENT_NONCE,
    });
    let challenge = Frame::Challenge(Challenge {
        version: postbox_wire::PROTOCOL_VERSION,
        cluster: CLUSTER.into(),
        node: server(),
        nonce: SERVER_NONCE,
        proof: prove(
            SECRET,
            Role::Server,
            &server(),
            CLUSTER,
            &CLIENT_NONCE,
            &SERVER_NONCE,
        ),
    });
    let proof = Frame::Proof(Proof {
        proof: prove(
            SECRET,
            Role::Client,
            &client(),
            CLUSTER,
            &SERVER_NONCE,
            &CLIENT_NONCE,
        ),
    });
    vec![
        ("seed-hello".into(), vec![hello]),
        ("seed-challenge".into(), vec![challenge]),
        ("seed-proof".into(), vec![proof]),
    ]
}

fn check(target: &str, seeds: Vec<(String, Vec<Frame>)>) {
    let dir = corpus(target);
    let write = std::env::var_os("POSTBOX_WIRE_WRITE_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, frames) in seeds {
        let mut expected = BytesMut::new();
        for frame in &frames {
            encode_frame(frame, &mut expected).unwrap();
        }
        let path = dir.join(&name);
        if write {
            std::fs::write(&path, &expected).unwrap();
        }
        let on_disk = std::fs::read(&path)
            .unwrap_or_else(|err| panic!("{}: {err} (see this module's docs)", path.display()));
        assert_eq!(
            on_disk,
            &expected[..],
            "{} is stale (see this module's docs)",
            path.display()
        );
        let mut buf = BytesMut::from(&on_disk[..]);
        let mut decoded = Vec::new();
        while let Some(frame) = FrameCodec::default().decode(&mut buf).unwrap() {
            decoded.push(frame);
        }
        assert_eq!(decoded, frames, "{name}");
        assert!(buf.is_empty(), "{name}");
    }
}

#[test]
fn frame_decoder_seeds_are_valid_frames() {
    check("frame_decoder", frame_decoder_seeds());
}

#[test]
fn handshake_seeds_are_valid_frames_with_valid_proofs() {
    check("handshake", handshake_seeds());
    // And the proofs in them verify the way the fuzz target checks them.
    use handshake_target::*;
    let seeds = handshake_seeds();
    let Frame::Challenge(ch) = &seeds[1].1[0] else {
        panic!()
    };
    assert!(postbox_wire::auth::verify(
        SECRET,
        Role::Server,
        &ch.node,
        &ch.cluster,
        &CLIENT_NONCE,
        &ch.nonce,
        &ch.proof
    ));
    let Frame::Proof(p) = &seeds[2].1[0] else {
        panic!()
    };
    assert!(postbox_wire::auth::verify(
        SECRET,
        Role::Client,
        &client(),
        CLUSTER,
        &SERVER_NONCE,
        &CLIENT_NONCE,
        &p.proof
    ));
}

/// The smoke run of the fuzz corpora in CI: every file under `fuzz/corpus/` (seeds and any
/// inputs a fuzzing session saved there) goes through the frame decoder target's checks —
/// decode until used up, no panic, every frame round-trips — under the default limit and a
/// small one. The fuzzer itself needs a nightly toolchain and is not part of CI.
#[test]
fn every_corpus_file_replays_through_the_decoder_checks() {
    use tokio_util::codec::Encoder;
    let mut files = 0;
    for target in ["frame_decoder", "handshake"] {
        for entry in std::fs::read_dir(corpus(target)).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            files += 1;
            for max in [postbox_wire::DEFAULT_MAX_FRAME, 64] {
                let mut codec = FrameCodec::new(max);
                let mut buf = BytesMut::from(&data[..]);
                loop {
                    let before = buf.len();
                    match codec.decode(&mut buf) {
                        Ok(Some(frame)) => {
                            assert!(buf.len() < before);
                            let mut again = BytesMut::new();
                            codec.encode(&frame, &mut again).unwrap();
                            assert_eq!(codec.decode(&mut again).unwrap(), Some(frame));
                            assert!(again.is_empty());
                        }
                        Ok(None) => {
                            let _ = codec.decode_eof(&mut buf);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
    }
    assert!(files >= 20, "the corpora are missing ({files} files)");
}
