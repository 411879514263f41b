#![doc = include_str!("../README.md")]

mod error;
mod json;
pub mod sse;

pub use error::LlmError;
