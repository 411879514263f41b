//! What the conversations of one service share.

use std::sync::Arc;

use crate::LlmError;
use crate::managed::Tally;
use crate::names::Interner;
use crate::windows::ContextWindows;

use super::FitPolicy;

/// What the conversations of one service share: the name interner, the window table and the
/// fit policy. Build it once, wrap it in an `Arc`, and hand it to every conversation.
#[derive(Debug)]
pub struct ConversationSetup {
    pub(super) names: Arc<Interner>,
    pub(super) windows: ContextWindows,
    pub(super) policy: FitPolicy,
    pub(super) tally: Arc<Tally>,
}

impl ConversationSetup {
    /// A setup with its own interner.
    ///
    /// # Errors
    /// [`LlmError::InvalidConfig`] when the policy's fractions are outside (0, 1], the target
    /// is above the trigger, or `max_tool_output` is below 128 bytes.
    pub fn new(windows: ContextWindows, policy: FitPolicy) -> Result<Self, LlmError> {
        Self::with_interner(Arc::new(Interner::new()), windows, policy)
    }

    /// A setup sharing an existing interner (model ids and tool names are interned there).
    ///
    /// # Errors
    /// As [`ConversationSetup::new`].
    pub fn with_interner(
        names: Arc<Interner>,
        windows: ContextWindows,
        policy: FitPolicy,
    ) -> Result<Self, LlmError> {
        policy.validate()?;
        Ok(Self {
            names,
            windows,
            policy,
            tally: Arc::default(),
        })
    }

    /// A setup whose conversations are a component of `manager`: names go to the manager's
    /// interner, and the conversations' heap bytes are charged to its budget and listed in
    /// its report as `conversations` (live conversations as items).
    ///
    /// # Errors
    /// As [`ConversationSetup::new`].
    pub fn from_manager(
        manager: &memory_manager::MemoryManager,
        windows: ContextWindows,
        policy: FitPolicy,
    ) -> Result<Self, LlmError> {
        let setup = Self::with_interner(Arc::clone(manager.interner()), windows, policy)?;
        manager.register(Arc::clone(&setup.tally) as Arc<dyn memory_manager::Component>);
        Ok(setup)
    }

    /// The interner holding model ids and tool names.
    pub fn names(&self) -> &Arc<Interner> {
        &self.names
    }

    /// The fit policy.
    pub fn policy(&self) -> &FitPolicy {
        &self.policy
    }

    /// The window table.
    pub fn windows(&self) -> &ContextWindows {
        &self.windows
    }
}
