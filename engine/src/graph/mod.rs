//! Graph files: parsing with positions, validation into a [`GraphPlan`], and diagnostics.

pub mod diagnostic;
pub mod loader;
mod spec;
pub mod validate;

pub use diagnostic::{closest, Diagnostic, GraphFileError, Pos};
pub use loader::{load, KindSwap, Loader, Override};
pub use validate::{
    GraphPlan, OnError, PlanEdge, PlanInterrupt, PlanNode, RestartPolicy, DEFAULT_MERGE_WAIT,
};
