//! `weir`: the launcher. Runs, checks, lists and draws graphs; all the work is in the
//! `weir-engine` and `weir-nodes` crates, this binary only wires them and reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_engine::graph::KindSwap;
use weir_engine::{ClockKind, Graph, GraphPlan, Loader, Override, Registry, Role};

/// Real-time, on-device speech and language pipelines from YAML graphs.
#[derive(Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a graph until its sources end. Ctrl-C, SIGTERM or SIGHUP stop the sources and
    /// drain what was captured; a second signal ends at once (files are still finalized).
    Run {
        /// Graph file.
        graph: PathBuf,
        /// Override an option: NODE.OPTION=VALUE (repeatable).
        #[arg(long = "set", value_name = "NODE.OPTION=VALUE")]
        set: Vec<Override>,
        /// Replay this WAV file through the graph's recording source (e.g. `audio.wav_file`),
        /// or in place of its live source (e.g. `audio.capture`), paced like the device.
        #[arg(long, value_name = "FILE.wav")]
        input: Option<PathBuf>,
        /// The graph clock: `real`, or `virtual` (paced sources run as fast as the CPU
        /// allows, and every run gives the same output).
        #[arg(long, value_name = "real|virtual", default_value = "real")]
        clock: ClockKind,
        /// After a stop signal, how long to let the graph drain before ending it at once.
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0,
              value_parser = parse_drain_timeout)]
        drain_timeout: f64,
        /// Report a node that works on one packet, or a queue that stays full, longer than
        /// this (0: never).
        #[arg(long, value_name = "SECONDS", default_value_t = 30.0,
              value_parser = parse_drain_timeout)]
        watchdog: f64,
        /// Serve `/metrics` (Prometheus text format) and `/health` on this loopback address,
        /// e.g. 127.0.0.1:9464.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
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
    let registry = match registry() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match cli.command {
        Command::Run {
            graph,
            set,
            input,
            clock,
            drain_timeout,
            watchdog,
            metrics,
            stats,
            trace,
        } => run(
            &registry,
            &graph,
            set,
            input.as_deref(),
            RunSettings {
                clock,
                drain_timeout: Duration::from_secs_f64(drain_timeout),
                watchdog: (watchdog > 0.0).then(|| Duration::from_secs_f64(watchdog)),
                metrics,
                stats,
            },
            trace.as_deref(),
        ),
        Command::Check { graph, set } => match load(&registry, &graph, set, None) {
            Ok(plan) => {
                let queued: usize = plan.edges.iter().map(|e| e.queue.size).sum();
                println!(
                    "{}: ok ({} nodes, {} edges, {} interrupts; at most {queued} packets queued)",
                    graph.display(),
                    plan.nodes.len(),
                    plan.edges.len(),
                    plan.interrupts.len()
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

/// The longest drain a stop signal may allow, in seconds.
const MAX_DRAIN_SECS: f64 = 3600.0;

/// Seconds from the command line, within 0..=[`MAX_DRAIN_SECS`].
fn parse_drain_timeout(s: &str) -> Result<f64, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if (0.0..=MAX_DRAIN_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!("{secs} is outside 0..={MAX_DRAIN_SECS} seconds"))
    }
}

/// Every node kind the launcher knows: built-in, model, live-audio and network nodes.
fn registry() -> anyhow::Result<Registry> {
    let mut registry = weir_nodes::registry()?;
    weir_ml::register(&mut registry)?;
    weir_live::register(&mut registry)?;
    weir_net::register(&mut registry)?;
    Ok(registry)
}

/// Loads and validates a graph, printing every problem; `Err` carries the exit code.
///
/// With `--input`, the graph's only `audio.wav_file` node reads that file instead; a graph
/// without one but with a single `audio.capture` node gets the file in place of the
/// microphone, paced at real time, and its speakers (`audio.playback`) write
/// `${WEIR_OUT:-out}/NODE.wav` instead of playing.
fn load(
    registry: &Registry,
    path: &Path,
    set: Vec<Override>,
    input: Option<&Path>,
) -> Result<GraphPlan, ExitCode> {
    let mut loader = Loader::new(registry).overrides(set);
    if let Some(input) = input {
        match replay_swaps(registry, path, input) {
            Ok(swaps) => {
                for swap in swaps {
                    loader = loader.swap(swap);
                }
            }
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

/// The nodes that `--input FILE.wav` replaces: the only recording source (its file is
/// swapped), or else the only live source (replaced by the recording kind with the same
/// output type, paced like the device) and then also every live output (replaced by the
/// writer kind with the same input type). Kinds declare these roles; nothing here knows
/// their names.
fn replay_swaps(registry: &Registry, path: &Path, input: &Path) -> Result<Vec<KindSwap>, String> {
    let plan = Loader::new(registry)
        .load_file(path)
        .map_err(|e| format!("the graph does not load:\n{e}"))?;
    let with_role = |want: fn(Role) -> bool| -> Vec<usize> {
        (0..plan.nodes.len())
            .filter(|&i| {
                registry
                    .get(&plan.nodes[i].kind)
                    .is_some_and(|k| want(k.role))
            })
            .collect()
    };
    let recordings = with_role(|r| matches!(r, Role::Recording { .. }));
    let lives = with_role(|r| r == Role::Live);
    let outputs = if recordings.is_empty() && lives.len() == 1 {
        with_role(|r| r == Role::LiveOutput)
    } else {
        Vec::new()
    };
    let file: serde_json::Value = input.display().to_string().into();
    let (node, kind, options) = match (recordings.as_slice(), lives.as_slice()) {
        ([one], _) => {
            let previous = &plan.nodes[*one];
            let kind = registry
                .get(&previous.kind)
                .ok_or_else(|| format!("unknown kind `{}`", previous.kind))?;
            let Role::Recording {
                path: path_option, ..
            } = kind.role
            else {
                unreachable!("filtered on the recording role");
            };
            let mut options: Vec<(String, serde_json::Value)> = previous
                .options
                .iter()
                .filter(|(k, _)| *k != path_option)
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            options.push((path_option.to_string(), file));
            (previous.name.clone(), kind.name, options)
        }
        ([], [one]) => {
            let live = &plan.nodes[*one];
            let live_kind = registry
                .get(&live.kind)
                .ok_or_else(|| format!("unknown kind `{}`", live.kind))?;
            let ty = live_kind
                .outputs
                .first()
                .map(|p| p.ty)
                .ok_or_else(|| format!("`{}` has no output to replay", live.name))?;
            let kind = registry.recording_kind(ty).ok_or_else(|| {
                format!(
                    "no node kind can replay a file of {ty} in place of `{}`",
                    live.name
                )
            })?;
            let Role::Recording {
                path: path_option,
                realtime,
            } = kind.role
            else {
                unreachable!("recording_kind returns recording kinds");
            };
            let mut options = vec![
                (path_option.to_string(), file),
                (realtime.to_string(), true.into()),
            ];
            options.extend(
                live.options
                    .iter()
                    .filter(|(k, _)| *k != path_option && *k != realtime)
                    .filter(|(k, _)| kind.option_spec(k).is_some())
                    .map(|(k, v)| (k.to_string(), v.clone())),
            );
            (live.name.clone(), kind.name, options)
        }
        ([], []) => {
            return Err(format!(
                "{} has no recording or live source to replay into",
                path.display()
            ))
        }
        _ => {
            let names: Vec<&str> = recordings
                .iter()
                .chain(&lives)
                .map(|&i| plan.nodes[i].name.as_str())
                .collect();
            return Err(format!(
                "{} has several sources to replay into ({}); use --set NODE.path=FILE",
                path.display(),
                names.join(", ")
            ));
        }
    };
    let mut swaps = vec![KindSwap {
        node,
        kind: kind.to_string(),
        options,
    }];
    let out_dir = std::env::var_os("WEIR_OUT").unwrap_or_else(|| "out".into());
    if !outputs.is_empty() {
        std::fs::create_dir_all(&out_dir).map_err(|e| {
            format!(
                "cannot create {} for the speakers' files: {e}",
                Path::new(&out_dir).display()
            )
        })?;
    }
    for i in outputs {
        let live = &plan.nodes[i];
        let ty = registry
            .get(&live.kind)
            .and_then(|k| k.inputs.first())
            .map(|p| p.ty)
            .ok_or_else(|| format!("`{}` has no input to write", live.name))?;
        let kind = registry.writer_kind(ty).ok_or_else(|| {
            format!(
                "no node kind can write {ty} to a file in place of `{}`",
                live.name
            )
        })?;
        let Role::Writer {
            path: path_option,
            extension,
        } = kind.role
        else {
            unreachable!("writer_kind returns writer kinds");
        };
        let file = Path::new(&out_dir).join(format!("{}.{extension}", live.name));
        eprintln!(
            "replay: `{}` writes {} instead of playing",
            live.name,
            file.display()
        );
        swaps.push(KindSwap {
            node: live.name.clone(),
            kind: kind.name.to_string(),
            options: vec![(path_option.to_string(), file.display().to_string().into())],
        });
    }
    Ok(swaps)
}

/// How `weir run` runs a graph.
struct RunSettings {
    clock: ClockKind,
    drain_timeout: Duration,
    watchdog: Option<Duration>,
    metrics: Option<std::net::SocketAddr>,
    stats: bool,
}

fn run(
    registry: &Registry,
    path: &Path,
    set: Vec<Override>,
    input: Option<&Path>,
    settings: RunSettings,
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
    if let Some(addr) = settings.metrics {
        if !addr.ip().is_loopback() {
            eprintln!(
                "error: --metrics {addr}: serve metrics on a loopback address (127.0.0.1 or \
                 [::1]); they have no authentication"
            );
            return ExitCode::from(EXIT_BAD_GRAPH);
        }
    }
    let result = Graph::build(plan, registry).and_then(|g| {
        let g = g.with_clock(settings.clock);
        match settings.watchdog {
            Some(limit) => g.with_watchdog(limit),
            None => g,
        }
        .start()
    });
    let running = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    if let Some(addr) = settings.metrics {
        if let Err(e) = serve_metrics(addr, running.monitor()) {
            eprintln!("error: {e:#}");
            running.stop_handle().abort();
            let _ = running.finish();
            return ExitCode::from(EXIT_RUNTIME);
        }
    }
    let stop = running.stop_handle();
    let signals = Arc::new(AtomicUsize::new(0));
    let seen = signals.clone();
    let drain = settings.drain_timeout;
    let handler = ctrlc::set_handler(move || match seen.fetch_add(1, Ordering::SeqCst) {
        0 => {
            eprintln!(
                "\nstopping: draining what was already captured (at most {:.1} s; \
                 signal again to end now)",
                drain.as_secs_f64()
            );
            stop.stop();
            let stop = stop.clone();
            let seen = seen.clone();
            std::thread::spawn(move || {
                std::thread::sleep(drain);
                if seen.load(Ordering::SeqCst) == 1 {
                    eprintln!(
                        "stopping: the graph did not drain within {:.1} s; ending now \
                         (files are finalized)",
                        drain.as_secs_f64()
                    );
                    stop.abort();
                }
            });
        }
        1 => {
            eprintln!("\nending now: dropping queued work, finalizing files (again to quit)");
            stop.abort();
        }
        _ => std::process::exit(130),
    });
    if let Err(e) = handler {
        tracing::warn!("cannot install the signal handler: {e}");
    }
    let (report, error) = running.finish();
    if settings.stats {
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

/// Serves `/metrics` (Prometheus text format 0.0.4) and `/health` on `addr` from a thread
/// of its own, for as long as the process lives.
fn serve_metrics(addr: std::net::SocketAddr, monitor: weir_engine::Monitor) -> anyhow::Result<()> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    std::thread::Builder::new()
        .name("weir:metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let (status, body, kind) = match request.url() {
                    "/metrics" => (
                        200,
                        monitor.report().prometheus(),
                        "text/plain; version=0.0.4; charset=utf-8",
                    ),
                    "/health" if monitor.is_running() => (200, "ok\n".into(), "text/plain"),
                    "/health" => (503, "ended\n".into(), "text/plain"),
                    _ => (
                        404,
                        "not found: try /metrics or /health\n".into(),
                        "text/plain",
                    ),
                };
                let header = tiny_http::Header::from_bytes("Content-Type", kind)
                    .expect("a static header is valid");
                let response = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(header);
                let _ = request.respond(response);
            }
        })
        .context("cannot start the metrics thread")?;
    Ok(())
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
        // A back edge is drawn dotted and does not rank the nodes (it closes a loop).
        let back = if e.back {
            ", style=dotted, constraint=false"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  \"{from}\" -> \"{to}\" [label=\"{out_port} -> {in_port}\\n{} {}\"{back}];",
            e.queue.size, e.queue.overflow
        );
    }
    for i in &plan.interrupts {
        let from = &plan.nodes[i.trigger_node].name;
        let to = &plan.nodes[i.target].name;
        let port = i.label.rsplit('.').next().unwrap_or("");
        let _ = writeln!(
            s,
            "  \"{from}\" -> \"{to}\" [style=dashed, color=red, label=\"{port}: interrupt\"];"
        );
    }
    s.push_str("}\n");
    s
}
