//! The node from README.md's "Write a node", compiled and run: `text.upper` turns text to
//! capitals, tested with the single-node harness on the virtual clock.
//!
//! `cargo run --example write_a_node`

use serde::Deserialize;
use weir_engine::testing::NodeRunner;
use weir_engine::{
    Config, Context, Incoming, Input, NodeError, NodeKind, OptionSpec, OptionType, Output, Packet,
    Ports, Processor, Timestamp,
};
use weir_media::Text;

/// Options of `text.upper`.
#[derive(Deserialize)]
struct UpperConfig {
    /// Keep this many leading characters as they are.
    keep: usize,
}

impl Config for UpperConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default("keep", OptionType::Int, 0, "characters left as they are")
                .range(0.0, 1000.0),
        ]
    }
}

struct Upper {
    input: Input<Text>,
    output: Output<Text>,
    keep: usize,
}

fn ports(p: &mut Ports) -> (Input<Text>, Output<Text>) {
    (
        p.input("in", "text"),
        p.output("out", "the text in capitals"),
    )
}

impl Processor for Upper {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let text = self.input.expect(&input)?;
        let (head, tail) = text.text.split_at(
            text.text
                .char_indices()
                .nth(self.keep)
                .map_or(text.text.len(), |(i, _)| i),
        );
        let upper = Text {
            text: format!("{head}{}", tail.to_uppercase()).into(),
            ..text.clone()
        };
        ctx.send(self.output, input.timestamp(), upper)
    }
}

fn kind() -> NodeKind {
    NodeKind::processor(
        "text.upper",
        "Text in capitals.",
        ports,
        |c: UpperConfig, (input, output)| {
            Ok(Upper {
                input,
                output,
                keep: c.keep,
            })
        },
    )
}

fn main() {
    let text = |s: &str| Text {
        text: s.into(),
        start: Timestamp::ZERO,
        end: Timestamp::ZERO,
    };
    let out = NodeRunner::new(kind())
        .option("keep", 3)
        .feed("in", [Packet::new(Timestamp::ZERO, text("hello weir"))])
        .run()
        .expect("run text.upper");
    let got: Vec<&str> = out.values::<Text>("out").iter().map(|t| &*t.text).collect();
    assert_eq!(got, ["helLO WEIR"]);
    println!("{}", got[0]);
}
