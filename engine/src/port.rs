//! Typed port handles: a node declares its ports once, in a function that returns the
//! handles, and uses the same handles to read what arrives and to send.
//!
//! ```
//! use weir_engine::{Input, Output, Payload, PortType, Ports};
//! # #[derive(Debug)] struct Text(String);
//! # impl Payload for Text {
//! #     const PORT: PortType = PortType::named("text");
//! #     fn write_json(&self, _: &mut serde_json::Map<String, serde_json::Value>) {}
//! # }
//! struct UpperPorts { text: Input<Text>, upper: Output<Text> }
//!
//! fn declare(p: &mut Ports) -> UpperPorts {
//!     UpperPorts {
//!         text: p.input("text", "text to convert"),
//!         upper: p.output("upper", "the same text in capitals"),
//!     }
//! }
//! ```

use std::fmt;
use std::marker::PhantomData;

use crate::node::NodeError;
use crate::packet::{Packet, Payload, PortType};

/// A declared input or output port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Port name as written in graph files.
    pub name: &'static str,
    /// Payload type.
    pub ty: PortType,
    /// For inputs: whether the graph must connect it.
    pub required: bool,
    /// One-line description.
    pub doc: &'static str,
}

/// Collects a node kind's port declarations and hands out typed handles, numbered in order.
#[derive(Clone, Debug, Default)]
pub struct Ports {
    pub(crate) inputs: Vec<PortSpec>,
    pub(crate) outputs: Vec<PortSpec>,
}

impl Ports {
    fn add_input(&mut self, name: &'static str, ty: PortType, required: bool, doc: &'static str) {
        self.inputs.push(PortSpec {
            name,
            ty,
            required,
            doc,
        });
    }

    /// A required input of payload type `T`.
    pub fn input<T: Payload>(&mut self, name: &'static str, doc: &'static str) -> Input<T> {
        self.add_input(name, T::PORT, true, doc);
        Input::at(self.inputs.len() - 1)
    }

    /// An input of payload type `T` that the graph may leave unconnected.
    pub fn optional_input<T: Payload>(
        &mut self,
        name: &'static str,
        doc: &'static str,
    ) -> Input<T> {
        self.add_input(name, T::PORT, false, doc);
        Input::at(self.inputs.len() - 1)
    }

    /// A required input that accepts any payload (printers, writers).
    pub fn any_input(&mut self, name: &'static str, doc: &'static str) -> AnyInput {
        self.add_input(name, PortType::ANY, true, doc);
        AnyInput(self.inputs.len() - 1)
    }

    /// An input that accepts any payload and may stay unconnected.
    pub fn optional_any_input(&mut self, name: &'static str, doc: &'static str) -> AnyInput {
        self.add_input(name, PortType::ANY, false, doc);
        AnyInput(self.inputs.len() - 1)
    }

    /// An output of payload type `T`.
    pub fn output<T: Payload>(&mut self, name: &'static str, doc: &'static str) -> Output<T> {
        self.outputs.push(PortSpec {
            name,
            ty: T::PORT,
            required: false,
            doc,
        });
        Output {
            index: self.outputs.len() - 1,
            _payload: PhantomData,
        }
    }
}

/// Which input port a packet arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InputId(pub(crate) usize);

impl InputId {
    /// The port's position among the kind's inputs, as declared.
    pub fn index(self) -> usize {
        self.0
    }
}

/// A packet as handed to [`crate::Processor::process`]: the packet and the port it came on.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// The input port.
    pub port: InputId,
    /// The packet.
    pub packet: Packet,
}

impl Incoming {
    /// The packet's media time.
    pub fn timestamp(&self) -> crate::Timestamp {
        self.packet.timestamp
    }
}

/// A typed input port handle.
pub struct Input<T> {
    index: usize,
    _payload: PhantomData<fn() -> T>,
}

impl<T> Clone for Input<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Input<T> {}
impl<T> fmt::Debug for Input<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Input#{}", self.index)
    }
}

impl<T: Payload> Input<T> {
    fn at(index: usize) -> Self {
        Input {
            index,
            _payload: PhantomData,
        }
    }

    /// The payload of `incoming` if it arrived on this port.
    pub fn get<'a>(&self, incoming: &'a Incoming) -> Option<&'a T> {
        if incoming.port.0 == self.index {
            incoming.packet.get()
        } else {
            None
        }
    }

    /// The payload of `incoming`, for a node whose only input is this port; an error names
    /// the payload that came instead (which validation makes impossible from graph files).
    pub fn expect<'a>(&self, incoming: &'a Incoming) -> Result<&'a T, NodeError> {
        self.get(incoming).ok_or_else(|| {
            NodeError::new(format!(
                "input #{} expects {}, got {} on input #{}",
                self.index,
                T::PORT,
                incoming.packet.port_type(),
                incoming.port.0
            ))
        })
    }

    /// This port's id.
    pub fn id(&self) -> InputId {
        InputId(self.index)
    }
}

/// An input port handle that accepts any payload.
#[derive(Clone, Copy, Debug)]
pub struct AnyInput(usize);

impl AnyInput {
    /// The packet of `incoming` if it arrived on this port.
    pub fn get<'a>(&self, incoming: &'a Incoming) -> Option<&'a Packet> {
        (incoming.port.0 == self.0).then_some(&incoming.packet)
    }

    /// This port's id.
    pub fn id(&self) -> InputId {
        InputId(self.0)
    }
}

/// A typed output port handle; send with [`crate::Context::send`].
pub struct Output<T> {
    pub(crate) index: usize,
    _payload: PhantomData<fn(T)>,
}

impl<T> Clone for Output<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Output<T> {}
impl<T> fmt::Debug for Output<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Output#{}", self.index)
    }
}

impl Ports {
    /// An output of a type known only at run time (endpoints, test harnesses).
    pub(crate) fn dynamic_output(&mut self, name: &'static str, ty: PortType, doc: &'static str) {
        self.outputs.push(PortSpec {
            name,
            ty,
            required: false,
            doc,
        });
    }

    /// A required input of a type known only at run time (endpoints, test harnesses).
    pub(crate) fn dynamic_input(&mut self, name: &'static str, ty: PortType, doc: &'static str) {
        self.add_input(name, ty, true, doc);
    }
}
