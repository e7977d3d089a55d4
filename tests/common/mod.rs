//! Helpers shared by the graph tests: paths, the launcher, graph runs, output readers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir_engine::{Graph, Loader, Override, Registry, RunError, RunReport};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails the test, naming the fix, unless the voice assistant's four models were fetched.
pub fn require_models() {
    for m in [
        "silero_vad_16k.onnx",
        "whisper-tiny.en/decoder.onnx",
        "smollm2-135m/model.onnx",
        "piper-joe-medium/part_b.onnx",
    ] {
        let p = root().join("models").join(m);
        assert!(
            p.exists(),
            "model `{}` is missing: run `bash tools/fetch-models.sh`",
            p.display()
        );
    }
}

/// A file under `data/`; fails with the set-up command when the data is missing.
pub fn data(rel: &str) -> PathBuf {
    let p = root().join("data").join(rel);
    assert!(
        p.exists(),
        "test data `{}` is missing: run `bash tools/fetch-data.sh` first",
        p.display()
    );
    p
}

/// A fresh, empty scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

/// Every node kind the launcher knows.
pub fn registry() -> Registry {
    let mut r = weir_nodes::registry().expect("node kinds register once");
    weir_ml::register(&mut r).expect("ML node kinds register once");
    weir_live::register(&mut r).expect("live node kinds register once");
    weir_net::register(&mut r).expect("network node kinds register once");
    r
}

/// Runs the launcher with `args` from the repository root.
pub fn weir(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.current_dir(root()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the weir binary")
}

/// The launcher's standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Loads `graph` (relative to the root) with `NODE.OPTION=VALUE` overrides and runs it.
pub fn run_graph(
    registry: &Registry,
    graph: &str,
    overrides: &[String],
) -> Result<RunReport, RunError> {
    let sets: Vec<Override> = overrides
        .iter()
        .map(|s| s.parse().expect("override syntax"))
        .collect();
    let plan = Loader::new(registry)
        .overrides(sets)
        .load_file(&root().join(graph))
        .unwrap_or_else(|e| panic!("{graph} does not load:\n{e}"));
    Graph::build(plan, registry)?.run()
}

/// Loads a graph given as YAML text and runs it.
pub fn run_yaml(registry: &Registry, yaml: &str) -> Result<RunReport, RunError> {
    let plan = Loader::new(registry)
        .load_str(Path::new("test.yaml"), yaml)
        .unwrap_or_else(|e| panic!("test graph does not load:\n{e}"));
    Graph::build(plan, registry)?.run()
}

/// Reads a JSON-lines file.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// Reads a WAV file as f32 samples in [-1, 1] with its spec.
pub fn read_wav(path: &Path) -> (hound::WavSpec, Vec<f32>) {
    weir_nodes::audio::wav_file::read_wav(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Frames (samples per channel) of a WAV file, from its header.
pub fn wav_frames(path: &Path) -> u64 {
    u64::from(hound::WavReader::open(path).expect("open WAV").duration())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A `weir` child process, killed if the test ends (or fails) before it is waited for.
pub struct Spawned {
    child: Option<std::process::Child>,
    what: String,
}

impl Spawned {
    /// Starts `weir ARGS...` from the repository root with `env`; standard output and error
    /// are captured.
    pub fn weir(what: &str, args: &[&str], env: &[(&str, String)]) -> Spawned {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.current_dir(root())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start weir");
        Spawned {
            child: Some(child),
            what: what.to_string(),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Sends SIGTERM (a graceful stop: the graph drains and reports).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.id());
    }

    /// Sends SIGKILL (no drain, no report: a crash or a power cut as the other side sees
    /// it) and waits for the process to be gone.
    pub fn kill(mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {} failed", self.id());
        if let Some(mut child) = self.child.take() {
            let out = child.wait().expect("wait for weir");
            eprintln!("--- {}: killed ({out})", self.what);
        }
    }

    /// Waits for the end; prints its standard error for the test log.
    pub fn finish(mut self) -> Output {
        let child = self.child.take().expect("not waited for yet");
        let out = child.wait_with_output().expect("wait for weir");
        eprintln!("--- {}:\n{}", self.what, stderr(&out));
        out
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Column `column` (0: the node's name) of `node`'s row in a `--stats` node table.
pub fn stat_of(stats: &str, node: &str, column: usize) -> u64 {
    stats
        .lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .and_then(|l| l.split_whitespace().nth(column))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no column {column} for `{node}` in {stats}"))
}

/// A question, then after a pause longer than the draft silence (200 ms) but shorter than
/// the turn's end (500 ms), more speech: "What is the capital of France? ... seven of
/// clubs". Returns the path of the 16 kHz WAV.
pub fn continued_utterance(dir: &std::path::Path) -> std::path::PathBuf {
    let (_, question) = read_wav(&data("synth/question_16k.wav"));
    let (_, more) = read_wav(&data("pocketsphinx/cards/003.wav"));
    // The question's speech ends at 1.78 s; 70 ms of its silence + 250 ms + the 100 ms
    // before the second clip's speech make a pause of about 420 ms.
    let mut samples: Vec<f32> = question[..29_600].to_vec();
    samples.extend(std::iter::repeat_n(0.0, 4_000));
    samples.extend_from_slice(&more);
    let path = dir.join("continued.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for s in samples {
        w.write_sample((s * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    path
}

/// The value of `series` (a metric name with its labels, e.g.
/// `weir_node_lost_total{node="up",kind="net.publish"}`) served by `weir run --metrics ADDR`,
/// or None while nothing answers there (the process is starting).
pub fn metric(addr: &str, series: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(str::trim))
        .and_then(|v| v.parse().ok())
}

/// The series of `name` for node `node` of kind `kind`, for [`metric`].
pub fn node_series(name: &str, node: &str, kind: &str) -> String {
    format!("{name}{{node=\"{node}\",kind=\"{kind}\"}}")
}

/// Polls `what` every 50 ms until it is true; fails with `why` after `seconds`.
pub fn wait_until(seconds: u64, why: &str, mut what: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !what() {
        assert!(std::time::Instant::now() < deadline, "{why}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The `lost` table of a `--stats` report: `node`'s count, 0 if it is not listed.
pub fn lost_of(stats: &str, node: &str) -> u64 {
    let mut lines = stats.lines().skip_while(|l| {
        let mut words = l.split_whitespace();
        !(words.next() == Some("node") && words.next() == Some("lost") && words.next().is_none())
    });
    lines.next();
    lines
        .take_while(|l| !l.trim().is_empty())
        .find(|l| l.split_whitespace().next() == Some(node))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
