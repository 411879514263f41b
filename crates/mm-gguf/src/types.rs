//! The table of ggml tensor types (being filled in by its issue).
