//! Graph-file errors a user can act on: a position and plain words, even for files that are
//! not UTF-8 or that the YAML parser rejects.

use std::path::PathBuf;

use weir_engine::{Loader, NoConfig, NodeKind, Processor, Registry};

struct Nothing;
impl Processor for Nothing {
    fn process(
        &mut self,
        _: weir_engine::Incoming,
        _: &mut weir_engine::Context,
    ) -> Result<(), weir_engine::NodeError> {
        Ok(())
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(NodeKind::processor(
        "test.sink",
        "",
        |p| p.any_input("in", ""),
        |_: NoConfig, _| Ok(Nothing),
    ))
    .unwrap();
    r
}

fn check(name: &str, bytes: &[u8]) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("graph_errors");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    Loader::new(&registry())
        .load_file(&path)
        .unwrap_err()
        .to_string()
}

#[test]
fn a_file_that_is_not_utf8_is_reported_at_the_bad_byte() {
    let err = check("latin1.yaml", b"nodes:\n  a: { node: \"caf\xe9\" }\n");
    assert!(
        err.contains("the file is not UTF-8 text: byte 0xe9"),
        "{err}"
    );
    assert!(err.contains("latin1.yaml:2:18"), "{err}");
}

#[test]
fn parser_terms_become_plain_words_with_a_position() {
    let err = check(
        "neg.yaml",
        b"nodes:\n  a: { node: test.sink, queue: { size: -1 } }\n",
    );
    assert!(err.contains("error: not a whole number"), "{err}");
    assert!(err.contains("neg.yaml:2:40"), "{err}");
    assert!(!err.contains("u64"), "{err}");
    let err = check(
        "wait.yaml",
        b"nodes:\n  a: { node: test.sink, merge_wait_ms: soon }\n",
    );
    assert!(err.contains("error: not a number"), "{err}");
    let err = check("empty.yaml", b"graph: nothing\n");
    assert!(err.contains("empty.yaml:1:1"), "{err}");
    assert!(err.contains("no `nodes:` section"), "{err}");
}
