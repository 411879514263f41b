//! Dequantization kernels (being filled in by its issue).
