//! Fitting: cutting the oldest history to keep the prompt inside the model's window.

use crate::LlmError;
use crate::names::{Interner, Symbol};
use crate::tokens::TokenCounter;

use super::Conversation;
use super::Role;
use super::ledger::optional_message_cost;
use super::policy::Bounds;
use super::store::{Item, MessageView, State, Store};

/// What a fit did. Every fit returns one, triggered or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FitReport {
    /// The model's window in tokens.
    pub window: u64,
    /// Window minus output reserve: the prompt must stay at or under this.
    pub limit: u64,
    /// Fitting starts above this many tokens.
    pub trigger: u64,
    /// A triggered fit cuts down to this many tokens (or as close as the kept parts allow).
    pub target: u64,
    /// Estimated prompt tokens before the fit.
    pub tokens_before: u64,
    /// Estimated prompt tokens after it.
    pub tokens_after: u64,
    /// Whether the trigger was passed and anything was considered for cutting.
    pub triggered: bool,
    /// History items dropped (a tool call and its result count as two).
    pub dropped_items: u32,
    /// Of those, tool call/result pairs dropped together.
    pub dropped_pairs: u32,
    /// Tokens those items cost.
    pub dropped_tokens: u64,
    /// The compaction hook replaced the dropped items with a summary.
    pub compacted: bool,
    /// The kept parts alone are above the target (but within the limit).
    pub above_target: bool,
    /// Tool calls without a result that will get a synthetic "aborted" result.
    pub synthetic_results: u32,
    /// Orphan tool results dropped since the previous fit.
    pub orphans_dropped: u32,
}

/// Counts the tokens of a conversation's whole prompt as the model will see it, for
/// [`Conversation::fit_measured`]. Must be deterministic for a given conversation.
pub trait PromptMeasure<C: TokenCounter> {
    /// Tokens of `conversation`'s prompt.
    ///
    /// # Errors
    /// Whatever keeps it from measuring (a template that fails to render).
    fn measure(&mut self, conversation: &Conversation<C>) -> Result<u64, LlmError>;
}

impl<C: TokenCounter, F: FnMut(&Conversation<C>) -> Result<u64, LlmError>> PromptMeasure<C> for F {
    fn measure(&mut self, conversation: &Conversation<C>) -> Result<u64, LlmError> {
        self(conversation)
    }
}

/// The messages a fit is about to drop, oldest first, as handed to a [`Compactor`].
#[derive(Debug, Clone)]
pub struct DroppedMessages<'a> {
    store: &'a Store,
    names: &'a Interner,
    next: usize,
}

impl<'a> Iterator for DroppedMessages<'a> {
    type Item = MessageView<'a>;

    fn next(&mut self) -> Option<MessageView<'a>> {
        while let Some(item) = self.store.items().get(self.next) {
            self.next += 1;
            if item.state == State::Dropping {
                return Some(self.store.view(item, self.names));
            }
        }
        None
    }
}

/// Replaces old turns with a summary when a fit cuts them.
///
/// `compact` receives the previous summary (empty at first) and the messages being dropped,
/// oldest first, and writes the new summary into `summary` (given empty). The summary is sent
/// as a system message right after the system prompt and is never cut; keep it short. Any
/// `FnMut(&str, DroppedMessages<'_>, &mut String)` is a compactor.
pub trait Compactor {
    /// Writes the summary that replaces `dropped` (and `previous`) into `summary`.
    fn compact(&mut self, previous: &str, dropped: DroppedMessages<'_>, summary: &mut String);
}

impl<F: FnMut(&str, DroppedMessages<'_>, &mut String)> Compactor for F {
    fn compact(&mut self, previous: &str, dropped: DroppedMessages<'_>, summary: &mut String) {
        self(previous, dropped, summary)
    }
}

impl<C: TokenCounter> Conversation<C> {
    /// Fits the history into the model's window without a compaction hook; see
    /// [`Conversation::fit_with`].
    ///
    /// # Errors
    /// As [`Conversation::fit_with`].
    pub fn fit(&mut self) -> Result<FitReport, LlmError> {
        let report = self.fit_inner(None, 0);
        self.account();
        report
    }

    /// Fits the history so that the prompt, as `measure` counts it, fits the window: the
    /// model's own chat template rendered and tokenized
    /// (`TemplateTokens`, features `chat-template` and
    /// `gguf-tokens`) counts exactly the tokens the model will see, framing included.
    ///
    /// The cached per-item estimate still chooses what to drop, as in [`Conversation::fit`];
    /// the measure corrects it: the prompt is measured, the difference from the estimate
    /// moves the bounds, the fit runs, and the prompt is measured again, cutting more while
    /// it is above the limit (dropping items changes the framing too). The report's
    /// `tokens_before` and `tokens_after` are measured counts. Cost: two or more renders and
    /// tokenizations of the whole prompt.
    ///
    /// # Errors
    /// As [`Conversation::fit`], plus whatever `measure` returns;
    /// [`LlmError::ContextOverflow`] when the kept parts measure above the limit.
    pub fn fit_measured<M: PromptMeasure<C> + ?Sized>(
        &mut self,
        measure: &mut M,
    ) -> Result<FitReport, LlmError> {
        let report = self.fit_measured_inner(measure);
        self.account();
        report
    }

