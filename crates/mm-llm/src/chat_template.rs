//! A model's own chat template (feature `chat-template`): the Jinja text a GGUF carries as
//! `tokenizer.chat_template`, rendered with [`minijinja`] in the environment Hugging Face's
//! `apply_chat_template` sets up for Python's `jinja2`.
//!
//! That environment: `trim_blocks` and `lstrip_blocks` on, the loop controls (`break`,
//! `continue`), Python's string and dict methods (`.strip()`, `.split()`, `.items()`,
//! `.get()`, ... from `minijinja-contrib`'s `pycompat`), and the globals and filters the
//! templates call: `raise_exception(msg)`, `strftime_now(fmt)`, a `tojson` that writes what
//! Python's `json.dumps` writes (`", "` and `": "` separators, `indent`, `sort_keys`,
//! `ensure_ascii`), `bos_token`, `eos_token`, `add_generation_prompt` and `messages`
//! (`role`, `content`; tool calls as `tool_calls` with `function.name` and
//! `function.arguments`; tool results with `tool_call_id`). `tools` is never defined.
//! Values print as Python prints them (`None`, `True`, `['a', 'b']`).
//!
//! Rendering is bounded: a template gets a fixed amount of "fuel" (instructions), so a
//! hostile template from a model file fails with an error instead of running forever; the
//! rendered prompt is capped ([`RenderOptions::with_max_len`], 16 MiB by default), and every
//! string the renderer builds itself (`indent`, `tojson`, `strftime_now`, a list or dict
//! printed with `{{ }}`) is checked against [`ChatTemplate::MAX_BUILT_LEN`] before it grows
//! past it, so a template cannot make them ask for terabytes (`indent(10**12)`).
//! The template's operators are checked too: before it compiles, each `~`, `+` and `*` in
//! it is rewritten into a call of a checked function (found with minijinja's own parser),
//! which refuses a string past `MAX_BUILT_LEN` or a list past
//! [`ChatTemplate::MAX_LIST_ITEMS`] before building it, so `set s = s ~ s` in a loop and
//! `([1] * 10**12) | last` are errors. The builtins that build more than they take
//! (`batch`, `slice`, `list`, `chain`, `replace`, `join`, `format`, `string`, `pprint`,
//! `escape`, the case filters, and `pycompat`'s `str.replace`, `str.join` and
//! `str.format`) are registered in capped versions that refuse a result past the same caps,
//! and every value printed with `{{ }}`, also into text captured by `{% set %}` blocks and
//! macros, counts against a budget of 4 times the prompt's cap (raw text inside a captured
//! body, `{% raw %}` blocks included, is rewritten into such a print of the same text).
//! Every value the template keeps
//! past its tag (a `set`, a namespace attribute, a `with` name, a `for` loop's list, a
//! call's arguments) is checked by the same kind of rewrite: a namespace may not come to
//! hold itself, a value may be nested at most 256 levels deep, and walking one may visit at
//! most 2,097,152 values, its shared parts counted each time (a cycle or a list nested
//! 200,000 deep overflowed the stack when printed or dropped, which aborts the process;
//! `{% set l = [l, l] %}` in a loop made comparisons exponential). Comparisons, sorts and
//! deduplications charge the work their operands could take to a per-render budget before
//! minijinja does it (a list holding one 100 kB string a million times made one `sort` take
//! minutes).
//! Which real templates render exactly as `jinja2` does, and which do not and why, is in
//! `crates/mm-llm/tests/chat_templates.rs` and `crates/mm-llm/docs/chat-templates.md`.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

use crate::LlmError;
use crate::conversation::{Conversation, Part};
use crate::tokens::TokenCounter;

mod capped;
mod ops;
mod values;

/// Instructions one render may run (a few hundred thousand are plenty for a long chat).
const FUEL: u64 = 10_000_000;

/// See [`ChatTemplate::MAX_BUILT_LEN`].
const MAX_BUILT_LEN: usize = 16 << 20;

/// Whether the render ends with the opening of the model's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GenerationPrompt {
    /// `add_generation_prompt = true`: the prompt ends where the model starts writing (what
    /// a request sends).
    #[default]
    Add,
    /// `add_generation_prompt = false`: the conversation as it stands.
    Omit,
}

/// What a render passes besides the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    generation_prompt: GenerationPrompt,
    fixed_time: Option<i64>,
    max_len: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl RenderOptions {
    /// Default cap on the rendered prompt, in bytes ([`RenderOptions::with_max_len`]).
    pub const DEFAULT_MAX_LEN: usize = 16 << 20;

    /// The defaults (the same as [`Default`]): a generation prompt, the clock's time for
    /// `strftime_now`, a prompt of at most [`RenderOptions::DEFAULT_MAX_LEN`] bytes.
    pub const fn new() -> Self {
        Self {
            generation_prompt: GenerationPrompt::Add,
            fixed_time: None,
            max_len: Self::DEFAULT_MAX_LEN,
        }
    }

    /// Whether to end with the model's turn opening (default [`GenerationPrompt::Add`]).
    #[must_use]
    pub const fn with_generation_prompt(mut self, prompt: GenerationPrompt) -> Self {
        self.generation_prompt = prompt;
        self
    }

    /// The `generation_prompt` setting.
    pub const fn generation_prompt(&self) -> GenerationPrompt {
        self.generation_prompt
    }

    /// Makes `strftime_now` format this instant (seconds since the Unix epoch, UTC) instead
    /// of the local time now (default `None`: now). For reproducible renders.
    #[must_use]
    pub const fn with_fixed_time(mut self, unix_seconds: Option<i64>) -> Self {
        self.fixed_time = unix_seconds;
        self
    }

    /// The `fixed_time` setting.
    pub const fn fixed_time(&self) -> Option<i64> {
        self.fixed_time
    }

    /// Caps the rendered prompt at `bytes` (default [`RenderOptions::DEFAULT_MAX_LEN`]): a
    /// render that would write more stops there with [`LlmError::TemplateOutputTooLong`].
    #[must_use]
    pub const fn with_max_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes;
        self
    }

    /// The `max_len` setting.
    pub const fn max_len(&self) -> usize {
        self.max_len
    }
}

/// A compiled chat template.
///
/// ```
/// use mm_llm::{ChatTemplate, RenderOptions};
///
/// let t = ChatTemplate::new(
///     "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}\n{% endfor %}\
///      {% if add_generation_prompt %}<assistant>{% endif %}",
///     "<s>",
///     "</s>",
/// )?;
/// let messages = serde_json::json!([{"role": "user", "content": " Hi! "}]);
/// assert_eq!(t.render_serialized(&messages, &RenderOptions::new())?, "<s><user>Hi!\n<assistant>");
/// # Ok::<(), mm_llm::LlmError>(())
/// ```
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    /// The longest string (in bytes) that the renderer's own filters, functions, operators
    /// and value printing build: `indent`, `tojson`, `strftime_now`, the template's `~`,
    /// `+` and `*`, and a list or dict printed with `{{ }}`. Past it they fail with an error
    /// before allocating more.
    pub const MAX_BUILT_LEN: usize = MAX_BUILT_LEN;

    /// The most items a list built by a template's `+` or `*` (`[x] * n`, `list + list`)
    /// or by the `list`, `chain`, `batch` and `slice` filters may hold; past it they fail
    /// with an error before they build anything.
    pub const MAX_LIST_ITEMS: usize = ops::MAX_ITEMS;

    /// Compiles `source` with `bos_token` and `eos_token` as the template sees them.
    ///
    /// # Errors
    /// [`LlmError::Template`] when the text is not a template this renderer can parse.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, LlmError> {
        Self::build(source, bos_token, eos_token, true)
    }

    /// `new`, with the operators left as minijinja's own when `guard` is false (the
    /// reference the tests compare the checked operators with).
    fn build(
        source: &str,
        bos_token: &str,
        eos_token: &str,
        guard: bool,
    ) -> Result<Self, LlmError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(FUEL));
        env.set_formatter(|out, _state, value| {
            match value.as_str() {
                Some(text) if value.kind() == ValueKind::String => {
                    spend_print_budget(text.len())?;
                    out.write_str(text)?;
                }
                _ => {
                    let text = python_str(value)?;
                    spend_print_budget(text.len())?;
                    out.write_str(&text)?;
                }
            }
            Ok(())
        });
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_filter("length", python_len);
        env.add_filter("count", python_len);
        env.add_test("iterable", python_iterable);
        env.add_filter("indent", jinja2_indent);
        ops::register(&mut env);
        capped::register(&mut env);
        values::register(&mut env);
        check_depth(source).map_err(template_error)?;
        if source.contains(ops::RESERVED) {
            return Err(template_error(Error::new(
                ErrorKind::InvalidOperation,
                format!("names starting with {} are reserved", ops::RESERVED),
            )));
        }
        let mut text = rewrite_generation_tags(source);
        if guard {
            text = ops::rewrite(&text).map_err(template_error)?;
        }
        env.add_template_owned("chat", text)
            .map_err(template_error)?;
        Ok(Self {
            env,
            bos: bos_token.to_owned(),
            eos: eos_token.to_owned(),
        })
    }

    /// Renders `messages` (anything serialising to a list of `{role, content, ...}` maps,
    /// e.g. a `serde_json::Value`).
    ///
    /// # Errors
    /// [`LlmError::Template`] when rendering fails (the template raised an exception, used
    /// an unsupported construct, ran out of fuel, built a string past
    /// [`ChatTemplate::MAX_BUILT_LEN`], or kept a value nested more than 256 levels deep,
    /// too large to walk, or holding the namespace it is stored in; the messages are held
    /// to the same depth); [`LlmError::TemplateOutputTooLong`] when the prompt
    /// would pass [`RenderOptions::max_len`].
    pub fn render_serialized<M: serde::Serialize>(
        &self,
        messages: &M,
        options: &RenderOptions,
    ) -> Result<String, LlmError> {
        self.render_value(Value::from_serialize(messages), options)
    }

    /// Renders `conversation`'s prompt, in the order [`Conversation::assemble`] sends it:
    /// system prompt and summary as `system` messages, user and assistant messages, each
    /// group of parallel tool calls as one assistant message with `tool_calls` (arguments
    /// parsed from their JSON when they are valid JSON, else the text), each followed by its
    /// `tool` result (or the synthetic [`ABORTED_RESULT`](crate::ABORTED_RESULT)).
    ///
    /// # Errors
    /// As [`ChatTemplate::render_serialized`].
    pub fn render<C: TokenCounter>(
        &self,
        conversation: &Conversation<C>,
        options: &RenderOptions,
    ) -> Result<String, LlmError> {
        self.render_value(conversation.template_messages(), options)
    }

    fn render_value(&self, messages: Value, options: &RenderOptions) -> Result<String, LlmError> {
        let template = self.env.get_template("chat").map_err(template_error)?;
        // The messages too: the caller's values are walked and dropped like the template's.
        let _walks = values::WalkBudget::start(&messages).map_err(template_error)?;
        let fixed = options.fixed_time;
        let strftime_now = Value::from_function(move |fmt: &str| strftime_now(fmt, fixed));
        let ctx = minijinja::context! {
            messages => messages,
            bos_token => &self.bos,
            eos_token => &self.eos,
            add_generation_prompt => options.generation_prompt == GenerationPrompt::Add,
            strftime_now => strftime_now,
        };
        let _budget = PrintBudget::set(
            options
                .max_len
                .max(MAX_BUILT_LEN)
                .saturating_mul(PRINT_FACTOR),
        );
        let mut out = CappedBytes {
            bytes: Vec::new(),
            max: options.max_len,
            over: false,
        };
        match template.render_captured_to(ctx, &mut out) {
            Ok(_) => {}
            Err(_) if out.over => {
                return Err(LlmError::TemplateOutputTooLong {
                    max: options.max_len,
                });
            }
            Err(e) => return Err(template_error(e)),
        }
        // minijinja writes whole `str`s, so the bytes are UTF-8.
        String::from_utf8(out.bytes).map_err(|_| {
            template_error(Error::new(
                ErrorKind::WriteFailure,
                "the rendered text is not UTF-8",
            ))
        })
    }
}

