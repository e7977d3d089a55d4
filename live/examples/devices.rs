//! Prints the audio devices of the default host, then tries to open the default microphone.
//!
//! `cargo run -p weir-live --example devices`

use weir_live::capture::{CaptureConfig, CaptureNode};

fn main() {
    match weir_live::devices_report() {
        Ok(report) => print!("{report}"),
        Err(e) => eprintln!("error: {e}"),
    }
    let mut node = CaptureNode::new(CaptureConfig::default());
    match node.open_device() {
        Ok(()) => println!("default microphone: {:?}", node.negotiated()),
        Err(e) => println!("default microphone: error: {e}"),
    }
}
