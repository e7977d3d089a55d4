//! The node contract: sources produce, processors process; both may open, flush and close.
//!
//! Guarantees the runtime gives a node:
//! - `open` is called once, on the node's own thread, before anything else; sources start
//!   producing only after every node of the graph has opened;
//! - `process` is called once per input packet; a node with several inputs receives them in
//!   timestamp order (see [`crate::runtime`] for the merge and its bound);
//! - a source has `produce` called until it returns [`Flow::Done`] or the graph is stopped;
//! - after an interrupt reaches the node (its own or one upstream of it), `flush` is called
//!   before anything else, so it can drop work in progress; packets made before the
//!   interrupt never reach it afterwards;
//! - `close` is called once after the last packet (end of stream) if `open` succeeded, and may
//!   still send packets (to flush buffered state); then the node's outputs end.

use std::error::Error as StdError;

use crate::context::Context;
use crate::port::Incoming;

/// Whether a source has more to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Call `produce` again.
    Continue,
    /// The source is exhausted: end of stream.
    Done,
}

/// A failure inside a node; the runtime adds the node's name.
#[derive(Debug, thiserror::Error)]
#[error("{message}{}", source.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
pub struct NodeError {
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl NodeError {
    /// An error with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        NodeError {
            message: message.into(),
            source: None,
        }
    }

    /// An error with a message and the underlying cause.
    pub fn with_source(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        NodeError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A node without inputs: a file reader, a microphone, a channel from the program.
pub trait Source: Send {
    /// Produces the next packets; [`Flow::Done`] ends the stream.
    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError>;

    /// Loads models, opens files and allocates buffers, before any node produces.
    fn open(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        let _ = ctx;
        Ok(())
    }

    /// Drops work in progress after an interrupt.
    fn flush(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        let _ = ctx;
        Ok(())
    }

    /// Releases resources at the end of the stream; may still send.
    fn close(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        let _ = ctx;
        Ok(())
    }
}

/// A node with inputs: it handles each packet that arrives.
pub trait Processor: Send {
    /// Handles one packet; `input.port` says which input it came on.
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError>;

    /// Loads models and allocates buffers, before any packet.
    fn open(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        let _ = ctx;
        Ok(())
    }

    /// Drops work in progress and buffered state after an interrupt (a partial answer, a
    /// playback buffer). Packets made before the interrupt are discarded by the runtime.
    fn flush(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        let _ = ctx;
        Ok(())
    }

    /// Flushes buffered state at end of stream; may still send.
    fn close(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        let _ = ctx;
        Ok(())
    }
}

/// A built node, as the runtime holds it.
pub(crate) enum AnyNode {
    Source(Box<dyn Source>),
    Processor(Box<dyn Processor>),
}
