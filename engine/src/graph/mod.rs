//! Graph files: parsing with positions, validation into a [`GraphPlan`], and diagnostics.

pub mod diagnostic;
mod spec;
pub mod validate;

pub use diagnostic::{closest, Diagnostic, GraphFileError, Pos};
pub use validate::{load, GraphPlan, KindSwap, Loader, Override, PlanEdge, PlanNode};
