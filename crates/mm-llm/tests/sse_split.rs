//! Any split of an input yields the same events, and those events are the ones a plain
//! whole-input reading of the WHATWG rules gives.

use mm_llm::sse::SseParser;
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    event: String,
    data: String,
    id: String,
    retry: Option<u64>,
}

/// Parses `input` cut at `cuts` (sorted offsets); returns events and whether `finish`
/// discarded something.
fn parse_split(input: &[u8], cuts: &[usize]) -> (Vec<Owned>, Option<u64>, String) {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&input.len())) {
        let c = c.clamp(start, input.len());
        p.feed(&input[start..c], |e| {
            out.push(Owned {
                event: e.event.into(),
                data: e.data.into(),
                id: e.id.into(),
                retry: e.retry,
            })
        })
        .unwrap();
        start = c;
    }
    p.finish();
    (out, p.retry(), p.last_event_id().to_owned())
}

/// A deliberately naive reading of the standard over the whole decoded stream.
fn reference(input: &[u8]) -> (Vec<Owned>, Option<u64>, String) {
    let text = String::from_utf8_lossy(input);
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let mut lines = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let mut terminated_last = false;
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut cur));
                terminated_last = true;
            }
            '\n' => {
                lines.push(std::mem::take(&mut cur));
                terminated_last = true;
            }
            c => {
                cur.push(c);
                terminated_last = false;
            }
        }
    }
    let _ = terminated_last; // an unterminated last line is simply never processed
    let (mut data, mut ty, mut id, mut retry, mut block_retry) =
        (String::new(), String::new(), String::new(), None, None);
    let mut out = Vec::new();
    for line in lines {
        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                out.push(Owned {
                    event: if ty.is_empty() {
                        "message".into()
                    } else {
                        ty.clone()
                    },
                    data: data.clone(),
                    id: id.clone(),
                    retry: block_retry,
                });
            }
            data.clear();
            ty.clear();
            block_retry = None;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (name, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line.as_str(), ""),
        };
        match name {
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "event" => ty = value.to_owned(),
            "id" if !value.contains('\0') => id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                let v = value.parse::<u64>().unwrap_or(u64::MAX);
                retry = Some(v);
                block_retry = Some(v);
            }
            _ => {}
        }
    }
    (out, retry, id)
}

fn piece() -> impl Strategy<Value = &'static [u8]> {
    prop::sample::select(vec![
        &b"data"[..],
        b"data: ",
        b"data:",
        b"event: ",
        b"id: ",
        b"id",
        b"retry: ",
        b"12",
        b"+1",
        b":",
        b" ",
        b"\r",
        b"\n",
        b"\r\n",
        b"\n\n",
        b"\0",
        b"x",
        b"hello",
        b"\xEF\xBB\xBF",
        b"\xEF\xBB",
        b"\xFF",
        b"\xE2\x82",
        "é€😀".as_bytes(),
    ])
}

fn input_and_cuts() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    prop::collection::vec(piece(), 0..60)
        .prop_map(|ps| ps.concat())
        .prop_flat_map(|input| {
            let n = input.len();
            (Just(input), prop::collection::vec(0..=n, 0..12))
        })
        .prop_map(|(input, mut cuts)| {
            cuts.sort_unstable();
            (input, cuts)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_split_yields_the_same_events((input, cuts) in input_and_cuts()) {
        let whole = parse_split(&input, &[]);
        prop_assert_eq!(&whole, &parse_split(&input, &cuts));
        prop_assert_eq!(&whole, &reference(&input));
    }

    #[test]
    fn byte_by_byte_equals_whole((input, _cuts) in input_and_cuts()) {
        let every: Vec<usize> = (1..input.len()).collect();
        prop_assert_eq!(parse_split(&input, &[]), parse_split(&input, &every));
    }
}
