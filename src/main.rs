//! `weir`: the launcher. Runs, checks, lists and draws graphs; all the work is in the
//! `weir-engine` and `weir-nodes` crates, this binary only wires them and reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_engine::graph::KindSwap;
use weir_engine::{Graph, GraphPlan, Loader, Override, Registry};

/// Real-time, on-device speech and language pipelines from YAML graphs.
#[derive(Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a graph until its sources end (or Ctrl-C, which drains what was captured).
    Run {
        /// Graph file.
        graph: PathBuf,
        /// Override an option: NODE.OPTION=VALUE (repeatable).
        #[arg(long = "set", value_name = "NODE.OPTION=VALUE")]
        set: Vec<Override>,
        /// Replay this WAV file through the graph's `audio.wav_file` source.
        #[arg(long, value_name = "FILE.wav")]
        input: Option<PathBuf>,
        /// Print per-node and per-edge statistics at the end.
        #[arg(long)]
        stats: bool,
        /// Write a Chrome trace (chrome://tracing, Perfetto) of every node's work.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
    },
    /// Validate a graph and report every problem.
    Check {
        /// Graph file.
        graph: PathBuf,
        /// Override an option: NODE.OPTION=VALUE (repeatable).
        #[arg(long = "set", value_name = "NODE.OPTION=VALUE")]
        set: Vec<Override>,
    },
    /// List node kinds with their ports and options, or describe one kind.
    Nodes {
        /// A kind name, e.g. audio.resample.
        kind: Option<String>,
    },
    /// Print a graph in Graphviz dot format.
    Dot {
        /// Graph file.
        graph: PathBuf,
    },
    /// List audio input and output devices with their supported configurations.
    Devices,
}