/// Tokens (names, numbers, strings, operator characters) one `{{ }}` or `{% %}` tag may
/// hold. minijinja's parser bounds nesting (brackets, blocks) but not chains (`1+1+1...`,
/// `x.a.a...`, `- - -1`, `a if b else c if d else ...`), and compiling a chain recurses once
/// per link: a 5,000-link chain (10 kB of template) overflowed a 2 MiB thread stack, which
/// aborts the process. Real templates stay below 60 tokens per tag (the 71 of llama.cpp's
/// `models/templates`); 512 tokens compile on a 2 MiB stack with room to spare
/// (`deep_chains_are_typed_errors_and_those_under_the_limits_compile`).
const MAX_TAG_TOKENS: usize = 512;

/// `{% elif %}` branches one template may have: minijinja nests each in the one before,
/// and 1,000 of them overflowed a 2 MiB stack. Real templates have at most about 20.
const MAX_ELIFS: usize = 256;

/// Refuses, before minijinja parses it, a template whose syntax tree would be deep enough
/// to overflow the stack while it is compiled ([`MAX_TAG_TOKENS`], [`MAX_ELIFS`]). A lexer
/// pass only: tags are found as minijinja finds them (`{{`, `{%`, `{#` up to their closing
/// delimiter, string literals skipped), and a `{% raw %}` block is passed over whole.
fn check_depth(source: &str) -> Result<(), Error> {
    let b = source.as_bytes();
    let mut elifs = 0usize;
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'{', &b[i..]) {
        let start = i + off;
        let close: &[u8] = match b.get(start + 1) {
            Some(b'{') => b"}}",
            Some(b'%') => b"%}",
            Some(b'#') => {
                i = find(b, start + 2, b"#}").map_or(b.len(), |k| k + 2);
                continue;
            }
            _ => {
                i = start + 1;
                continue;
            }
        };
        let (tokens, end) = scan_tag(b, start + 2, close);
        if tokens > MAX_TAG_TOKENS {
            return Err(Error::new(
                ErrorKind::SyntaxError,
                format!(
                    "the tag at byte {start} has more than {MAX_TAG_TOKENS} tokens; \
                     expressions that long could overflow the stack when compiled"
                ),
            ));
        }
        i = end;
        if close == b"%}" {
            // `start + 2` follows the ASCII `{%`: a char boundary.
            match first_word(&source[start + 2..]) {
                "elif" => {
                    elifs += 1;
                    if elifs > MAX_ELIFS {
                        return Err(Error::new(
                            ErrorKind::SyntaxError,
                            format!(
                                "more than {MAX_ELIFS} `elif` branches; \
                                 chains that long could overflow the stack when compiled"
                            ),
                        ));
                    }
                }
                // The block's text is not parsed: skip to the `endraw` tag's end.
                "raw" => {
                    i = find(b, i, b"endraw")
                        .and_then(|k| find(b, k, b"%}"))
                        .map_or(b.len(), |k| k + 2);
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The first index at or after `from` where `needle` starts.
fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(b.get(from..)?, needle).map(|k| from + k)
}

/// Counts the tokens of the tag whose text starts at `from`, up to `close` outside string
/// literals: each run of name or number characters, each string literal, and each other
/// non-space character is one. Returns the count and the index just past the tag (or the
/// end of the text).
fn scan_tag(b: &[u8], from: usize, close: &[u8]) -> (usize, usize) {
    let (mut tokens, mut k, mut in_word) = (0usize, from, false);
    while k < b.len() {
        if b[k..].starts_with(close) {
            return (tokens, k + close.len());
        }
        let c = b[k];
        let word = c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
        if word && !in_word {
            tokens += 1;
        } else if c == b'\'' || c == b'"' {
            tokens += 1;
            // To the closing quote (the loop steps past it), or past the end.
            k = skip_string(b, k).map_or(b.len(), |past| past - 1);
        } else if !word && !c.is_ascii_whitespace() {
            tokens += 1;
        }
        in_word = word;
        k += 1;
    }
    (tokens, b.len())
}

/// The index just past the string literal whose opening quote is at `b[at]` (a backslash
/// escapes the next byte), or none when the literal is not closed in `b`.
fn skip_string(b: &[u8], at: usize) -> Option<usize> {
    let quote = b[at];
    let mut k = at + 1;
    while k < b.len() {
        match b[k] {
            b'\\' => k += 2,
            c if c == quote => return Some(k + 1),
            _ => k += 1,
        }
    }
    None
}

/// The first word of a block tag's text (`elif`, `raw`, ...).
fn first_word(tag: &str) -> &str {
    let word = split_control(tag).1.trim_start();
    let len = word
        .bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
        .count();
    &word[..len]
}

/// A block tag's text split after its whitespace control (`-` or `+`, if any).
fn split_control(tag: &str) -> (&str, &str) {
    match tag.as_bytes().first() {
        Some(b'-' | b'+') => tag.split_at(1),
        _ => ("", tag),
    }
}

/// How many times the prompt's cap (or [`MAX_BUILT_LEN`], when that is larger) one render
/// may print with `{{ }}`, counting the text captured by `{% set %}` blocks, macros and
/// `call` and `filter` blocks, which the prompt's cap does not see until it is printed.
const PRINT_FACTOR: usize = 4;

thread_local! {
    /// Bytes the render on this thread may still print ([`PRINT_FACTOR`]).
    static PRINT_BUDGET: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Sets this thread's print budget for one render; restores the one before when dropped.
struct PrintBudget(usize);

impl PrintBudget {
    fn set(bytes: usize) -> Self {
        Self(PRINT_BUDGET.replace(bytes))
    }
}

impl Drop for PrintBudget {
    fn drop(&mut self) {
        PRINT_BUDGET.set(self.0);
    }
}

/// Takes `n` bytes from the print budget, or fails when it has fewer left: a template that
/// doubles captured text (`{% set t %}{{ s }}{{ s }}{% endset %}` in a loop) stops here.
fn spend_print_budget(n: usize) -> Result<(), Error> {
    let left = PRINT_BUDGET.get();
    if n > left {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "printed text: the render would print more than {PRINT_FACTOR} times the \
                 prompt's cap, counting captured text"
            ),
        ));
    }
    PRINT_BUDGET.set(left - n);
    Ok(())
}

/// The render's output: refuses a write that would take it past `max` bytes.
struct CappedBytes {
    bytes: Vec<u8>,
    max: usize,
    over: bool,
}

impl std::io::Write for CappedBytes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.max - self.bytes.len() {
            self.over = true;
            return Err(std::io::Error::other("rendered prompt too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The error of a filter or function whose result would pass [`MAX_BUILT_LEN`].
fn too_long(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{what}: the result would be longer than {MAX_BUILT_LEN} bytes"),
    )
}

/// A `usize` width from a template (`indent(n)`, `tojson(indent=n)`), refused past
/// [`MAX_BUILT_LEN`] before anything is allocated for it.
fn checked_width(what: &str, v: Value, default: usize) -> Result<usize, Error> {
    let n = usize::try_from(v).unwrap_or(default);
    if n > MAX_BUILT_LEN {
        return Err(too_long(what));
    }
    Ok(n)
}

/// A string the renderer builds (`tojson`, value printing, `strftime_now`): every piece is
/// checked before it is appended, so it never grows past [`MAX_BUILT_LEN`]; past it, the
/// append fails with `what`'s [`too_long`] error (`fmt::Write` with `fmt::Error`).
struct Built {
    out: String,
    what: &'static str,
}

impl Built {
    fn new(what: &'static str) -> Self {
        Self {
            out: String::new(),
            what,
        }
    }

    fn push(&mut self, s: &str) -> Result<(), Error> {
        if s.len() > MAX_BUILT_LEN - self.out.len() {
            return Err(too_long(self.what));
        }
        self.out.push_str(s);
        Ok(())
    }

    fn push_char(&mut self, c: char) -> Result<(), Error> {
        self.push(c.encode_utf8(&mut [0; 4]))
    }

    /// `s` `n` times, refused as a whole before the first copy when it would not fit.
    fn repeat(&mut self, s: &str, n: usize) -> Result<(), Error> {
        if s.len().saturating_mul(n) > MAX_BUILT_LEN - self.out.len() {
            return Err(too_long(self.what));
        }
        for _ in 0..n {
            self.out.push_str(s);
        }
        Ok(())
    }

    /// `s` with each character that `escape` maps to text written as that text instead (or,
    /// mapped to `""`, by `code`); runs of the others are appended whole.
    fn push_escaped(
        &mut self,
        s: &str,
        escape: impl Fn(char) -> Option<&'static str>,
        code: impl Fn(&mut Self, char) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut run = 0;
        for (i, c) in s.char_indices() {
            let Some(text) = escape(c) else { continue };
            self.push(&s[run..i])?;
            run = i + c.len_utf8();
            if text.is_empty() {
                code(self, c)?;
            } else {
                self.push(text)?;
            }
        }
        self.push(&s[run..])
    }

    /// Formatted text, through the same check (`write!` stops at the first refused piece).
    fn write(&mut self, args: std::fmt::Arguments<'_>) -> Result<(), Error> {
        std::fmt::Write::write_fmt(self, args).map_err(|_| too_long(self.what))
    }
}

impl std::fmt::Write for Built {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s).map_err(|_| std::fmt::Error)
    }
}

/// Hugging Face's `{% generation %}...{% endgeneration %}` (its assistant-mask tracker)
/// renders its body unchanged; minijinja has no such tag, so each becomes an `if true`
/// block with the same whitespace control.
fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at + 2..];
        let (left, inner) = split_control(tag);
        let word = inner.trim_start();
        let replaced = [("endgeneration", "endif"), ("generation", "if true")]
            .into_iter()
            .find_map(|(name, with)| {
                let after = word.strip_prefix(name)?;
                let after = after.trim_start();
                let (right, end) = split_control(after);
                let end = end.strip_prefix("%}")?;
                Some((format!("{{%{left} {with} {right}%}}"), end))
            });
        match replaced {
            Some((text, end)) => {
                out.push_str(&text);
                rest = end;
            }
            None => {
                out.push_str("{%");
                rest = tag;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The exact prompt tokens of a conversation for a local GGUF model (features
/// `chat-template` and `gguf-tokens`): the model's chat template rendered, then tokenized
/// by the model's own tokenizer with special tokens parsed (the template writes them as
/// text), plus a BOS when the model adds one and the template did not write it. A
/// [`PromptMeasure`](crate::PromptMeasure) for
/// [`Conversation::fit_measured`](crate::Conversation::fit_measured).
#[cfg(feature = "gguf-tokens")]
#[derive(Debug)]
pub struct TemplateTokens<'a> {
    template: &'a ChatTemplate,
    tokenizer: &'a mm_tokenizer::OwnedTokenizer,
    options: RenderOptions,
}

#[cfg(feature = "gguf-tokens")]
impl<'a> TemplateTokens<'a> {
    /// Measures with `template` and `tokenizer`, rendering with `options`.
    pub fn new(
        template: &'a ChatTemplate,
        tokenizer: &'a mm_tokenizer::OwnedTokenizer,
        options: RenderOptions,
    ) -> Self {
        Self {
            template,
            tokenizer,
            options,
        }
    }

    /// Tokens of an already rendered prompt.
    pub fn count_rendered(&self, text: &str) -> u64 {
        let tok = self.tokenizer.tokenizer();
        let opts = mm_tokenizer::EncodeOptions::new().with_parse_special(true);
        let n = tok.count(text, opts) as u64;
        let vocab = tok.vocab();
        let bos_written = vocab
            .special_ids()
            .bos
            .and_then(|id| tok.piece(id))
            .is_some_and(|piece| !piece.is_empty() && text.as_bytes().starts_with(piece));
        n + u64::from(vocab.add_bos() && !bos_written)
    }
}

#[cfg(feature = "gguf-tokens")]
impl<C: TokenCounter> crate::PromptMeasure<C> for TemplateTokens<'_> {
    fn measure(&mut self, conversation: &Conversation<C>) -> Result<u64, LlmError> {
        let text = self.template.render(conversation, &self.options)?;
        Ok(self.count_rendered(&text))
    }
}

#[cfg(feature = "gguf-tokens")]
impl ChatTemplate {
    /// The model's own template: `tokenizer.chat_template` from the tokenizer's GGUF file,
    /// with its BOS and EOS pieces as `bos_token` and `eos_token`.
    ///
    /// # Errors
    /// [`LlmError::NoChatTemplate`] when the file has none; as [`ChatTemplate::new`].
    pub fn from_tokenizer(tokenizer: &mm_tokenizer::OwnedTokenizer) -> Result<Self, LlmError> {
        let gguf = tokenizer.gguf().gguf();
        let source = gguf
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .ok_or(LlmError::NoChatTemplate)?;
        let tok = tokenizer.tokenizer();
        let piece = |id: Option<mm_tokenizer::TokenId>| {
            id.and_then(|id| tok.piece(id))
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default()
        };
        let ids = tok.vocab().special_ids();
        Self::new(source, &piece(ids.bos), &piece(ids.eos))
    }
}

fn template_error(e: Error) -> LlmError {
    LlmError::Template(Box::new(e))
}

/// Python's `len`, with jinja2's `Undefined` counting as empty (`tools|length` when no
/// tools are passed is 0, not an error).
fn python_len(value: Value) -> Result<Value, Error> {
    if value.is_undefined() {
        return Ok(Value::from(0));
    }
    value.len().map(Value::from).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("object of type {} has no len()", value.kind()),
        )
    })
}

