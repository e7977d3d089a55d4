//! The graph file as written: raw serde structures that keep every key's and value's
//! position. Unknown keys are collected, not fatal, so that validation can report them all
//! together with suggestions. Only [`super::validate`] turns this into a runnable plan.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

/// A string with its position in the file.
pub(crate) type SpannedStr = Spanned<String>;

/// A YAML mapping in file order, duplicates kept (the validator reports them).
pub(crate) struct Pairs<K, V>(pub Vec<(K, V)>);

impl<K, V> Default for Pairs<K, V> {
    fn default() -> Self {
        Pairs(Vec::new())
    }
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Pairs<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<K, V> {
            type Value = Pairs<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Pairs::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key()? {
                    out.push((k, map.next_value()?));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(PairsVisitor(PhantomData))
    }
}

/// Implements `Deserialize` for a struct whose fields are read by key, with unknown keys
/// collected into its `unknown` field instead of failing.
macro_rules! lenient_struct {
    ($ty:ident, $what:literal, { $($key:literal => $field:ident),* $(,)? }) => {
        impl $ty {
            /// The keys this mapping accepts.
            pub(crate) const KEYS: &'static [&'static str] = &[$($key),*];
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        let mut out = $ty::default();
                        while let Some(key) = map.next_key::<SpannedStr>()? {
                            match key.value.as_str() {
                                $($key => out.$field = map.next_value()?,)*
                                _ => {
                                    map.next_value::<IgnoredAny>()?;
                                    out.unknown.push(key);
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

/// The whole file.
#[derive(Default)]
pub(crate) struct RawGraph {
    pub graph: Option<SpannedStr>,
    pub description: Option<String>,
    pub defaults: Option<Spanned<RawQueue>>,
    pub nodes: Option<Spanned<Pairs<SpannedStr, Spanned<RawNode>>>>,
    pub unknown: Vec<SpannedStr>,
}

lenient_struct!(RawGraph, "a graph: a mapping with `graph`, `nodes`, ...", {
    "graph" => graph, "description" => description, "defaults" => defaults, "nodes" => nodes,
});

/// One entry under `nodes:`.
#[derive(Default)]
pub(crate) struct RawNode {
    pub node: Option<SpannedStr>,
    pub inputs: Pairs<SpannedStr, SpannedStr>,
    /// Inputs fed by back edges (`back: { port: node.output }`): they close a loop.
    pub back: Pairs<SpannedStr, SpannedStr>,
    /// Queue settings of the back edges (default: the node's size, `drop_oldest`).
    pub back_queue: Option<Spanned<RawQueue>>,
    pub with: Pairs<SpannedStr, Spanned<Value>>,
    pub queue: Option<Spanned<RawQueue>>,
    pub interrupt: Option<SpannedStr>,
    pub merge_wait_ms: Option<Spanned<f64>>,
    pub on_error: Option<SpannedStr>,
    pub unknown: Vec<SpannedStr>,
}

lenient_struct!(RawNode, "a node: a mapping with `node`, `in`, `with`, `queue`, `interrupt`", {
    "node" => node, "in" => inputs, "back" => back, "back_queue" => back_queue, "with" => with,
    "queue" => queue, "interrupt" => interrupt, "merge_wait_ms" => merge_wait_ms, "on_error" => on_error,
});

/// Queue settings: under `defaults:` (`queue` is the size there) or a node's `queue:`.
#[derive(Default)]
pub(crate) struct RawQueue {
    pub queue: Option<Spanned<u64>>,
    pub size: Option<Spanned<u64>>,
    pub overflow: Option<SpannedStr>,
    pub unknown: Vec<SpannedStr>,
}

lenient_struct!(RawQueue, "queue settings: a mapping with `size` and `overflow`", {
    "queue" => queue, "size" => size, "overflow" => overflow,
});

/// Parses graph text into the raw form.
pub(crate) fn parse(text: &str) -> Result<RawGraph, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
    };
    serde_saphyr::from_str_with_options(text, options)
}
