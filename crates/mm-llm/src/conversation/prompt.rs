//! The prompt's order, written once: what [`Conversation::assemble`](crate::Conversation::assemble)
//! serialises as JSON and a chat template renders.

use crate::names::Interner;
use crate::tokens::TokenCounter;

use super::store::{Item, Store};
use super::{ABORTED_RESULT, Conversation, Role};

/// One message of the prompt, in the order it is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Part<'a> {
    /// The system prompt, then the summary (each only when not empty).
    System(&'a str),
    /// A user or assistant text message.
    Text { role: Role, text: &'a str },
    /// Consecutive tool calls, sent as one assistant message.
    Calls(CallGroup<'a>),
    /// The result of one call of the group before it, in the calls' order.
    Result {
        call_id: &'a str,
        content: &'a str,
        /// No result was recorded: `content` is [`ABORTED_RESULT`].
        synthetic: bool,
    },
}

/// A group of consecutive live tool calls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallGroup<'a> {
    store: &'a Store,
    names: &'a Interner,
    start: usize,
    end: usize,
}

/// One call of a [`CallGroup`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) id: &'a str,
    pub(crate) tool: &'a str,
    pub(crate) arguments: &'a str,
}

impl<'a> CallGroup<'a> {
    fn items(&self) -> impl Iterator<Item = &'a Item> + 'a {
        self.store
            .items()
            .range(self.start..self.end)
            .filter(|c| c.is_live())
    }

    /// The calls, oldest first.
    pub(crate) fn calls(&self) -> impl Iterator<Item = Call<'a>> + 'a {
        let (store, names) = (self.store, self.names);
        self.items().map(move |c| Call {
            id: store.span(c.call_id),
            tool: c.tool.map_or("", |s| names.resolve(s)),
            arguments: store.span(c.text),
        })
    }
}

impl<C: TokenCounter> Conversation<C> {
    /// Calls `f` with each message of the prompt, in order: system prompt and summary, then
    /// the live history, each group of parallel tool calls followed by its results (a
    /// synthetic [`ABORTED_RESULT`] for a call without one).
    pub(crate) fn for_each_part<'a>(&'a self, mut f: impl FnMut(Part<'a>)) {
        for text in [&self.system, &self.summary] {
            if !text.is_empty() {
                f(Part::System(text));
            }
        }
        let store = &self.store;
        let items = store.items();
        let mut i = 0;
        while i < items.len() {
            let item = &items[i];
            i += 1;
            if !item.is_live() {
                continue;
            }
            match item.role {
                Role::User | Role::Assistant => f(Part::Text {
                    role: item.role,
                    text: store.span(item.text),
                }),
                // Results are written right after their call group.
                Role::ToolResult => {}
                Role::ToolCall => {
                    let start = i - 1;
                    let mut end = i;
                    while end < items.len() {
                        let next = &items[end];
                        if next.is_live() && next.role != Role::ToolCall {
                            break;
                        }
                        end += 1;
                    }
                    let group = CallGroup {
                        store,
                        names: &self.setup.names,
                        start,
                        end,
                    };
                    f(Part::Calls(group));
                    for call in group.items() {
                        let (content, synthetic) = match call.partner {
                            Some(seq) => (store.span(items[store.index_of(seq)].text), false),
                            None => (ABORTED_RESULT, true),
                        };
                        f(Part::Result {
                            call_id: store.span(call.call_id),
                            content,
                            synthetic,
                        });
                    }
                    i = end;
                }
            }
        }
    }
}
