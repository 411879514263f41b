//! `POST /v1/embeddings`: static embeddings from the served model itself. Each input is
//! tokenized with the model's own tokenizer; the `token_embd.weight` rows of its tokens are
//! dequantized one by one (only their pages of the mapped file are read), mean-pooled and
//! L2-normalised. Vectors go through the manager's embedding cache, so a repeated input costs
//! a hash and a lookup.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::BytesMut;
use mm_arena::PooledArena;
use mm_llm::{EmbeddingCache, Symbol};
use mm_tokenizer::EncodeOptions;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::error::ApiError;
use crate::model::{EMBEDDING_TENSOR, LoadedModel};

/// One input text, borrowed from the request body unless it had escapes.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// `input`: a string or an array of strings (token-id arrays are refused).
#[derive(Debug)]
pub struct Inputs<'a>(pub Vec<Text<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Inputs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Inputs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Inputs(vec![Text(Cow::Borrowed(s))]))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Inputs(vec![Text(Cow::Owned(s.to_owned()))]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(t) = seq.next_element::<Text<'a>>()? {
                    v.push(t);
                }
                Ok(Inputs(v))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The request body (OpenAI's shape; unknown fields are ignored, as OpenAI clients send
/// some).
#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest<'a> {
    /// The model id.
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    /// The texts.
    #[serde(borrow)]
    pub input: Inputs<'a>,
    /// `float` (the default) only.
    #[serde(default, borrow)]
    pub encoding_format: Option<Cow<'a, str>>,
}

/// Limits on one request.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingLimits {
    /// Most inputs in one request.
    pub max_inputs: usize,
    /// Most bytes in one input.
    pub max_input_bytes: usize,
}

impl<'a> EmbeddingRequest<'a> {
    /// Checks the request against `limits` and the served model's name.
    ///
    /// # Errors
    /// 400 for an empty or oversized input list, an empty or oversized input, an encoding
    /// other than `float`; 404 for another model.
    pub fn validate(&self, served: &str, limits: EmbeddingLimits) -> Result<(), ApiError> {
        if self.model != served {
            return Err(ApiError::unknown_model(&self.model, served));
        }
        if let Some(f) = &self.encoding_format
            && f != "float"
        {
            return Err(ApiError::bad_request(format!(
                "encoding_format `{f}` is not supported; use `float`"
            )));
        }
        let n = self.input.0.len();
        if n == 0 {
            return Err(ApiError::bad_request("`input` is an empty list"));
        }
        if n > limits.max_inputs {
            return Err(ApiError::bad_request(format!(
                "`input` has {n} items; at most {} are accepted per request",
                limits.max_inputs
            )));
        }
        for (i, t) in self.input.0.iter().enumerate() {
            if t.0.is_empty() {
                return Err(ApiError::bad_request(format!("`input[{i}]` is empty")));
            }
            if t.0.len() > limits.max_input_bytes {
                return Err(ApiError::bad_request(format!(
                    "`input[{i}]` has {} bytes; at most {} are accepted",
                    t.0.len(),
                    limits.max_input_bytes
                )));
            }
        }
        Ok(())
    }
}

/// Bytes the response for `n` inputs of `dims` values takes at most (each value at most 15
/// characters and a comma, plus the framing).
pub fn response_bytes(n: usize, dims: usize) -> usize {
    256 + n * (96 + dims * 16)
}

/// Scratch of one request: the token ids (reused between requests).
#[derive(Debug, Default)]
pub struct Scratch {
    /// Token ids of the input being embedded.
    pub ids: Vec<mm_tokenizer::TokenId>,
}

/// Embeds every input into `out` as the OpenAI response; returns the prompt tokens.
///
/// The vector of one input is cached with its token count as a last element, so a hit
/// reports usage without tokenizing again.
///
/// # Errors
/// 500 when the embedding tensor cannot be dequantized; 503 when the cache's budget refuses.
pub fn embed_into(
    model: &LoadedModel,
    cache: &EmbeddingCache,
    sym: Symbol,
    texts: &[Text<'_>],
    arena: &PooledArena,
    scratch: &mut Scratch,
    out: &mut BytesMut,
) -> Result<u64, ApiError> {
    let g = model.gguf().gguf();
    let t = g
        .tensor(EMBEDDING_TENSOR)
        .ok_or_else(|| ApiError::internal("the embedding tensor is gone"))?;
    let dims = model.dims;
    let sum = arena
        .alloc_slice_fill_copy(dims + 1, 0f32)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let row = arena
        .alloc_slice_fill_copy(dims, 0f32)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let tok = model.tokenizer.tokenizer();
    let mut tokens = 0u64;
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for (i, text) in texts.iter().enumerate() {
        let key = cache.key(sym, &text.0);
        let (sum, row, ids, tok, t) = (&mut *sum, &mut *row, &mut scratch.ids, &tok, &t);
        let v = cache.try_get_with(key, move || {
            ids.clear();
            tok.encode_into(&text.0, EncodeOptions::new(), ids);
            sum.fill(0.0);
            for &id in ids.iter() {
                mm_gguf::quant::dequantize_tensor_rows(t, &[id as usize], row)
                    .map_err(|e| ApiError::internal(format!("dequantizing row {id}: {e}")))?;
                for (s, r) in sum[..dims].iter_mut().zip(row.iter()) {
                    *s += *r;
                }
            }
            pool_and_normalise(&mut sum[..dims], ids.len());
            sum[dims] = ids.len() as f32;
            Ok::<&[f32], ApiError>(sum)
        })?;
        let (vector, count) = v.split_at(dims);
        tokens += count.first().map_or(0, |c| *c as u64);
        if i > 0 {
            out.extend_from_slice(b",");
        }
        write_vector(out, i, vector);
    }
    out.extend_from_slice(b"],\"model\":");
    write_json_str(out, &model.name);
    let _ = write!(
        out,
        ",\"usage\":{{\"prompt_tokens\":{tokens},\"total_tokens\":{tokens}}}}}"
    );
    Ok(tokens)
}

/// Mean over `n` rows, then unit length (a zero vector stays zero).
pub fn pool_and_normalise(sum: &mut [f32], n: usize) {
    if n == 0 {
        return;
    }
    let inv = 1.0 / n as f32;
    let mut norm = 0f64;
    for s in sum.iter_mut() {
        *s *= inv;
        norm += f64::from(*s) * f64::from(*s);
    }
    let norm = norm.sqrt() as f32;
    if norm > 0.0 {
        for s in sum.iter_mut() {
            *s /= norm;
        }
    }
}

fn write_vector(out: &mut BytesMut, index: usize, v: &[f32]) {
    let _ = write!(
        out,
        "{{\"object\":\"embedding\",\"index\":{index},\"embedding\":["
    );
    for (j, x) in v.iter().enumerate() {
        if j > 0 {
            out.extend_from_slice(b",");
        }
        // `{}` of an f32 is its shortest round-tripping form, written without allocating.
        let _ = write!(out, "{x}");
    }
    out.extend_from_slice(b"]}");
}

/// Writes `s` as a JSON string.
pub fn write_json_str(out: &mut BytesMut, s: &str) {
    out.extend_from_slice(b"\"");
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.extend_from_slice(b"\"");
}
