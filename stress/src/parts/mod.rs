//! One module per part of the project; each exposes `run(&Options, &mut Report)` and adds
//! its rows. To add a part: write `parts/<name>.rs` with such a `run`, declare it here and
//! call it from [`crate::run_all`].

pub mod track;