/// Exit status: the graph file or the command line is wrong.
const EXIT_BAD_GRAPH: u8 = 2;
/// Exit status: the graph failed while running.
const EXIT_RUNTIME: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let registry = registry();
    match cli.command {
        Command::Run {
            graph,
            set,
            input,
            stats,
            trace,
        } => run(
            &registry,
            &graph,
            set,
            input.as_deref(),
            stats,
            trace.as_deref(),
        ),
        Command::Check { graph, set } => match load(&registry, &graph, set, None) {
            Ok(plan) => {
                println!(
                    "{}: ok ({} nodes, {} edges)",
                    graph.display(),
                    plan.nodes.len(),
                    plan.edges.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Nodes { kind } => nodes(&registry, kind.as_deref()),
        Command::Dot { graph } => match load(&registry, &graph, Vec::new(), None) {
            Ok(plan) => {
                print!("{}", dot(&plan));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Devices => match weir_live::devices_report() {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        },
    }
}

/// Every node kind the launcher knows: built-in, model and live-audio nodes.
fn registry() -> Registry {
    let mut registry = weir_nodes::registry();
    weir_ml::register(&mut registry);
    weir_live::register(&mut registry);
    registry
}

/// Loads and validates a graph, printing every problem; `Err` carries the exit code.
///
/// With `--input`, the graph's only `audio.wav_file` node reads that file instead; a graph
/// without one but with a single `audio.capture` node gets the file in place of the
/// microphone, paced at real time.
fn load(
    registry: &Registry,
    path: &Path,
    set: Vec<Override>,
    input: Option<&Path>,
) -> Result<GraphPlan, ExitCode> {
    let mut loader = Loader::new(registry).overrides(set);
    if let Some(input) = input {
        match replay_swap(registry, path, input) {
            Ok(swap) => loader = loader.swap(swap),
            Err(msg) => {
                eprintln!("error: --input: {msg}");
                return Err(ExitCode::from(EXIT_BAD_GRAPH));
            }
        }
    }
    loader.load_file(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_BAD_GRAPH)
    })
}

/// The node that `--input FILE.wav` replaces: the only file source, or else the only
/// microphone.
fn replay_swap(registry: &Registry, path: &Path, input: &Path) -> Result<KindSwap, String> {
    let plan = Loader::new(registry)
        .load_file(path)
        .map_err(|e| format!("the graph does not load:\n{e}"))?;
    let of_kind = |kind: &str| -> Vec<&str> {
        plan.nodes
            .iter()
            .filter(|n| n.kind == kind)
            .map(|n| n.name.as_str())
            .collect()
    };
    let file = input.display().to_string();
    let (files, mics) = (of_kind("audio.wav_file"), of_kind("audio.capture"));
    let (node, realtime) = match (files.as_slice(), mics.as_slice()) {
        ([one], _) => (one.to_string(), None),
        ([], [one]) => (one.to_string(), Some(true)),
        ([], []) => {
            return Err(format!(
                "{} has no audio.wav_file or audio.capture node to replay into",
                path.display()
            ))
        }
        _ => {
            return Err(format!(
                "{} has several audio sources ({}); use --set NODE.path=FILE",
                path.display(),
                [files, mics].concat().join(", ")
            ))
        }
    };
    let mut options = vec![("path".to_string(), file.into())];
    if let Some(previous) = plan.nodes.iter().find(|n| n.name == node) {
        let realtime = realtime.map(Into::into).or_else(|| {
            previous
                .options
                .iter()
                .find(|(k, _)| *k == "realtime")
                .map(|(_, v)| v.clone())
        });
        if let Some(v) = realtime {
            options.push(("realtime".to_string(), v));
        }
        if let Some((_, v)) = previous.options.iter().find(|(k, _)| *k == "frame_ms") {
            options.push(("frame_ms".to_string(), v.clone()));
        }
    }
    Ok(KindSwap {
        node,
        kind: "audio.wav_file".into(),
        options,
    })
}

fn run(
    registry: &Registry,
    path: &Path,
    set: Vec<Override>,
    input: Option<&Path>,
    stats: bool,
    trace: Option<&Path>,
) -> ExitCode {
    let _guard = match init_tracing(trace) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_BAD_GRAPH);
        }
    };
    let plan = match load(registry, path, set, input) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let result = Graph::build(plan, registry).and_then(Graph::start);
    let running = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let stop = running.stop_handle();
    let mut interrupted = false;
    let handler = ctrlc::set_handler(move || {
        if interrupted {
            std::process::exit(130);
        }
        interrupted = true;
        eprintln!("\nstopping: draining what was already captured (Ctrl-C again to quit now)");
        stop.stop();
    });
    if let Err(e) = handler {
        tracing::warn!("cannot install the Ctrl-C handler: {e}");
    }
    let (report, error) = running.finish();
    if stats {
        eprint!("\n{}", report.table());
    }
    match error {
        None => ExitCode::SUCCESS,
        Some(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Logs to stderr (filter with `RUST_LOG`, default `warn`) and optionally to a Chrome trace.
fn init_tracing(trace: Option<&Path>) -> anyhow::Result<Option<tracing_chrome::FlushGuard>> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let (chrome, guard) = match trace {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create trace file `{}`", path.display()))?;
            let (layer, guard) = tracing_chrome::ChromeLayerBuilder::new()
                .writer(file)
                .include_args(true)
                .build();
            let layer = layer.with_filter(tracing_subscriber::filter::LevelFilter::DEBUG);
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(chrome)
        .init();
    Ok(guard)
}

fn nodes(registry: &Registry, kind: Option<&str>) -> ExitCode {
    match kind {
        Some(name) => match registry.get(name) {
            Some(k) => {
                print!("{}", k.describe());
                ExitCode::SUCCESS
            }
            None => {
                let hint = weir_engine::graph::closest(name, registry.names())
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                eprintln!("error: unknown node kind `{name}`{hint}");
                ExitCode::from(EXIT_BAD_GRAPH)
            }
        },
        None => {
            for k in registry.kinds() {
                println!("{}", k.describe());
            }
            ExitCode::SUCCESS
        }
    }
}

/// The graph in Graphviz dot format.
fn dot(plan: &GraphPlan) -> String {
    use std::fmt::Write;
    let mut s = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];\n",
        plan.name
    );
    for n in &plan.nodes {
        let _ = writeln!(s, "  \"{}\" [label=\"{}\\n{}\"];", n.name, n.name, n.kind);
    }
    for e in &plan.edges {
        let from = &plan.nodes[e.from_node].name;
        let to = &plan.nodes[e.to_node].name;
        let out_port = e.from_label.rsplit('.').next().unwrap_or("");
        let in_port = e.to_label.rsplit('.').next().unwrap_or("");
        let _ = writeln!(
            s,
            "  \"{from}\" -> \"{to}\" [label=\"{out_port} -> {in_port}\\n{} {}\"];",
            e.queue.size, e.queue.overflow
        );
    }
    s.push_str("}\n");
    s
}
