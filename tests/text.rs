//! Text in and out: `text.lines` from a file and from standard input, into JSON lines and
//! into the chat model.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{read_jsonl, root, scratch};

#[test]
fn text_lines_become_text_packets() {
    let dir = scratch("text_lines");
    let input = dir.join("questions.txt");
    std::fs::write(&input, "first question\n\n  second one  \nthird").unwrap();
    let graph = dir.join("lines.yaml");
    let yaml = format!(
        "nodes:\n  ask: {{ node: text.lines, with: {{ path: '{}' }} }}\n  save: {{ node: io.jsonl, in: {{ in: ask.text }}, with: {{ path: '{}' }} }}\n",
        input.display(),
        dir.join("out.jsonl").display()
    );
    std::fs::write(&graph, yaml).unwrap();
    let run = common::weir(&["run", graph.to_str().unwrap()], &[]);
    assert!(run.status.success(), "{}", common::stderr(&run));
    let lines = read_jsonl(&dir.join("out.jsonl"));
    let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["first question", "second one", "third"]);
    let times: Vec<f64> = lines.iter().map(|l| l["t"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

#[test]
fn chat_graph_answers_each_typed_question() {
    let model = root().join("models/smollm2-135m/model.onnx");
    assert!(
        model.exists(),
        "`{}` is missing: run `bash tools/fetch-models.sh`",
        model.display()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(root())
        .args(["run", "graphs/chat.yaml"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\nName one colour.\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(answers.len(), 2, "one answer line per question: {stdout}");
    assert!(answers[0].contains("Paris"), "{stdout}");
}
