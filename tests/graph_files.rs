//! Graph files: every invalid fixture gives its errors with positions and suggestions; every
//! ready graph validates; the launcher's `nodes`, `dot` and `--set` behave.

mod common;

use common::{root, stderr, weir};

#[test]
fn every_invalid_graph_reports_its_errors_with_positions() {
    let dir = root().join("tests/graphs/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let expected = std::fs::read_to_string(path.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{} has no .expected file", path.display()));
        let out = weir(&["check", path.to_str().unwrap()], &[]);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: exit status\n{err}",
            path.display()
        );
        assert!(
            !err.contains("panicked"),
            "{} panicked:\n{err}",
            path.display()
        );
        for line in expected.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                err.contains(line),
                "{}: missing `{line}` in:\n{err}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} fixtures found");
}

#[test]
fn errors_are_listed_in_file_order() {
    let path = root().join("tests/graphs/invalid/many_errors.yaml");
    let err = stderr(&weir(&["check", path.to_str().unwrap()], &[]));
    let lines: Vec<u64> = err
        .lines()
        .filter_map(|l| l.trim().strip_prefix("--> "))
        .filter_map(|loc| loc.split(':').nth(1)?.parse().ok())
        .collect();
    assert_eq!(lines.len(), 9, "{err}");
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "not in file order: {lines:?}"
    );
}

#[test]
fn every_ready_graph_validates() {
    let dirs = ["graphs", "graphs/net", "graphs/split"]
        .map(|d| std::fs::read_dir(root().join(d)).unwrap());
    for entry in dirs.into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let out = weir(&["check", path.to_str().unwrap()], &[]);
        assert!(
            out.status.success(),
            "{}:\n{}",
            path.display(),
            stderr(&out)
        );
    }
}

#[test]
fn set_overrides_are_validated_like_the_file() {
    let out = weir(
        &[
            "check",
            "graphs/segments.yaml",
            "--set",
            "vda.threshold_db=-30",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    // Problems of `--set` are reported at the command line, not at a line of the file.
    assert!(
        stderr(&out).contains("--> command line: --set vda.threshold_db=-30"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("no node named `vda`"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("did you mean `vad`?"),
        "{}",
        stderr(&out)
    );

    let out = weir(
        &[
            "check",
            "graphs/segments.yaml",
            "--set",
            "vad.threshold_db=loud",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--> command line: --set vad.threshold_db="),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("number, found string `loud`"),
        "{}",
        stderr(&out)
    );

    let out = weir(
        &[
            "check",
            "graphs/segments.yaml",
            "--set",
            "vad.threshold_db=-30",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn missing_environment_variables_are_named() {
    let dir = common::scratch("env_graph");
    let graph = dir.join("env.yaml");
    std::fs::write(
        &graph,
        "nodes:\n  input:\n    node: audio.wav_file\n    with: { path: \"${WEIR_TEST_SURELY_UNSET}/a.wav\" }\n",
    )
    .unwrap();
    let out = weir(&["check", graph.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("environment variable `WEIR_TEST_SURELY_UNSET` is not set"),
        "{err}"
    );
    assert!(err.contains("env.yaml:4:19"), "{err}");
}

#[test]
fn nodes_lists_kinds_with_ports_options_and_defaults() {
    let out = weir(&["nodes"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for kind in [
        "audio.wav_file",
        "audio.resample",
        "audio.wav_writer",
        "audio.level",
        "speech.energy_vad",
        "text.print",
        "io.jsonl",
    ] {
        assert!(text.contains(kind), "`weir nodes` lacks {kind}");
    }
    let out = weir(&["nodes", "audio.resample"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rate") && text.contains("default 16000"),
        "{text}"
    );
    assert!(text.contains("one of fft|sinc"), "{text}");

    let out = weir(&["nodes", "audio.resampel"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("did you mean `audio.resample`?"));
}

#[test]
fn dot_draws_every_edge() {
    let out = weir(&["dot", "graphs/segments.yaml"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("digraph"));
    assert!(text.contains("\"input\" -> \"resample\""), "{text}");
    assert!(text.contains("\"vad\" -> \"segments\""), "{text}");
    assert_eq!(text.matches("\" -> \"").count(), 4, "{text}");
}

#[test]
fn unknown_command_line_is_a_usage_error() {
    let out = weir(&["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = weir(&["check", "graphs/does_not_exist.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read graph file"),
        "{}",
        stderr(&out)
    );
}
