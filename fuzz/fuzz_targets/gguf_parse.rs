//! Fuzzes the GGUF parser with arbitrary bytes: the slice parser, the best-effort
//! inspector and the streaming reader must never panic, and must agree with each other.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use mm_gguf::{Gguf, StreamingGguf, inspect};

fuzz_target!(|data: &[u8]| {
    let strict = Gguf::parse(data);
    let partial = inspect(data);
    let streamed = StreamingGguf::open(Cursor::new(data));
    match &strict {
        Ok(g) => {
            // Everything reachable from a valid parse is in bounds and decodes.
            for t in g.tensors() {
                assert_eq!(t.data.len() as u64, t.n_bytes());
            }
            for m in g.metadata() {
                if let Some(a) = m.value.as_array() {
                    for v in a.iter() {
                        let _ = v;
                    }
                }
            }
            assert!(partial.error.is_none());
            // Streaming refuses keys and names over 64 KiB that the slice parser allows.
            let mut s = match streamed {
                Err(mm_gguf::GgufError::TooLong { .. }) => return,
                other => other.expect("streaming accepts what the slice parser accepts"),
            };
            assert_eq!(s.tensors().len(), g.n_tensors());
            assert_eq!(s.data_offset(), g.data_offset());
            let mut n = 0u64;
            s.for_each_tensor(|_, _, chunk| {
                n += chunk.len() as u64;
                Ok(())
            })
            .expect("valid tensors stream");
            assert_eq!(n, g.tensor_bytes());
        }
        Err(e) => {
            let _ = e.to_string();
            // inspect makes every check parse makes, duplicates included.
            let seen = partial.error.as_ref().expect("inspect refuses what parse refuses");
            assert_eq!(e.offset(), seen.offset(), "parse: {e} / inspect: {seen}");
            match &streamed {
                Ok(_) => panic!("streaming accepted a file the slice parser refused: {e}"),
                Err(s) => assert_eq!(e.offset(), s.offset(), "parse: {e} / streaming: {s}"),
            }
        }
    }
});