    fn fit_measured_inner<M: PromptMeasure<C> + ?Sized>(
        &mut self,
        measure: &mut M,
    ) -> Result<FitReport, LlmError> {
        /// Rounds of re-measuring; each drops more, so a few always suffice in practice.
        const ROUNDS: usize = 8;
        let shift_now = |conv: &Self, measured: u64| {
            i64::try_from(measured).unwrap_or(i64::MAX) - conv.tokens() as i64
        };
        let first = measure.measure(self)?;
        let mut report = self.fit_inner(None, shift_now(self, first))?;
        self.start_at_a_user_turn(&mut report);
        report.tokens_before = first;
        for round in 0..ROUNDS {
            // Nothing dropped yet: the prompt is still what was measured.
            let now = if round == 0 && report.dropped_items == 0 {
                first
            } else {
                measure.measure(self)?
            };
            report.tokens_after = now;
            report.above_target = now > report.target;
            if now <= report.limit {
                return Ok(report);
            }
            let mut more = self.fit_inner(None, shift_now(self, now))?;
            self.start_at_a_user_turn(&mut more);
            report.triggered |= more.triggered;
            report.dropped_items += more.dropped_items;
            report.dropped_pairs += more.dropped_pairs;
            report.dropped_tokens += more.dropped_tokens;
            report.synthetic_results = more.synthetic_results;
            report.orphans_dropped += more.orphans_dropped;
            if more.dropped_items == 0 {
                break;
            }
        }
        let model = self
            .model
            .map_or_else(String::new, |(m, _)| self.setup.names.resolve(m).to_owned());
        Err(LlmError::ContextOverflow {
            model,
            needed: report.tokens_after,
            available: report.limit,
        })
    }

    /// Fits the history into the model's window.
    ///
    /// Nothing happens until the estimate passes `trigger_fraction` of the window (or the
    /// window minus the output reserve, if lower). Then the oldest history items are dropped
    /// until it is under `target_fraction`: a tool call takes its result with it, the newest
    /// `keep_recent_user` user messages stay, and so do the system prompt, tool definitions
    /// and summary. With a `compactor`, the dropped items are first handed to it and its
    /// summary replaces them (if the summary is too large to fit, more items go). The cost is
    /// O(1) when not triggered and O(history) when triggered.
    ///
    /// # Errors
    /// [`LlmError::NoModel`] before [`Conversation::set_model`];
    /// [`LlmError::ContextOverflow`] when the parts that are never cut do not fit in the
    /// window minus the output reserve. The check runs before anything is dropped, so the
    /// conversation is untouched, except when a compactor's new summary is what overflows:
    /// then the compacted items are already gone.
    pub fn fit_with(&mut self, compactor: &mut dyn Compactor) -> Result<FitReport, LlmError> {
        let report = self.fit_inner(Some(compactor), 0);
        self.account();
        report
    }

    /// The fit. `shift` is what the prompt measures beyond the cached estimate (see
    /// [`Conversation::fit_measured`]; 0 otherwise): the bounds are moved into estimate
    /// terms by it, and the report gives tokens in measured terms.
    fn fit_inner(
        &mut self,
        compactor: Option<&mut dyn Compactor>,
        shift: i64,
    ) -> Result<FitReport, LlmError> {
        let (model, window) = self.model.ok_or(LlmError::NoModel)?;
        let bounds = self.setup.policy.bounds(window);
        let Bounds {
            window,
            limit,
            trigger,
            target,
        } = bounds;
        let est = bounds.in_estimate_terms(shift);
        let measured = |tokens: u64| tokens.saturating_add_signed(shift);
        let before = self.tokens();
        let mut report = FitReport {
            window,
            limit,
            trigger,
            target,
            tokens_before: measured(before),
            tokens_after: measured(before),
            synthetic_results: self.ledger.unanswered(),
            orphans_dropped: std::mem::take(&mut self.orphans_since_fit),
            ..FitReport::default()
        };
        if before <= est.trigger {
            return Ok(report);
        }
        report.triggered = true;
        let keep = self.setup.policy.keep_recent_user().max(1);
        let pins = Pins::new(&self.store, keep);
        let pinned: u64 = self
            .store
            .live()
            .filter(|&(i, it)| pins.holds(i, it))
            .map(|(_, it)| u64::from(it.tokens))
            .sum();
        let needed = self.ledger.fixed() + pinned;
        if needed > est.limit {
            self.orphans_since_fit = report.orphans_dropped;
            return Err(self.overflow(model, measured(needed), limit));
        }
        let mark = if compactor.is_some() {
            State::Dropping
        } else {
            State::Dead
        };
        self.select_drops(est.target, pins, mark, &mut report);
        if let Some(compactor) = compactor
            && report.dropped_items > 0
        {
            self.compact(compactor);
            report.compacted = true;
            let needed = self.ledger.fixed() + pinned;
            if needed > est.limit {
                self.reclaim();
                return Err(self.overflow(model, measured(needed), limit));
            }
            if self.tokens() > est.limit {
                self.select_drops(est.limit, pins, State::Dead, &mut report);
            }
        }
        self.reclaim();
        report.tokens_after = measured(self.tokens());
        report.above_target = report.tokens_after > target;
        report.synthetic_results = self.ledger.unanswered();
        self.stats.dropped += u64::from(report.dropped_items);
        Ok(report)
    }

