//! Arbitrary bytes into `FrameCodec::decode` until they are used up: the decoder must never
//! panic, and every frame it returns must survive an encode → decode round trip unchanged.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postbox_wire::FrameCodec;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limit, so that FrameTooLarge is reached too.
    let (max, data) = match data.split_first() {
        Some((&selector, rest)) if selector & 1 == 1 => (usize::from(selector) * 64, rest),
        _ => (postbox_wire::DEFAULT_MAX_FRAME, data),
    };
    let mut codec = FrameCodec::new(max);
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert!(buf.len() < before, "a frame was decoded from no bytes");
                let mut again = BytesMut::new();
                codec
                    .encode(&frame, &mut again)
                    .expect("a decoded frame re-encodes under the same limit");
                let back = codec.decode(&mut again).expect("re-encoded frame decodes");
                assert_eq!(back.as_ref(), Some(&frame));
                assert!(again.is_empty());
            }
            Ok(None) => {
                // The end of the stream: a partial frame is an error, never a panic.
                let _ = codec.decode_eof(&mut buf);
                break;
            }
            Err(_) => break,
        }
    }
});