/// jinja2's `indent(width=4, first=False, blank=False)`, trailing newline kept the way
/// jinja2 keeps it (minijinja's drops it).
fn jinja2_indent(s: &str, width: Value, kwargs: Kwargs) -> Result<String, Error> {
    let first: Option<bool> = kwargs.get("first")?;
    let blank: Option<bool> = kwargs.get("blank")?;
    kwargs.assert_all_used()?;
    let indention = match width.as_str() {
        Some(w) => w.to_owned(),
        None => " ".repeat(checked_width("indent", width, 4)?),
    };
    // jinja2 appends a newline before splitting, so a trailing one survives.
    let s = format!("{s}\n");
    let lines = python_splitlines(&s);
    // The text, a newline and an indention per line at most.
    let most = indention
        .len()
        .checked_add(1)
        .and_then(|per_line| per_line.checked_mul(lines.len()))
        .and_then(|n| n.checked_add(s.len()));
    if most.is_none_or(|n| n > MAX_BUILT_LEN) {
        return Err(too_long("indent"));
    }
    let mut rv = String::new();
    if blank.unwrap_or(false) {
        rv = lines.join(&format!("\n{indention}"));
    } else if let Some((head, rest)) = lines.split_first() {
        rv.push_str(head);
        if !rest.is_empty() {
            rv.push('\n');
            let rest: Vec<String> = rest
                .iter()
                .map(|l| {
                    if l.is_empty() {
                        String::new()
                    } else {
                        format!("{indention}{l}")
                    }
                })
                .collect();
            rv.push_str(&rest.join("\n"));
        }
    }
    if first.unwrap_or(false) {
        rv.insert_str(0, &indention);
    }
    Ok(rv)
}

/// Python's `str.splitlines()`.
fn python_splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '\r' => {
                if let Some(&(_, '\n')) = chars.peek() {
                    chars.next();
                    i + 2
                } else {
                    i + 1
                }
            }
            '\n' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => i + c.len_utf8(),
            _ => continue,
        };
        out.push(&s[start..i]);
        start = end;
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// jinja2's `iterable` test: sequences, maps, strings and `Undefined`; not `None` or numbers.
fn python_iterable(value: Value) -> bool {
    matches!(
        value.kind(),
        ValueKind::Seq
            | ValueKind::Map
            | ValueKind::Iterable
            | ValueKind::String
            | ValueKind::Bytes
            | ValueKind::Undefined
    )
}

fn raise_exception(message: &str) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.to_owned()))
}

/// The longest `strftime_now` format accepted (real templates pass a few bytes, such as
/// `"%d %b %Y"`): checking and formatting a format costs time in proportion to its length.
const MAX_STRFTIME_FORMAT: usize = 4096;

fn strftime_now(format: &str, fixed: Option<i64>) -> Result<String, Error> {
    use chrono::format::{Item, StrftimeItems};
    if format.len() > MAX_STRFTIME_FORMAT {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: the format is longer than {MAX_STRFTIME_FORMAT} bytes"),
        ));
    }
    if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: unsupported format {format:?}"),
        ));
    }
    let mut out = Built::new("strftime_now");
    match fixed {
        Some(secs) => {
            let t = chrono::DateTime::from_timestamp(secs, 0).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "strftime_now: time out of range",
                )
            })?;
            // The format was checked above, so a failed write is the length cap.
            out.write(format_args!("{}", t.naive_utc().format(format)))?;
        }
        None => out.write(format_args!("{}", chrono::Local::now().format(format)))?,
    }
    Ok(out.out)
}

/// Python's `json.dumps` (what Hugging Face's `tojson` calls): `ensure_ascii`, `indent`,
/// `separators`, `sort_keys`.
fn tojson(_state: &State<'_, '_>, value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_owned()),
            None => Some(" ".repeat(checked_width("tojson", v, 0)?)),
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() => {
            let a = v.get_item_by_index(0)?;
            let b = v.get_item_by_index(1)?;
            (
                a.as_str().unwrap_or(",").to_owned(),
                b.as_str().unwrap_or(":").to_owned(),
            )
        }
        _ if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        _ => (", ".to_owned(), ": ".to_owned()),
    };
    let mut w = JsonDump {
        out: Built::new("tojson"),
        ensure_ascii: ensure_ascii.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    w.value(&value, 0)?;
    Ok(Value::from(w.out.out))
}