    /// Hands the items marked `Dropping` to `compactor`, replaces the summary with what it
    /// wrote, and marks them dead.
    fn compact(&mut self, compactor: &mut dyn Compactor) {
        let mut summary = std::mem::take(&mut self.scratch);
        summary.clear();
        let dropped = DroppedMessages {
            store: &self.store,
            names: &self.setup.names,
            next: 0,
        };
        compactor.compact(&self.summary, dropped, &mut summary);
        self.scratch = std::mem::replace(&mut self.summary, summary);
        self.ledger.summary = optional_message_cost(&self.counter, &self.summary);
        self.stats.compactions += 1;
        for it in self
            .store
            .items_mut()
            .filter(|i| i.state == State::Dropping)
        {
            it.state = State::Dead;
        }
    }

    /// After a fit that dropped items, drops the live items before the first live user
    /// message (an assistant answer or tool calls whose question went), so the history
    /// starts with a user turn as chat templates that check alternation require.
    fn start_at_a_user_turn(&mut self, report: &mut FitReport) {
        if report.dropped_items == 0 {
            return;
        }
        let Some((first_user, _)) = self.store.live().find(|(_, it)| it.role == Role::User) else {
            return;
        };
        let before = report.dropped_items;
        for i in 0..first_user {
            let it = self.store.items()[i];
            if !it.is_live() {
                continue;
            }
            self.drop_one(i, State::Dead, report);
            if let Some(seq) = it.partner {
                let j = self.store.index_of(seq);
                if self.store.items()[j].is_live() {
                    self.drop_one(j, State::Dead, report);
                    report.dropped_pairs += 1;
                }
            }
        }
        self.stats.dropped += u64::from(report.dropped_items - before);
        self.reclaim();
    }

    fn overflow(&self, model: Symbol, needed: u64, available: u64) -> LlmError {
        LlmError::ContextOverflow {
            model: self.setup.names.resolve(model).to_owned(),
            needed,
            available,
        }
    }

    /// Marks the oldest droppable items with `mark` until the estimate is at most `goal`.
    fn select_drops(&mut self, goal: u64, pins: Pins, mark: State, report: &mut FitReport) {
        let mut i = 0;
        while self.tokens() > goal && i < self.store.items().len() {
            let it = self.store.items()[i];
            if !it.is_live() || pins.holds(i, &it) {
                i += 1;
                continue;
            }
            self.drop_one(i, mark, report);
            if let Some(seq) = it.partner {
                let j = self.store.index_of(seq);
                if self.store.items()[j].is_live() {
                    self.drop_one(j, mark, report);
                    report.dropped_pairs += 1;
                }
            }
            i += 1;
        }
    }

    fn drop_one(&mut self, idx: usize, mark: State, report: &mut FitReport) {
        let it = self.store.item_mut(idx);
        it.state = mark;
        let freed = self.ledger.leave(it);
        report.dropped_items += 1;
        report.dropped_tokens += freed;
    }

    /// Pops dead items and reclaims their text.
    fn reclaim(&mut self) {
        if self.store.reclaim() {
            self.stats.text_compactions += 1;
        }
    }
}

/// Which items a fit never drops: the user messages at or after the `keep`-th most recent
/// live one.
#[derive(Debug, Clone, Copy)]
struct Pins {
    from: usize,
}

impl Pins {
    fn new(store: &Store, keep: u32) -> Self {
        let mut seen = 0;
        for (i, it) in store.items().iter().enumerate().rev() {
            if it.is_live() && it.role == Role::User {
                seen += 1;
                if seen == keep {
                    return Pins { from: i };
                }
            }
        }
        // Fewer user messages than `keep`: all of them are pinned.
        Pins { from: 0 }
    }

    fn holds(&self, idx: usize, it: &Item) -> bool {
        it.role == Role::User && idx >= self.from
    }
}
