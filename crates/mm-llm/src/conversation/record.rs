//! Recording: the system prompt, tool definitions and history items as they arrive.

use crate::LlmError;
use crate::tokens::TokenCounter;

use super::ledger::{message_cost, optional_message_cost};
use super::store::{Item, State};
use super::{ABORTED_RESULT, Conversation, ResultOutcome, Role};

impl<C: TokenCounter> Conversation<C> {
    /// Sets the system prompt. It is never cut.
    pub fn set_system(&mut self, text: &str) {
        self.system.clear();
        self.system.push_str(text);
        self.ledger.system = optional_message_cost(&self.counter, text);
        self.account();
    }

    /// Sets the tool definitions: a JSON array in the chat-completions `tools` shape, copied
    /// into the prompt verbatim (it is not parsed; pass valid JSON). Never cut.
    ///
    /// # Errors
    /// [`LlmError::InvalidConfig`] when the text does not look like a JSON array.
    pub fn set_tools(&mut self, json_array: &str) -> Result<(), LlmError> {
        let t = json_array.trim();
        let is_array = t.starts_with('[') && t.ends_with(']');
        if !t.is_empty() && !is_array {
            return Err(LlmError::InvalidConfig(
                "tool definitions must be a JSON array",
            ));
        }
        self.tools.clear();
        self.tools.push_str(t);
        // Definitions travel inside the request, not as a message: no framing.
        self.ledger.tools = self.counter.count(t);
        self.account();
        Ok(())
    }

    /// Appends a user message.
    ///
    /// # Errors
    /// [`LlmError::ConversationTooLarge`] when the text store would pass 4 GiB.
    pub fn push_user(&mut self, text: &str) -> Result<(), LlmError> {
        self.push_plain(Role::User, text)
    }

    /// Appends an assistant message.
    ///
    /// # Errors
    /// As [`Conversation::push_user`].
    pub fn push_assistant(&mut self, text: &str) -> Result<(), LlmError> {
        self.push_plain(Role::Assistant, text)
    }

    /// Appends a tool call. Consecutive calls are sent as one assistant message with several
    /// `tool_calls` (parallel calls).
    ///
    /// # Errors
    /// As [`Conversation::push_user`].
    pub fn push_tool_call(
        &mut self,
        call_id: &str,
        tool: &str,
        arguments: &str,
    ) -> Result<(), LlmError> {
        self.store.check_room(call_id.len() + arguments.len())?;
        let tool_sym = self.setup.names.try_get_or_intern(tool)?;
        let call_span = self.store.append(call_id);
        let text = self.store.append(arguments);
        let tokens = message_cost(&self.counter, &[call_id, tool, arguments]);
        let aborted_tokens = message_cost(&self.counter, &[call_id, ABORTED_RESULT]);
        self.push_item(Item {
            role: Role::ToolCall,
            state: State::Live,
            tool: Some(tool_sym),
            call_id: call_span,
            text,
            partner: None,
            tokens,
            aborted_tokens,
        });
        Ok(())
    }

    /// Records a tool's output for `call_id`. Output longer than
    /// [`FitPolicy::max_tool_output`](crate::FitPolicy::max_tool_output) is cut now: its head
    /// and tail are kept, on UTF-8 boundaries, around a marker stating the original size.
    ///
    /// The matching call is searched from the newest item back (normally a few steps).
    ///
    /// # Errors
    /// As [`Conversation::push_user`].
    pub fn push_tool_result(
        &mut self,
        call_id: &str,
        output: &str,
    ) -> Result<ResultOutcome, LlmError> {
        let Some(call_idx) = self.find_unanswered_call(call_id) else {
            self.orphans_since_fit += 1;
            self.stats.orphans_dropped += 1;
            return Ok(ResultOutcome::Orphan);
        };
        let max = self.setup.policy.max_tool_output();
        self.store
            .check_room(call_id.len() + output.len().min(max))?;
        let call_span = self.store.append(call_id);
        let (text, cut) = self.store.append_cut(output, max);
        let tokens = message_cost(&self.counter, &[call_id, self.store.span(text)]);
        let seq = self.store.next_seq();
        let call_seq = self.store.seq_of(call_idx);
        self.ledger.answer(&self.store.items()[call_idx]);
        self.store.item_mut(call_idx).partner = Some(seq);
        self.push_item(Item {
            role: Role::ToolResult,
            state: State::Live,
            tool: None,
            call_id: call_span,
            text,
            partner: Some(call_seq),
            tokens,
            aborted_tokens: 0,
        });
        if cut {
            self.stats.outputs_cut += 1;
        }
        Ok(ResultOutcome::Recorded { cut })
    }

    fn push_plain(&mut self, role: Role, text: &str) -> Result<(), LlmError> {
        self.store.check_room(text.len())?;
        let span = self.store.append(text);
        let tokens = message_cost(&self.counter, &[text]);
        self.push_item(Item {
            role,
            state: State::Live,
            tool: None,
            call_id: span.empty_before(),
            text: span,
            partner: None,
            tokens,
            aborted_tokens: 0,
        });
        Ok(())
    }

    /// The one way an item joins the history: stored, counted, accounted.
    fn push_item(&mut self, item: Item) {
        self.ledger.enter(&item);
        self.store.push(item);
        self.stats.appended += 1;
        self.account();
    }

    fn find_unanswered_call(&self, call_id: &str) -> Option<usize> {
        self.store.items().iter().rposition(|i| {
            i.is_live() && i.awaits_result() && self.store.span(i.call_id) == call_id
        })
    }
}