struct JsonDump {
    out: Built,
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonDump {
    fn newline(&mut self, level: usize) -> Result<(), Error> {
        if let Some(ind) = &self.indent {
            self.out.push_char('\n')?;
            self.out.repeat(ind, level)?;
        }
        Ok(())
    }

    fn value(&mut self, v: &Value, level: usize) -> Result<(), Error> {
        match v.kind() {
            ValueKind::Undefined | ValueKind::None => self.out.push("null"),
            ValueKind::Bool => self.out.push(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number => self.out.push(&python_number(v)),
            ValueKind::String | ValueKind::Bytes => match v.as_str() {
                Some(text) => self.string(text),
                None => self.string(&v.to_string()),
            },
            // Iterated, not collected: a lazy `[x] * n` stops at the cap.
            ValueKind::Seq | ValueKind::Iterable => {
                self.container('[', ']', v.try_iter()?, level, |w, item, level| {
                    w.value(&item, level)
                })
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = v.try_iter()?.collect();
                if self.sort_keys {
                    keys.sort_by_key(|k| k.to_string());
                }
                self.container('{', '}', keys.into_iter(), level, |w, k, level| {
                    match k.as_str() {
                        Some(text) => w.string(text)?,
                        None => w.string(&python_str(&k)?)?,
                    }
                    w.out.push(&w.key_sep)?;
                    w.value(&v.get_item(&k)?, level)
                })
            }
            _ => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialise a {}", v.kind()),
            )),
        }
    }

    fn container(
        &mut self,
        open: char,
        close: char,
        items: impl Iterator<Item = Value>,
        level: usize,
        mut each: impl FnMut(&mut Self, Value, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.out.push_char(open)?;
        let mut empty = true;
        for item in items {
            if !empty {
                self.out.push(&self.item_sep)?;
            }
            empty = false;
            self.newline(level + 1)?;
            each(self, item, level + 1)?;
        }
        if !empty {
            self.newline(level)?;
        }
        self.out.push_char(close)
    }

    fn string(&mut self, s: &str) -> Result<(), Error> {
        self.out.push_char('"')?;
        let ensure_ascii = self.ensure_ascii;
        self.out.push_escaped(
            s,
            |c| match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                '\u{8}' => Some("\\b"),
                '\u{c}' => Some("\\f"),
                c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => Some(""),
                _ => None,
            },
            |out, c| {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.write(format_args!("\\u{unit:04x}"))?;
                }
                Ok(())
            },
        )?;
        self.out.push_char('"')
    }
}

/// A number as Python's `repr` writes it (`1.0`, `1e+16`, `-3`).
fn python_number(v: &Value) -> String {
    if v.is_integer() {
        return v.to_string();
    }
    let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Python switches to exponent notation outside [1e-4, 1e16).
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    format!("{f:?}")
}

/// A value as Python's `str()` prints it: `None`, `True`/`False`, lists and dicts in their
/// `repr` (`['a', 1]`, `{'k': None}`).
///
/// # Errors
/// When a list or dict would print past [`MAX_BUILT_LEN`] bytes.
fn python_str(v: &Value) -> Result<String, Error> {
    Ok(match v.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => v.as_str().unwrap_or_default().to_owned(),
        _ => {
            let mut out = Built::new("printing a value");
            python_repr(v, &mut out)?;
            out.out
        }
    })
}

/// Appends `v`'s Python `repr` to `out`, which refuses any piece past [`MAX_BUILT_LEN`]
/// (lazy sequences, such as `[x] * n`, are iterated, so they stop there).
fn python_repr(v: &Value, out: &mut Built) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push("None"),
        ValueKind::Bool => out.push(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push(&python_number(v)),
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default();
            // Python quotes with ' unless the text has ' and no ".
            let q = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            out.push_char(q)?;
            out.push_escaped(
                s,
                |c| match c {
                    '\\' => Some("\\\\"),
                    '\n' => Some("\\n"),
                    '\r' => Some("\\r"),
                    '\t' => Some("\\t"),
                    '\'' if q == '\'' => Some("\\'"),
                    '"' if q == '"' => Some("\\\""),
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => Some(""),
                    _ => None,
                },
                |out, c| out.write(format_args!("\\x{:02x}", c as u32)),
            )?;
            out.push_char(q)
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push_char('[')?;
            if let Ok(items) = v.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push(", ")?;
                    }
                    python_repr(&item, out)?;
                }
            }
            out.push_char(']')
        }
        ValueKind::Map => {
            out.push_char('{')?;
            if let Ok(keys) = v.try_iter() {
                for (i, k) in keys.enumerate() {
                    if i > 0 {
                        out.push(", ")?;
                    }
                    python_repr(&k, out)?;
                    out.push(": ")?;
                    python_repr(&v.get_item(&k).unwrap_or_default(), out)?;
                }
            }
            out.push_char('}')
        }
        _ => out.write(format_args!("{v}")),
    }
}

impl<C: TokenCounter> Conversation<C> {
    /// The prompt as the `messages` a chat template iterates.
    fn template_messages(&self) -> Value {
        let mut messages = Vec::new();
        let msg = |role: &str, content: Value| {
            Value::from_iter([("role", Value::from(role)), ("content", content)])
        };
        self.for_each_part(|part| match part {
            Part::System(text) => messages.push(msg("system", Value::from(text))),
            Part::Text { role, text } => messages.push(msg(role.as_str(), Value::from(text))),
            Part::Calls(group) => {
                let calls: Vec<Value> = group
                    .calls()
                    .map(|call| {
                        let args = serde_json::from_str::<serde_json::Value>(call.arguments)
                            .map_or_else(
                                |_| Value::from(call.arguments),
                                |j| Value::from_serialize(&j),
                            );
                        Value::from_iter([
                            ("id", Value::from(call.id)),
                            ("type", Value::from("function")),
                            (
                                "function",
                                Value::from_iter([
                                    ("name", Value::from(call.tool)),
                                    ("arguments", args),
                                ]),
                            ),
                        ])
                    })
                    .collect();
                messages.push(Value::from_iter([
                    ("role", Value::from("assistant")),
                    ("content", Value::from(())),
                    ("tool_calls", Value::from(calls)),
                ]));
            }
            Part::Result {
                call_id, content, ..
            } => messages.push(Value::from_iter([
                ("role", Value::from("tool")),
                ("tool_call_id", Value::from(call_id)),
                ("content", Value::from(content)),
            ])),
        });
        Value::from(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `src` rendered by plain minijinja with `pycompat` (no caps, no rewrite), the
    /// reference the capped operators and builtins are compared with.
    fn plain(src: &str) -> Result<String, ErrorKind> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_template("t", src).unwrap();
        env.get_template("t")
            .unwrap()
            .render(())
            .map_err(|e| e.kind())
    }

    fn render(src: &str, messages: serde_json::Value) -> Result<String, LlmError> {
        ChatTemplate::new(src, "<s>", "</s>")?.render_serialized(
            &messages,
            &RenderOptions::new().with_fixed_time(Some(1_721_952_000)),
        )
    }

    #[test]
    fn tojson_writes_what_json_dumps_writes() {
        let m = serde_json::json!([{"a": [1, 2.5, "é\n"], "b": null, "c": true, "d": {}}]);
        let nums = serde_json::json!([[1.0, -3, 1e16, 0.00001, 123456789012i64]]);
        assert_eq!(
            render("{{ messages[0] | tojson }}", nums).unwrap(),
            "[1.0, -3, 1e+16, 1e-05, 123456789012]"
        );
        let out = render("{{ messages[0] | tojson }}", m.clone()).unwrap();
        assert_eq!(
            out,
            r#"{"a": [1, 2.5, "é\n"], "b": null, "c": true, "d": {}}"#
        );
        let out = render("{{ messages[0].a | tojson(indent=2) }}", m.clone()).unwrap();
        assert_eq!(out, "[\n  1,\n  2.5,\n  \"é\\n\"\n]");
        let out = render(
            "{{ messages[0] | tojson(separators=(',', ':'), sort_keys=true, ensure_ascii=true) }}",
            m,
        )
        .unwrap();
        assert_eq!(out, r#"{"a":[1,2.5,"\u00e9\n"],"b":null,"c":true,"d":{}}"#);
    }

    #[test]
    fn values_print_as_python_prints_them() {
        let m = serde_json::json!([{"role": "user", "content": null, "x": [1, "a'b", true]}]);
        let out = render(
            "{{ messages[0].content }}|{{ messages[0].x }}|{{ true }}",
            m,
        )
        .unwrap();
        assert_eq!(out, r#"None|[1, "a'b", True]|True"#);
    }

    #[test]
    fn globals_and_python_methods() {
        let m = serde_json::json!([{"role": "user", "content": "  Hi  "}]);
        let out = render(
            "{{ bos_token }}{{ messages[0].content.strip().upper() }}{{ strftime_now('%d %b %Y') }}{{ eos_token }}",
            m.clone(),
        )
        .unwrap();
        assert_eq!(out, "<s>HI26 Jul 2024</s>");
        let err = render("{{ raise_exception('roles must alternate') }}", m.clone()).unwrap_err();
        assert!(err.to_string().contains("roles must alternate"), "{err}");
        let err = render("{{ strftime_now('%Q') }}", m.clone()).unwrap_err();
        assert!(err.to_string().contains("unsupported format"), "{err}");
        let loops =
            "{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}";
        assert_eq!(render(loops, m).unwrap(), "012");
    }

    #[test]
    fn trim_and_lstrip_blocks_as_hugging_face_sets_them() {
        let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}";
        let m =
            serde_json::json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]);
        assert_eq!(render(src, m).unwrap(), "[a]\n[b]\n");
    }

    #[test]
    fn indent_keeps_the_trailing_newline_as_jinja2_does() {
        let m = serde_json::json!([]);
        let out = render("[{{ '{\\n' | indent(4, first=true) }}][{{ 'a\\n\\nb' | indent(2) }}][{{ 'a\\n\\nb' | indent('>', blank=true) }}]", m).unwrap();
        // What jinja2 3.1 prints for the same template.
        assert_eq!(out, "[    {\n][a\n\n  b][a\n>\n>b]");
        assert_eq!(
            python_splitlines("a\r\nb\rc\u{2028}d\n"),
            ["a", "b", "c", "d"]
        );
    }

    #[test]
    fn generation_blocks_render_their_body() {
        let src = "{%- for m in messages %}{% generation -%}\n [{{ m.content }}]{%- endgeneration %}{% endfor %}";
        let m = serde_json::json!([{"role": "user", "content": "a"}]);
        assert_eq!(render(src, m).unwrap(), "[a]");
        assert_eq!(
            rewrite_generation_tags("{% if x %}{%generations%}"),
            "{% if x %}{%generations%}"
        );
    }

