//! Fuzzes the RFB codec: client messages, server messages and rectangles through the stateful
//! decoder, and the framebuffer painter (ZRLE inflate, hextile, RRE, cursor), as a hostile
//! viewer, console or recording would feed them. Nothing may panic or allocate unboundedly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use player::rfb::{self, PixelFormat, Replay, ServerDecoder, ServerInit};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else { return };
    match selector % 4 {
        0 => {
            let mut pos = 0;
            while let Ok(Some((_, n))) = rfb::decode_client(data.get(pos..).unwrap_or_default()) {
                pos += n;
            }
        }
        1 => {
            let mut d = ServerDecoder::new(64, 48, PixelFormat::RGB888_LE);
            let mut pos = 0;
            while let Ok(Some((_, n))) = d.decode(data.get(pos..).unwrap_or_default()) {
                pos += n;
            }
        }
        2 => {
            let _ = rfb::decode_version(data);
            let _ = rfb::decode_security_types(data);
            let _ = rfb::decode_security_result(data, rfb::ProtocolVersion::V3_8);
            let _ = rfb::decode_server_init(data);
        }
        _ => {
            let init = ServerInit { width: 64, height: 48, pixel_format: PixelFormat::RGB888_LE, name: String::new() };
            if let Ok(mut r) = Replay::new(&init) {
                let (client, server) = data.split_at(data.len() / 4);
                let _ = r.client_bytes(client);
                let _ = r.server_bytes(server);
            }
        }
    }
});
