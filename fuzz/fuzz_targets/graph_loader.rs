//! Any bytes as a graph file, validated against every built-in node kind (with a `--set`
//! override): the loader must return a plan or positioned errors, never panic or hang.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weir_engine::{Loader, Override, Registry};

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| weir_nodes::registry().expect("built-in kinds register once"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let set: Override = "vad.min_silence_ms=300".parse().expect("a valid override");
    let loader = Loader::new(registry())
        .overrides([set])
        .env(|name| (name == "WEIR_OUT").then(|| "out".to_string()));
    match loader.load_str(Path::new("fuzz.yaml"), text) {
        Ok(plan) => {
            let _ = plan.topological_order();
            let _ = plan.interrupt_regions();
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty());
        }
    }
});
