//! A YAML value that remembers where each of its parts was written.
//!
//! `with:` is the plugin's own configuration, so its shape is only known once
//! the plugin describes itself; its check (against the plugin's JSON Schema)
//! reports a JSON pointer. Reading `with:` as a [`Node`] keeps a position for
//! every key and value, so such an error can still point at file:line:col.

use super::Pos;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use std::collections::HashMap;

/// A YAML value with positions on every key and value inside it.
#[derive(Debug, Clone)]
pub enum Node {
    Scalar(Value),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

/// Where the parts of a value were written, by JSON pointer (`/from`,
/// `/extensions/0`; the empty pointer is the whole value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl Positions {
    /// Where the value at `pointer` was written.
    pub fn value(&self, pointer: &str) -> Option<Pos> {
        self.values.get(pointer).copied()
    }

    /// Where the key of the entry at `pointer` was written (the value's
    /// position for a list item or the whole value).
    pub fn key(&self, pointer: &str) -> Option<Pos> {
        self.keys
            .get(pointer)
            .or_else(|| self.values.get(pointer))
            .copied()
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl Node {
    /// The plain JSON value and the positions of its parts.
    pub fn to_json(node: &Spanned<Node>) -> (Value, Positions) {
        let mut positions = Positions::default();
        let value = walk(node, String::new(), &mut positions);
        (value, positions)
    }
}

fn walk(node: &Spanned<Node>, pointer: String, positions: &mut Positions) -> Value {
    let value = match &node.value {
        Node::Scalar(v) => v.clone(),
        Node::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| walk(item, format!("{pointer}/{i}"), positions))
                .collect(),
        ),
        Node::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let child = format!("{pointer}/{}", pointer_segment(&key.value));
                positions.keys.insert(child.clone(), key.referenced.into());
                map.insert(key.value.clone(), walk(value, child, positions));
            }
            Value::Object(map)
        }
    };
    positions.values.insert(pointer, node.referenced.into());
    value
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_and_value_keeps_its_position() {
        #[derive(serde::Deserialize)]
        struct Doc {
            with: Spanned<Node>,
        }
        let doc: Doc = serde_saphyr::from_str(
            "with:\n  from: analyse\n  extensions: [csv, json]\n  nested:\n    a/b: 1\n",
        )
        .expect("parses");
        let (value, at) = Node::to_json(&doc.with);
        assert_eq!(
            value,
            serde_json::json!({"from": "analyse", "extensions": ["csv", "json"], "nested": {"a/b": 1}})
        );
        let lc = |p: Option<Pos>| p.map(|p| (p.line, p.column));
        assert_eq!(lc(at.key("/from")), Some((2, 3)));
        assert_eq!(lc(at.value("/from")), Some((2, 9)));
        assert_eq!(lc(at.value("/extensions/1")), Some((3, 21)));
        assert_eq!(lc(at.key("/nested/a~1b")), Some((5, 5)));
        assert_eq!(at.value("/from").map(|p| p.len), Some(7));
    }
}
