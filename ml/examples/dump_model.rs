//! scratch: dump decluttered model
use tract_onnx::prelude::*;
fn main() {
    let p = std::env::args().nth(1).unwrap();
    let pat = std::env::args().nth(2).unwrap_or_default();
    let m = tract_onnx::onnx()
        .model_for_path(&p)
        .unwrap()
        .into_typed()
        .unwrap()
        .into_decluttered()
        .unwrap();
    for n in &m.nodes {
        if !n.name.contains(&pat) {
            continue;
        }
        let ins: Vec<String> = n
            .inputs
            .iter()
            .map(|o| format!("{}:{:?}", m.nodes[o.node].name, m.outlet_fact(*o).unwrap()))
            .collect();
        println!(
            "#{} {} [{}] {:?}\n    in: {}\n    out: {:?}",
            n.id,
            n.name,
            n.op.name(),
            n.op,
            ins.join(" | "),
            n.outputs[0].fact
        );
    }
}
