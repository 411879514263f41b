//! Context-window sizes per model.

/// A table from model id to context window (in tokens), matched by longest prefix so dated
/// ids like `gpt-4o-2024-08-06` find `gpt-4o`.
///
/// The defaults cover the families the project's users run: 128,000 (GPT-4o, GPT-4 Turbo,
/// Llama 3.1), 200,000 (Claude, o1/o3/o4-mini), 272,000 (GPT-5 input) and 1,047,576 (GPT-4.1).
/// Vendors change these; [`ContextWindows::insert`] overrides any entry. Lookups scan the
/// table (a few dozen entries) and are done once per [`Conversation::set_model`](crate::Conversation::set_model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextWindows {
    entries: Vec<(String, u32)>,
    fallback: Option<u32>,
}

const DEFAULTS: &[(&str, u32)] = &[
    ("gpt-4o", 128_000),
    ("gpt-4-turbo", 128_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-5", 272_000),
    ("o1", 200_000),
    ("o1-mini", 128_000),
    ("o3", 200_000),
    ("o4-mini", 200_000),
    ("claude-", 200_000),
    ("llama-3.1", 128_000),
    ("llama-3.3", 128_000),
];

impl Default for ContextWindows {
    fn default() -> Self {
        let mut t = Self::empty();
        for &(prefix, tokens) in DEFAULTS {
            t.insert(prefix, tokens);
        }
        t
    }
}

impl ContextWindows {
    /// A table with no entries and no fallback.
    pub fn empty() -> Self {
        Self {
            entries: Vec::new(),
            fallback: None,
        }
    }

    /// Sets the window for model ids starting with `prefix`, replacing an equal prefix.
    pub fn insert(&mut self, prefix: &str, tokens: u32) -> &mut Self {
        match self.entries.iter_mut().find(|(p, _)| p == prefix) {
            Some(entry) => entry.1 = tokens,
            None => self.entries.push((prefix.to_owned(), tokens)),
        }
        self
    }

    /// The window used for models that match no entry (`None`, the default, makes them an
    /// error rather than a guess).
    pub fn set_fallback(&mut self, tokens: Option<u32>) -> &mut Self {
        self.fallback = tokens;
        self
    }

    /// The window for `model`: the longest matching prefix, else the fallback.
    pub fn lookup(&self, model: &str) -> Option<u32> {
        self.entries
            .iter()
            .filter(|(p, _)| model.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|&(_, t)| t)
            .or(self.fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let mut t = ContextWindows::default();
        assert_eq!(t.lookup("gpt-4o-2024-08-06"), Some(128_000));
        assert_eq!(t.lookup("gpt-4.1-mini"), Some(1_047_576));
        assert_eq!(t.lookup("gpt-5"), Some(272_000));
        assert_eq!(t.lookup("claude-sonnet-4-5"), Some(200_000));
        assert_eq!(t.lookup("o1-mini-2024"), Some(128_000));
        assert_eq!(t.lookup("o1-preview"), Some(200_000));
        assert_eq!(t.lookup("mystery"), None);
        t.set_fallback(Some(8192));
        assert_eq!(t.lookup("mystery"), Some(8192));
        t.insert("gpt-4o", 64_000);
        assert_eq!(t.lookup("gpt-4o"), Some(64_000));
    }
}
