#![doc = include_str!("../README.md")]

mod budget;
mod config;
mod error;
mod pressure;
mod sync;
pub mod sys;

pub use budget::{BudgetStats, MemoryBudget, Reservation};
pub use config::{
    BudgetConfig, DEFAULT_CRITICAL_PERCENT, DEFAULT_HYSTERESIS_PERCENT, DEFAULT_WARNING_PERCENT,
    MAX_LIMIT, Thresholds,
};
pub use error::BudgetError;
pub use pressure::{PressureEvent, PressureLevel, SubscriberId};
