//! graphs/voice_assistant_live.yaml validates against the full registry.

#[test]
fn voice_assistant_live_graph_validates() {
    use std::path::PathBuf;
    let mut registry = weir_nodes::registry().expect("built-in kinds");
    weir_live::register(&mut registry).expect("live kinds");
    weir_ml::register(&mut registry).expect("ml kinds");
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../graphs/voice_assistant_live.yaml");
    let plan = weir_engine::Loader::new(&registry)
        .load_file(&path)
        .unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<&str> = plan.nodes.iter().map(|n| n.kind.as_str()).collect();
    assert!(
        kinds.contains(&"audio.capture") && kinds.contains(&"llm.chat"),
        "{kinds:?}"
    );
    let dropping = plan
        .edges
        .iter()
        .filter(|e| e.queue.overflow == weir_engine::Overflow::DropOldest)
        .count();
    assert!(
        dropping >= 2,
        "the audio edges up to the VAD drop rather than stall"
    );
}
