//! Output: the prompt as a chat-completions JSON request body.

use bytes::BytesMut;
use mm_pool::{BufferPool, PooledBuffer};

use crate::LlmError;
use crate::json::{Sink, write_str, write_str_body};
use crate::tokens::TokenCounter;

use super::Conversation;
use super::prompt::Part;

/// What [`Conversation::assemble`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssembleReport {
    /// Messages written (a group of parallel tool calls is one message).
    pub messages: u32,
    /// Synthetic "aborted" results written for calls without a result.
    pub synthetic_results: u32,
    /// Bytes appended to the buffer.
    pub bytes: usize,
}

impl<C: TokenCounter> Conversation<C> {
    /// Writes the prompt into `out` as a chat-completions request body:
    /// `{"model":..,"stream":..,"messages":[..],"tools":[..]}`. The system prompt and summary
    /// come first as system messages; parallel tool calls become one assistant message with
    /// `tool_calls`, each followed by its result, or by a synthetic
    /// [`ABORTED_RESULT`](crate::ABORTED_RESULT) when none was recorded. Strings are escaped
    /// per RFC 8259. Call [`Conversation::fit`] first; this does not cut anything.
    ///
    /// `out` is appended to (any `BytesMut`, including a pooled buffer); once its capacity
    /// covers the prompt, assembly allocates nothing.
    ///
    /// # Errors
    /// [`LlmError::NoModel`] before [`Conversation::set_model`].
    pub fn assemble(&self, out: &mut BytesMut, stream: bool) -> Result<AssembleReport, LlmError> {
        let (model, _) = self.model.ok_or(LlmError::NoModel)?;
        let start = out.len();
        let mut report = AssembleReport::default();
        out.put(b"{\"model\":");
        write_str(out, self.setup.names.resolve(model));
        out.put(if stream {
            b",\"stream\":true"
        } else {
            b",\"stream\":false"
        });
        out.put(b",\"messages\":[");
        let mut first = true;
        self.for_each_part(|part| {
            if !std::mem::take(&mut first) {
                out.put(b",");
            }
            write_part(out, part, &mut report);
        });
        out.put(b"]");
        if !self.tools.is_empty() {
            out.put(b",\"tools\":");
            out.put(self.tools.as_bytes());
        }
        out.put(b"}");
        report.bytes = out.len() - start;
        Ok(report)
    }

    /// As [`Conversation::assemble`], into a buffer taken from `pool` and sized from the
    /// history (an estimate: if escaping makes the prompt larger, the buffer grows).
    ///
    /// # Errors
    /// As [`Conversation::assemble`].
    pub fn assemble_pooled(
        &self,
        pool: &BufferPool,
        stream: bool,
    ) -> Result<(PooledBuffer, AssembleReport), LlmError> {
        let mut buf = pool.acquire(self.prompt_size_hint());
        let report = self.assemble(&mut buf, stream)?;
        Ok((buf, report))
    }

    /// Bytes the assembled prompt is expected to take.
    fn prompt_size_hint(&self) -> usize {
        let text = self.store.live_text_bytes();
        let raw = self.system.len() + self.summary.len() + self.tools.len() + text;
        (raw + raw / 8).saturating_add(self.store.items().len() * 96 + 256)
    }
}

/// Writes one message of the prompt as a JSON object.
fn write_part(out: &mut BytesMut, part: Part<'_>, report: &mut AssembleReport) {
    report.messages += 1;
    match part {
        Part::System(text) => message(out, "system", text),
        Part::Text { role, text } => message(out, role.as_str(), text),
        Part::Calls(group) => {
            out.put(b"{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[");
            for (n, call) in group.calls().enumerate() {
                if n > 0 {
                    out.put(b",");
                }
                out.put(b"{\"id\":");
                write_str(out, call.id);
                out.put(b",\"type\":\"function\",\"function\":{\"name\":");
                write_str(out, call.tool);
                out.put(b",\"arguments\":");
                write_str(out, call.arguments);
                out.put(b"}}");
            }
            out.put(b"]}");
        }
        Part::Result {
            call_id,
            content,
            synthetic,
        } => {
            out.put(b"{\"role\":\"tool\",\"tool_call_id\":");
            write_str(out, call_id);
            out.put(b",\"content\":");
            write_str(out, content);
            out.put(b"}");
            report.synthetic_results += u32::from(synthetic);
        }
    }
}

/// Writes one `{"role":..,"content":..}` message.
fn message(out: &mut BytesMut, role: &str, content: &str) {
    out.put(b"{\"role\":\"");
    write_str_body(out, role);
    out.put(b"\",\"content\":");
    write_str(out, content);
    out.put(b"}");
}