    #[test]
    fn bad_templates_are_typed_errors() {
        assert!(matches!(
            ChatTemplate::new("{% for %}", "", ""),
            Err(LlmError::Template(_))
        ));
        // Runaway loops run out of fuel instead of hanging.
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            serde_json::json!([]),
        )
        .unwrap_err();
        assert!(matches!(err, LlmError::Template(_)));
    }

    /// Each of these asked the allocator for terabytes (the process aborts when it cannot
    /// have them) before the caps; now each is a typed error, and each message names its
    /// cap.
    #[test]
    fn hostile_sizes_are_typed_errors_before_anything_is_allocated() {
        let one = serde_json::json!([{"role": "user", "content": "a\nb"}]);
        for src in [
            "{{ messages[0].content | indent(1000000000000) }}",
            "{{ messages[0].content | indent(20000000) }}",
            "{{ messages | tojson(indent=1000000000000) }}",
            // Lazy repetition (100 GB, under the operator's item cap): iterated until the
            // byte cap, never collected (items of 100 kB, so that the cap comes after about
            // 170 of them).
            "{{ ['x' * 100000] * 1000000 }}",
            "{{ (['x' * 100000] * 1000000) | tojson }}",
            "{{ {'k': ['x' * 100000] * 1000000} | tojson(indent=1) }}",
            "{{ strftime_now('%c' * 1000000) }}",
        ] {
            match render(src, one.clone()) {
                Err(LlmError::Template(e)) => {
                    let cap = if src.contains("strftime_now") {
                        MAX_STRFTIME_FORMAT
                    } else {
                        MAX_BUILT_LEN
                    };
                    assert!(
                        e.to_string().contains(&format!("longer than {cap} bytes")),
                        "{src}: {e}"
                    );
                }
                other => panic!("{src}: {other:?}"),
            }
        }
        // Under the caps the same filters still work.
        assert_eq!(
            render("{{ messages[0].content | indent(3) }}", one.clone()).unwrap(),
            "a\n   b"
        );
        assert_eq!(render("{{ ['x'] * 3 }}", one).unwrap(), "['x', 'x', 'x']");
    }

    #[test]
    fn operators_refuse_results_past_the_caps() {
        let none = serde_json::json!([]);
        let items = format!("more than {} items", ops::MAX_ITEMS);
        let bytes = format!("longer than {MAX_BUILT_LEN} bytes");
        for (src, want) in [
            // Doubling at each step: a terabyte after 40 steps.
            (
                "{% set ns = namespace(s='ab') %}{% for i in range(100) %}\
                 {% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                &bytes,
            ),
            (
                "{% set ns = namespace(s='ab') %}{% for i in range(100) %}\
                 {% set ns.s = ns.s + ns.s %}{% endfor %}",
                &bytes,
            ),
            (
                "{% set ns = namespace(l=[1]) %}{% for i in range(100) %}\
                 {% set ns.l = ns.l + ns.l %}{% endfor %}",
                &items,
            ),
            ("{{ 'ab' * 10000000 }}", &bytes),
            ("{{ 10000000 * 'ab' * 1 }}", &bytes),
            ("{{ 'a' ~ ('b' * 9000000) ~ ('c' * 9000000) }}", &bytes),
            ("{{ (['x' * 100000] * 1000000) ~ '' }}", &bytes),
            // A lazily repeated list: `last` collected it (a terabyte), `in` scanned it for
            // hours, and a length past `usize` panicked inside minijinja.
            ("{{ ([1] * 10**12) | last }}", &items),
            ("{{ 2 in [1] * 10**12 }}", &items),
            ("{{ ([1, 2] * 2**63) | length }}", &items),
            ("{{ (([1] * 1024) * 1024 * 2) | length }}", &items),
        ] {
            match render(src, none.clone()) {
                Err(LlmError::Template(e)) => assert!(e.to_string().contains(want), "{src}: {e}"),
                other => panic!("{src}: {other:?}"),
            }
        }
        // Under the caps they compute what minijinja's own operators compute.
        for src in [
            "{{ 'a' ~ 1 ~ none ~ [1, 'b'] ~ {'k': 2} ~ 1.5 }}",
            "{{ 1 + 2 }} {{ 1.5 + 2 }} {{ 'a' + 'b' }} {{ [1] + [2, 3] }} {{ 2**62 + 2**62 }}",
            "{{ 3 * 4 }} {{ 'ab' * 3 }} {{ 3 * 'ab' }} {{ [1, 2] * 2 }} {{ 1.5 * 2 }}",
            "{{ (1 + 2) * 3 ~ 'x' }} {{ -2 * 3 if true else 0 ~ 1 }} {{ (1, 2) * 2 }}",
            "{% set a, b = 1 + 1, 'x' ~ 'y' %}{{ a }}{{ b }}{{ [a * 3] }}{{ ((a + 1)) }}",
            "{% macro m(a=1 + 2) %}{{ a * 2 }}{% endmacro %}{{ m() }}{{ m(4) ~ m(5) }}",
            "{{ 'x' ~ range(3) | join('+' ~ '-') ~ ('(' ~ ')' ~ \"'\") }}",
            "{{ 1\n  +\n  2 }}",
        ] {
            let ours = render(src, none.clone()).map_err(|e| e.to_string());
            assert_eq!(
                ours.as_deref().ok(),
                plain(src).as_deref().ok(),
                "{src}: {ours:?}"
            );
        }
        // Errors stay errors.
        for src in [
            "{{ 'a' + 1 }}",
            "{{ 'a' * 'b' }}",
            "{{ [1] + 'a' }}",
            "{{ 2**64 * 2**64 }}",
        ] {
            assert!(plain(src).is_err(), "{src}");
            assert!(render(src, none.clone()).is_err(), "{src}");
        }
        // The functions' names cannot be taken over.
        assert!(ChatTemplate::new("{% set __mm_add = 1 %}", "", "").is_err());
    }

    /// The builtins that build more than they take (minijinja's `batch`, `slice`, `list`,
    /// `chain`, `replace`, `join`, `format`, `string`, `pprint`, `escape`, the case filters,
    /// and `pycompat`'s `str.replace`, `str.join`, `str.format`) refuse a result past the
    /// caps before building it, where before they reserved a terabyte (`batch(10**12)`
    /// aborted the process) or built 100 GB; `"abc".count("")` looped forever.
    #[test]
    fn builtins_that_multiply_refuse_results_past_the_caps() {
        let none = serde_json::json!([]);
        let items = format!("more than {} items", ops::MAX_ITEMS);
        let bytes = format!("longer than {MAX_BUILT_LEN} bytes");
        // 1,000,000 references to one 100 kB string: 100 GB printed.
        let big = "(['x' * 100000] * 1000000)";
        for (src, what, want) in [
            (
                "{{ [1, 2, 3] | batch(10**12) }}".to_owned(),
                "batch",
                &items,
            ),
            (
                "{{ [1, 2, 3] | slice(10**12, 0) }}".to_owned(),
                "slice",
                &items,
            ),
            (
                "{{ ('x' * 2000000) | list | length }}".to_owned(),
                "list",
                &items,
            ),
            (
                "{{ ([1] * 1000000) | chain([2] * 1000000) | length }}".to_owned(),
                "chain",
                &items,
            ),
            (
                "{{ ('x' * 100000) | replace('x', 'y' * 1000) }}".to_owned(),
                "replace",
                &bytes,
            ),
            (
                "{{ ('x' * 1000) | replace('', 'y' * 100000) }}".to_owned(),
                "replace",
                &bytes,
            ),
            (
                "{{ ('x' * 1000).replace('', 'y' * 100000) }}".to_owned(),
                "str.replace",
                &bytes,
            ),
            (format!("{{{{ {big} | join(',') }}}}"), "join", &bytes),
            (format!("{{{{ ','.join({big}) }}}}"), "str.join", &bytes),
            (
                "{{ '%1000000000s' | format('a') }}".to_owned(),
                "format",
                &bytes,
            ),
            (
                "{{ '%.1000000000f' | format(1.5) }}".to_owned(),
                "format",
                &bytes,
            ),
            (
                "{{ '{:>1000000000}'.format('a') }}".to_owned(),
                "str.format",
                &bytes,
            ),
            (
                "{{ '{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}'.format('x' * 1000000) }}"
                    .to_owned(),
                "str.format",
                &bytes,
            ),
            (format!("{{{{ {big} | string }}}}"), "string", &bytes),
            (format!("{{{{ {big} | pprint }}}}"), "pprint", &bytes),
            (format!("{{{{ {big} | e }}}}"), "escape", &bytes),
            (format!("{{{{ {big} | upper }}}}"), "upper", &bytes),
            (format!("{{{{ {big} | trim }}}}"), "trim", &bytes),
            (
                format!("{{{{ {big} | replace('a', 'b') }}}}"),
                "replace",
                &bytes,
            ),
            // Tripled by the case change: 10 MB in, 30 MB out.
            (
                "{{ ('\u{390}' * 5000000) | upper }}".to_owned(),
                "upper",
                &bytes,
            ),
            (
                "{{ ('\u{390}' * 5000000).upper() }}".to_owned(),
                "upper",
                &bytes,
            ),
            // 2,000,001 pieces of a 4 MB string.
            (
                "{{ ('a ' * 2000000) | split | length }}".to_owned(),
                "split",
                &items,
            ),
            (
                "{{ ('a,' * 2000000) | split(',') | length }}".to_owned(),
                "split",
                &items,
            ),
            (
                "{{ ('a' * 2000000) | split('') | length }}".to_owned(),
                "split",
                &items,
            ),
            (
                "{{ ('a,' * 2000000).split(',') | length }}".to_owned(),
                "str.split",
                &items,
            ),
            (
                "{{ ('a\n' * 2000000) | lines | length }}".to_owned(),
                "lines",
                &items,
            ),
            (
                "{{ ('a\n' * 2000000).splitlines() | length }}".to_owned(),
                "str.splitlines",
                &items,
            ),
        ] {
            match render(&src, none.clone()) {
                Err(LlmError::Template(e)) => {
                    let e = e.to_string();
                    assert!(e.contains(want) && e.contains(what), "{src}: {e}");
                }
                other => panic!("{src}: {other:?}"),
            }
        }
        // Under the caps they return what minijinja's and pycompat's own return.
        for src in [
            "{{ 'a-b-c' | replace('-', '+') }} {{ 'abc' | replace('', '.') }} {{ 3 | replace('3', 'x') }}",
            "{{ 'a-b-c'.replace('-', '+', 1) }} {{ 'abc'.replace('', '.') }} {{ 'a'.replace('a', 'b', -1) }}",
            "{{ [1, 'a', none, [2]] | join(', ') }} {{ 'abc' | join }} {{ {'k': 1, 'j': 2} | join('+') }}",
            "{{ ', '.join(['a', 'b', 3]) }} {{ ''.join('xyz') }}",
            "{{ '%5s|%-3d|%.2f|%x' | format('a', 7, 1.5, 255) }}",
            "{{ '%(k)s=%(k)s' | format({'k': 'v'}) }} {{ '%%' | format() }}",
            "{{ 'limit 1000000000000: %s' | format(1) }} {{ 'in 2000000000 {}'.format(2) }}",
            "{{ '{:>5}|{}|{name}|{:,}|{:08.3f}'.format('a', 2, 1234567, 3.14159, name='n') }} {{ '{0}{1}{0}'.format('a', 'b') }}",
            "{{ [1, 2] | string }} {{ 3 | string }} {{ {'a': [1]} | pprint }} {{ none | string }}",
            "{{ '<a href=\"x\">&' | e }} {{ '<a>' | escape }} {{ [1, '<'] | e }}",
            "{{ 'ab cd' | upper }} {{ 'AB' | lower }} {{ 'ab cd' | title }} {{ 'ab CD' | capitalize }}",
            "{{ 3 | upper }} {{ true | lower }} {{ '  x ' | trim }} {{ 'xxaxx' | trim('x') }}",
            "{{ [1] | safe }} {{ 'ab' is startingwith 'a' }} {{ 12 is endingwith 2 }} {{ 'ab' is endingwith 'a' }}",
            "{{ ([1, 2, 3, 4, 5] | batch(2, 0) | list) ~ '' }} {{ ([1, 2, 3] | slice(2)) ~ '' }}",
            "{{ ('abc' | list) ~ '' }} {{ ([1] | chain([2, 3])) ~ '' }} {{ ({'a': 1} | chain({'b': 2})) ~ '' }}",
            "{{ 'abcb'.count('b') }} {{ 'ab ab'.upper() }} {{ 'ab'.title() }} {{ 'AB'.lower() }} {{ 'aB'.capitalize() }}",
            "{{ ' a  b ' | split | join('|') }} {{ 'a,b,,c' | split(',') | join('|') }} {{ 'a,b,c' | split(',', 1) | join('|') }} {{ 'ab' | split('') | join('|') }} {{ 'a b c' | split(none, 1) | join('|') }}",
            "{{ 'a\nb\r\n\nc' | lines | join('|') }} {{ 'a,b'.split(',') | join('|') }} {{ ' a b '.split() | join('|') }} {{ 'a b c'.split(' ', 1) | join('|') }} {{ 'a\nb\n'.splitlines() | join('|') }} {{ 'a\nb'.splitlines(true) | join('|') }}",
            "{{ (('a,' * 999999) | split(',') | length) }} {{ (('a ' * 999999).split() | length) }} {{ (('a,' * 3000000) | split(',', 5) | length) }}",
        ] {
            let ours = render(src, none.clone()).map_err(|e| e.to_string());
            assert_eq!(
                ours.as_deref().ok(),
                plain(src).as_deref().ok(),
                "{src}: {ours:?}"
            );
            assert!(ours.is_ok(), "{src}: {ours:?}");
        }
        // Python counts the empty string at every position.
        assert_eq!(render("{{ 'abc'.count('') }}", none.clone()).unwrap(), "4");
        // Errors stay errors.
        for src in [
            "{{ 1 | join(',') }}",
            "{{ [1] | batch(0) }}",
            "{{ [1] | slice(0) }}",
            "{{ 1 | list }}",
            "{{ '%s %s' | format('a') }}",
            "{{ '{1}'.format('a') }}",
        ] {
            assert!(plain(src).is_err(), "{src}");
            assert!(render(src, none.clone()).is_err(), "{src}");
        }
    }

    /// Text captured by `{% set %}` blocks and macros counts against the print budget:
    /// doubling it at every step of a loop (a terabyte after 40 steps) is an error.
    #[test]
    fn captured_text_is_counted_before_it_is_printed() {
        let none = serde_json::json!([]);
        for src in [
            "{% set ns = namespace(s='ab') %}{% for i in range(100) %}\
             {% set t %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = t %}{% endfor %}",
            "{% macro twice(s) %}{{ s }}{{ s }}{% endmacro %}{% set ns = namespace(s='ab') %}\
             {% for i in range(100) %}{% set ns.s = twice(ns.s) %}{% endfor %}",
            "{% set ns = namespace(s='ab') %}{% for i in range(100) %}\
             {% set t %}{% filter upper %}{{ ns.s }}{{ ns.s }}{% endfilter %}{% endset %}\
             {% set ns.s = t %}{% endfor %}",
        ] {
            match render(src, none.clone()) {
                Err(LlmError::Template(e)) => {
                    assert!(e.to_string().contains("printed text"), "{src}: {e}")
                }
                other => panic!("{src}: {other:?}"),
            }
        }
        // A few doublings stay under it, and the budget is the render's own: the next
        // render on the thread starts with a full one.
        let src = "{% set ns = namespace(s='ab') %}{% for i in range(3) %}\
                   {% set t %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = t %}{% endfor %}\
                   {{ ns.s | length }}";
        for _ in 0..3 {
            assert_eq!(render(src, none.clone()).unwrap(), "16");
        }
        // The prompt's own cap still comes first for text printed at the top.
        let long = "{% for i in range(100) %}{{ 'x' * 1000000 }}{% endfor %}";
        assert!(matches!(
            render(long, none),
            Err(LlmError::TemplateOutputTooLong { .. })
        ));
    }

    /// `[[...x...]]`: `x` inside `n` brackets.
    fn nest(x: &str, n: usize) -> String {
        format!("{}{x}{}", "[".repeat(n), "]".repeat(n))
    }

    /// Every value a template keeps is checked: a namespace that would hold itself, a value
    /// nested past `MAX_DEPTH` (through namespaces, straight-line `set`s, recursive loops
    /// and macro arguments), one whose shared parts make it larger than `MAX_VISITS`, and
    /// a render whose checks walk too much are typed errors. With plain minijinja the
    /// first ones abort the process (a stack overflow while printing or dropping the value).
    /// Under the caps the templates render as plain minijinja renders them, on a 2 MiB
    /// thread with the deepest value the checks let through, nested further inside one
    /// tag, printed, serialised, sorted and hashed at the bottom of a macro recursion.
    #[test]
    fn kept_values_are_checked_for_cycles_depth_and_size() {
        let none = serde_json::json!([]);
        let refused = |src: &str, what: &str| match render(src, none.clone()) {
            Err(LlmError::Template(e)) => {
                assert!(e.to_string().contains(what), "{src}: {e}")
            }
            other => panic!("{src}: {other:?}"),
        };
        for src in [
            "{% set ns = namespace(a=1) %}{% set x = [ns] %}{% set ns.b = x %}{{ x }}",
            "{% set ns = namespace(a=1) %}{% set ns.b = {'k': [1, ns]} %}",
            "{% set ns = namespace(b=namespace(c=1)) %}{% set ns.b.c = [ns] %}{{ ns }}",
            "{% set ns = namespace(a=1) %}{% set x, ns.b = 1, [ns] %}{{ ns }}",
            "{% set a = namespace(x=1) %}{% set b = namespace(y=a) %}{% set a.x = [b] %}",
            "{% set ns = namespace(a=1) %}{% set ns.a = ns %}",
        ] {
            refused(src, "cycle");
        }
        let straight: String = (0..5)
            .map(|i| format!("{{% set x{} = {} %}}", i + 1, nest(&format!("x{i}"), 60)))
            .collect();
        for src in [
            "{% set ns = namespace(l=[]) %}{% for i in range(300) %}{% set ns.l = [ns.l] %}             {% endfor %}done"
                .to_owned(),
            format!("{{% set x0 = 0 %}}{straight}done"),
            format!(
                "{{% for x in [0] recursive %}}{{% if loop.depth < 60 %}}{{{{ loop([{}]) }}}}                 {{% endif %}}{{% endfor %}}",
                nest("x", 30)
            ),
            format!(
                "{{% macro m(x, d) %}}{{% if d < 60 %}}{{{{ m({}, d + 1) }}}}{{% endif %}}                 {{% endmacro %}}{{{{ m(0, 0) }}}}",
                nest("x", 30)
            ),
            format!(
                "{{% with y0 = 0 %}}{}{}{{% endwith %}}",
                (0..5)
                    .map(|i| format!("{{% with y{} = {} %}}", i + 1, nest(&format!("y{i}"), 60)))
                    .collect::<String>(),
                "{% endwith %}".repeat(5)
            ),
        ] {
            refused(&src, "nested more than 256 levels");
        }
        refused(
            "{% set ns = namespace(l=[]) %}{% for i in range(40) %}{% set ns.l = [ns.l, ns.l] %}\
             {% endfor %}{{ ns.l == [ns.l[0], ns.l[1]] }}",
            "larger than",
        );
        refused(
            "{% set big = [0] * 1000000 %}{% for i in range(17) %}{% set x = big %}{% endfor %}",
            "the render's checks",
        );
        // The caller's messages are checked too.
        let mut deep = serde_json::json!("x");
        for _ in 0..300 {
            deep = serde_json::json!([deep]);
        }
        match render("{{ messages | length }}", serde_json::json!([deep])) {
            Err(LlmError::Template(e)) => assert!(e.to_string().contains("nested"), "{e}"),
            other => panic!("{other:?}"),
        }

        // Under the caps: as plain minijinja renders them.
        let deepest: String = (0..4)
            .map(|i| format!("{{% set x{} = {} %}}", i + 1, nest(&format!("x{i}"), 63)))
            .collect();
        let bottom = nest("x", 70);
        let ok = [
            format!(
                "{{% set x0 = 0 %}}{deepest}{{% macro m(x, d) %}}{{% if d < 80 %}}                 {{{{ m(x, d + 1) }}}}{{% else %}}{{{{ {bottom} | tojson | length }}}}                  {{{{ {bottom} | string | length }}}} {{{{ [{bottom}, 1] | sort | length }}}}                  {{{{ {{{bottom}: 1}} | length }}}} {{{{ {bottom} == [{bottom}] }}}}                 {{% endif %}}{{% endmacro %}}{{{{ m(x4, 0) }}}}"
            ),
            "{% set a = namespace(x=1) %}{% set b = namespace(y=a) %}{% set b.z = [a, a] %}             {% set a.x = b.y.x + 1 %}{{ b.z[1].x }} {{ a.x }}"
                .to_owned(),
            "{% set ns = namespace(l=[]) %}{% for i in range(20) %}{% set ns.l = ns.l + [[i]] %}             {% endfor %}{{ ns.l | length }} {{ ns.l[3] }}"
                .to_owned(),
            "{% set ns = namespace(l=[]) %}{% for i in range(250) %}{% set ns.l = [ns.l] %}             {% endfor %}{{ ns.l | tojson | length }}"
                .to_owned(),
            "{% set t = (1, [2]) %}{% set a, b = t %}{{ a }}{{ b }}{% set c = 1, 2 %}{{ c }}"
                .to_owned(),
        ];
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                for src in &ok {
                    let ours = render(src, serde_json::json!([])).unwrap();
                    assert_eq!(Ok(ours), plain(src), "{src}");
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// Comparisons, sorts and deduplications charge their work to the render's budget (a
    /// value reached, or 64 bytes of a string): a list that holds one 100 kB string a
    /// million times is small to keep, but `unique` over it took 10 s and `sort` minutes.
    /// Under the budget each gives what plain minijinja gives.
    #[test]
    fn comparisons_are_charged_to_the_render_budget() {
        let none = serde_json::json!([]);
        // 300,000 references to a 100 kB string each: 30 GB to compare.
        let keep = "{% set a = ['x' * 100000] * 300000 %}{% set b = ['x' * 100000] * 300000 %}";
        for (src, what) in [
            ("{{ a | unique | length }}", "unique"),
            ("{{ a | sort | length }}", "sort"),
            ("{{ a | dictsort | length }}", "dictsort"),
            ("{{ a | max }}", "max"),
            ("{{ a == b }}", "=="),
            ("{{ a != b }}", "!="),
            ("{{ a < b }}", "<"),
            ("{{ 0 < a < b }}", "<"),
            ("{{ b[0] in a }}", "in"),
            ("{{ b[0] not in a }}", "not in"),
            ("{{ a is eq(b) }}", "eq"),
            ("{{ a is equalto(b) }}", "equalto"),
            ("{{ b[0] is in(a) }}", "in"),
            ("{{ a.count(b[0]) }}", "count"),
            ("{{ a.index(b[0]) }}", "index"),
            ("{{ {a: 1} | length }}", "a key"),
            ("{% set d = {} %}{{ d[a] }}", "a key"),
            (
                "{% for i in range(2) %}{{ loop.changed(a) }}{% endfor %}",
                "a key",
            ),
        ] {
            let src = format!("{keep}{src}");
            match render(&src, none.clone()) {
                Err(LlmError::Template(e)) => {
                    let e = e.to_string();
                    assert!(
                        e.contains(what) && e.contains("would pass the render's budget"),
                        "{src}: {e}"
                    );
                }
                other => panic!("{src}: {other:?}"),
            }
        }
        for src in [
            "{{ [3, 1, 2] | sort | join }} {{ ['b', 'A', 'a'] | sort(case_sensitive=true) | join }} {{ [1, 1, 2] | unique | join }}",
            "{{ {'b': 1, 'a': 2} | dictsort | join }} {{ [3, 1] | min }} {{ [3, 1] | max }} {{ [{'k': 1}, {'k': 1}] | groupby('k') | length }}",
            "{% set x = [1, 2] %}{% set y = [1, 2] %}{{ x == y }} {{ x != y }} {{ x < [1, 3] }} {{ x in [x] }} {{ 3 not in x }} {{ 0 < x[0] < 2 }}",
            "{{ [1, 2] is eq([1, 2]) }} {{ 2 is in([1, 2]) }} {{ [[1], [2]] | selectattr('0', 'equalto', 1) | list | length }}",
            "{% set k = 'k' %}{% set d = {k: 1, 'j': [k]} %}{{ d[k] }} {{ d['j'][0] }} {{ [5, 6][d[k]] }}{% for i in [1, 1, 2] %}{{ loop.changed(i) }}{% endfor %}",
        ] {
            let ours = render(src, none.clone()).map_err(|e| e.to_string());
            assert!(ours.is_ok(), "{src}: {ours:?}");
            assert_eq!(ours.as_deref().ok(), plain(src).as_deref().ok(), "{src}");
        }
    }

    /// Raw text inside captured bodies is printed through `{{ }}` after the rewrite, with
    /// exactly the text (whitespace control included) it had before, so the print budget
    /// counts it: repeating it in a loop inside a capture is an error.
    #[test]
    fn raw_text_in_captures_renders_as_before_and_is_counted() {
        let msgs = serde_json::json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]);
        let opts = RenderOptions::new().with_fixed_time(Some(0));
        for src in [
            "{% set t %}\n  a\n  {% for m in messages %}\n    <{{ m.role }}> \"q\" \\ \t{{ m.content }}\n  {% endfor %}\n{% endset %}[{{ t }}]",
            "{% macro m(x) -%}\n  c {{ x }}  \n  {%- if x %} yes\n{% else %}no{% endif %}\n{%- endmacro %}{{ m(1) }}|{{ m(0) }}",
            "{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}\n  d {# note #} e\n{% endcall %}",
            "{% filter upper %}  e\n  {%+ if true %} f {% endif %}{% endfilter %}",
            "{% set t %}{% raw %} {{ not a tag }} {% endraw %} g{% endset %}{{ t }}",
            "{% set t %}}} {{ '}}' }} {% endset %}{{ t }}\n{% set u %}{{ t }}\n\n  x{%- endset %}{{ u }}",
            "{% set t %}\n{% endset %}{{ t | length }}{% set u %} {% endset %}{{ u | length }}",
            "{% set t %}a {% raw %} {{ x }} {% endraw %} b{% endset %}[{{ t }}]",
            "{% set t %}a \n  {%- raw -%}\n {{ x }} \n {%- endraw -%} \n b{% endset %}[{{ t }}]",
            "{% set t %}\n  {% raw %}\n  {% x %}\n  {% endraw %}\n  c\n{% endset %}[{{ t }}]",
            "{% set t %}{% raw %}{% endraw %}{% raw %} {% endraw %}{{ 1 }}{% raw %}z{% endraw %}\n\n{% endset %}[{{ t }}]",
            "{% macro m() %}{% for i in range(2) %}  {%+ raw %}<{{ i }}>{% endraw %}\n{% endfor %}{% endmacro %}[{{ m() }}]",
            "{% filter upper %}{%- raw %} q {% endraw -%}   {{ 'r' }}{% endfilter %}",
        ] {
            let ours = ChatTemplate::new(src, "", "")
                .unwrap()
                .render_serialized(&msgs, &opts)
                .unwrap();
            let before = ChatTemplate::build(src, "", "", false)
                .unwrap()
                .render_serialized(&msgs, &opts)
                .unwrap();
            assert_eq!(ours, before, "{src}");
        }
        // Errors keep their line numbers.
        let src = "{% set t %}\n\n  a\n\n{% endset %}\n{{ raise_exception('x') }}";
        let e = render(src, msgs.clone()).unwrap_err().to_string();
        assert!(e.contains("chat:6"), "{e}");
        let src = "{% set t %}{% raw %}\n\n{% endraw %}\n{% endset %}\n{{ raise_exception('x') }}";
        let e = render(src, msgs.clone()).unwrap_err().to_string();
        assert!(e.contains("chat:5"), "{e}");
        // 1,000 x 1,000 copies of 100 bytes of raw text: 100 MB, inside one capture, as
        // template text and inside a `{% raw %}` block.
        let row = "x".repeat(100);
        for text in [row.clone(), format!("{{% raw %}}{row}{{% endraw %}}")] {
            let src = format!(
                "{{% set t %}}{{% for i in range(1000) %}}{{% for j in range(1000) %}}{text}\
                 {{% endfor %}}{{% endfor %}}{{% endset %}}"
            );
            match render(&src, msgs.clone()) {
                Err(LlmError::Template(e)) => {
                    assert!(e.to_string().contains("printed text"), "{e}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// Random expressions, spaced and parenthesised at random, render the same with the
    /// checked operators as with minijinja's own (or fail with both): the rewrite keeps
    /// every expression's meaning.
    #[test]
    fn checked_operators_keep_the_meaning_of_random_expressions() {
        struct Gen(u64);
        impl Gen {
            fn next(&mut self, n: u64) -> u64 {
                // xorshift64*
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
            }
            fn space(&mut self) -> &'static str {
                ["", " ", "  ", "\n ", " \t"][self.next(5) as usize]
            }
            fn expr(&mut self, depth: u32) -> String {
                if depth == 0 || self.next(4) == 0 {
                    let atoms = [
                        "1", "2", "0", "2.5", "'a'", "\"b'c\"", "'(x)'", "none", "true",
                        "[1, 'z']", "(1, 2)", "{'k': 3}", "x", "ns.v", "range(3)", "'[,]'",
                    ];
                    return atoms[self.next(atoms.len() as u64) as usize].to_owned();
                }
                let (s1, s2) = (self.space(), self.space());
                match self.next(12) {
                    0..=4 => {
                        // Not `and`/`or`: minijinja folds `0 and <constant>` to `false` at
                        // compile time, which a checked operand (a call) no longer is; at run
                        // time both give `0`, as jinja2 does.
                        let ops = ["~", "+", "*", "-", "/", "//", "%", "==", "<", "~", "+", "*"];
                        let op = ops[self.next(ops.len() as u64) as usize];
                        let (a, b) = (self.expr(depth - 1), self.expr(depth - 1));
                        format!("{a}{s1} {op} {s2}{b}")
                    }
                    5 => format!("({s1}{}{s2})", self.expr(depth - 1)),
                    6 => format!("-{}", self.expr(depth - 1)),
                    7 => {
                        let f = [
                            "string",
                            "upper",
                            "length",
                            "join(',' ~ '-')",
                            "default(1 + 1)",
                        ];
                        let f = f[self.next(f.len() as u64) as usize];
                        format!("{}{s1}|{s2}{f}", self.expr(depth - 1))
                    }
                    8 => format!(
                        "{} if {} else {}",
                        self.expr(depth - 1),
                        self.expr(depth - 1),
                        self.expr(depth - 1)
                    ),
                    9 => format!(
                        "[{}, {}][{}]",
                        self.expr(depth - 1),
                        self.expr(depth - 1),
                        self.next(2)
                    ),
                    10 => format!("({}, {})", self.expr(depth - 1), self.expr(depth - 1)),
                    _ => format!("{} is defined", self.expr(depth - 1)),
                }
            }
        }
        let msgs = serde_json::json!([]);
        let opts = RenderOptions::new();
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        let (mut same, mut failed) = (0, 0);
        for _ in 0..3000 {
            let e = g.expr(4);
            let src = format!(
                "{{% set x = 'q' %}}{{% set ns = namespace(v=[3]) %}}{{{{ {e} }}}}\
                 {{% set ns.v = {e} %}}{{{{ ns.v }}}}"
            );
            let ours = ChatTemplate::build(&src, "", "", true)
                .and_then(|t| t.render_serialized(&msgs, &opts))
                .map_err(|_| ());
            let plain = ChatTemplate::build(&src, "", "", false)
                .and_then(|t| t.render_serialized(&msgs, &opts))
                .map_err(|_| ());
            assert_eq!(ours, plain, "{src}");
            if ours.is_ok() {
                same += 1;
            } else {
                failed += 1;
            }
        }
        // Many of them render (so the comparison is mostly of outputs, not of two errors;
        // the rest mix types, `'a' + 1`, and fail with both).
        assert!(same >= 1000, "{same} rendered, {failed} failed");
    }

    /// What the checked operators cost: compile and render times of real templates with and
    /// without the rewrite, in one run (a probe, not a check: it asserts only that both
    /// render the same). `MM_CHAT_TEMPLATES` names llama.cpp's `models/templates`:
    /// `cargo test --release -p mm-llm --features chat-template --lib render_cost --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "a timing probe; needs MM_CHAT_TEMPLATES"]
    fn render_cost_with_and_without_checked_operators() {
        let dir = std::env::var("MM_CHAT_TEMPLATES").expect("MM_CHAT_TEMPLATES");
        let turns: Vec<_> = (0..200)
            .map(|i| {
                let role = if i % 2 == 0 { "user" } else { "assistant" };
                serde_json::json!({"role": role, "content": format!("message {i}, some text")})
            })
            .collect();
        let msgs = serde_json::Value::Array(turns);
        let opts = RenderOptions::new().with_fixed_time(Some(1_721_952_000));
        for name in [
            "openai-gpt-oss-120b.jinja",
            "Qwen-Qwen3-0.6B.jinja",
            "meta-llama-Llama-3.3-70B-Instruct.jinja",
            "google-gemma-2-2b-it.jinja",
        ] {
            let src = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
            let mut times = [[std::time::Duration::MAX; 2]; 2];
            let mut out = [String::new(), String::new()];
            for _ in 0..5 {
                for guard in [false, true] {
                    let t0 = std::time::Instant::now();
                    let t = ChatTemplate::build(&src, "<s>", "</s>", guard).unwrap();
                    let compile = t0.elapsed();
                    let t0 = std::time::Instant::now();
                    for _ in 0..20 {
                        out[usize::from(guard)] = t.render_serialized(&msgs, &opts).unwrap();
                    }
                    let render = t0.elapsed() / 20;
                    let best = &mut times[usize::from(guard)];
                    *best = [best[0].min(compile), best[1].min(render)];
                }
            }
            assert_eq!(out[0], out[1], "{name}");
            let ratio = |i: usize| times[1][i].as_secs_f64() / times[0][i].as_secs_f64();
            println!(
                "{name}: compile {:?} -> {:?} ({:.2}x), render 200 turns {:?} -> {:?} ({:.2}x)",
                times[0][0],
                times[1][0],
                ratio(0),
                times[0][1],
                times[1][1],
                ratio(1)
            );
        }
    }

    /// Chains past the limits are refused before minijinja compiles them (each of these
    /// overflowed the stack and aborted the process); chains just under them compile and
    /// render on a thread with a 2 MiB stack, the size of a Tokio worker's or a test's.
    #[test]
    fn deep_chains_are_typed_errors_and_those_under_the_limits_compile() {
        let n = 5000;
        for src in [
            format!("{{{{ 1{} }}}}", "+1".repeat(n)),
            format!("{{{{ {}1 }}}}", "- ".repeat(n)),
            format!("{{{{ x{} }}}}", ".a".repeat(n)),
            format!("{{{{ x{} }}}}", "()".repeat(n)),
            format!("{{% set y = 'a'{} %}}", " ~ 'a'".repeat(n)),
            format!("{{{{ {}1 }}}}", "1 if 1 else ".repeat(n)),
            format!("{{% if 0 %}}{}{{% endif %}}", "{%- elif 0 -%}".repeat(n)),
        ] {
            match ChatTemplate::new(&src, "", "") {
                Err(LlmError::Template(e)) => {
                    assert!(e.to_string().contains("overflow the stack"), "{e}");
                }
                other => panic!("{}: {other:?}", &src[..40]),
            }
        }
        // A tag's text inside a string, a comment or a raw block is not counted.
        let long = "+1".repeat(n);
        for src in [
            format!("{{{{ '{{{{ {long} }}}}' }}}}"),
            format!("{{# {{{{ {long} }}}} #}}"),
            format!("{{% raw %}}{{{{ {long} }}}}{{% endraw %}}"),
        ] {
            ChatTemplate::new(&src, "", "").unwrap();
        }
        let under = [
            format!("{{{{ 1{} }}}}", "+1".repeat(MAX_TAG_TOKENS / 2 - 1)),
            format!("{{{{ {}1 }}}}", "-".repeat(MAX_TAG_TOKENS - 1)),
            format!("{{{{ x{} }}}}", ".a".repeat(MAX_TAG_TOKENS / 2 - 1)),
            format!(
                "{{% set f = namespace %}}{{{{ f{} }}}}",
                "()".repeat(MAX_TAG_TOKENS / 2 - 1)
            ),
            format!(
                "{{{{ {}1 }}}}",
                "1 if 1 else ".repeat(MAX_TAG_TOKENS / 4 - 1)
            ),
            format!(
                "{{% if 0 %}}{}{{% endif %}}",
                "{% elif 0 %}".repeat(MAX_ELIFS)
            ),
        ];
        let rendered = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                under
                    .iter()
                    .map(|src| {
                        ChatTemplate::new(src, "", "").map(|t| {
                            t.render_serialized(&serde_json::json!([]), &RenderOptions::new())
                                .is_ok()
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap()
            .join()
            .unwrap();
        for r in rendered {
            assert!(r.is_ok(), "{r:?}");
        }
    }

    #[test]
    fn runaway_recursion_is_a_typed_error_on_a_default_thread_stack() {
        // minijinja stops runtime nesting (macros, call blocks, recursive loops) at its
        // recursion limit. Each case recurses until it hits that limit on a 2 MiB thread
        // (what Rust and tokio give a thread by default) and must come back as an error,
        // not overflow the stack. Measured: all five fit in 1.5 MiB (not 1.25 MiB) in a
        // debug build, and in 768 KiB in a release build.
        let cases = [
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "{% macro f(n) %}{% for i in [1] %}{% if true %}{{ f(n + 1) }}{% endif %}\
             {% endfor %}{% endmacro %}{{ f(0) }}",
            "{% macro g() %}{{ caller() }}{% endmacro %}\
             {% macro f(n) %}{% call g() %}{{ f(n + 1) }}{% endcall %}{% endmacro %}{{ f(0) }}",
            "{% macro f(n) %}{% filter upper %}{% set x %}{{ f(n + 1) }}{% endset %}{{ x }}\
             {% endfilter %}{% endmacro %}{{ f(0) }}",
            "{% for m in messages recursive %}{{ loop([m]) }}{% endfor %}",
        ];
        let errors = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let msgs = serde_json::json!([{"role": "user", "content": "hi"}]);
                cases.map(|src| {
                    ChatTemplate::new(src, "", "")
                        .unwrap()
                        .render_serialized(&msgs, &RenderOptions::new())
                        .map_err(|e| e.to_string())
                })
            })
            .unwrap()
            .join()
            .unwrap();
        for r in errors {
            assert!(
                r.as_ref().is_err_and(|e| e.contains("recursion limit")),
                "{r:?}"
            );
        }
    }

    #[test]
    fn the_rendered_prompt_is_capped() {
        let src = "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let msgs = serde_json::json!([]);
        // 100 MB of output against the default 16 MiB.
        let err = t
            .render_serialized(&msgs, &RenderOptions::new())
            .unwrap_err();
        assert!(
            matches!(err, LlmError::TemplateOutputTooLong { max } if max == RenderOptions::DEFAULT_MAX_LEN),
            "{err:?}"
        );
        // Exactly at the cap passes; one byte more does not.
        let t = ChatTemplate::new("{{ 'x' * 1000 }}", "", "").unwrap();
        let at = t
            .render_serialized(&msgs, &RenderOptions::new().with_max_len(1000))
            .unwrap();
        assert_eq!(at.len(), 1000);
        let err = t
            .render_serialized(&msgs, &RenderOptions::new().with_max_len(999))
            .unwrap_err();
        assert!(matches!(err, LlmError::TemplateOutputTooLong { max: 999 }));
        assert!(err.to_string().contains("RenderOptions::with_max_len"));
    }
}
