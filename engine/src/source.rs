//! YAML source with positions: parses a file into a JSON value plus an index from
//! each node's JSON pointer to where it stands in the file, so that every later
//! check (schema, semantics) can point at the exact line and column.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diagnostic::{Code, Diagnostic, FileId, Span};

/// A parsed YAML document: its JSON value and where each node came from.
#[derive(Debug, Clone)]
pub struct Document {
    /// The document as JSON (YAML 1.2 core schema for plain scalars).
    pub value: Value,
    spans: HashMap<String, NodeSpans>,
}

#[derive(Debug, Clone, Copy)]
struct NodeSpans {
    key: Option<Span>,
    value: Span,
}

impl Document {
    /// The span of the value at `pointer` (a JSON pointer such as `/map/dealstage/to`),
    /// or of its nearest ancestor that has one.
    pub fn value_span(&self, pointer: &str) -> Span {
        self.lookup(pointer).value
    }

    /// The span of the key that introduces `pointer`, falling back to the value span
    /// for list items and the root.
    pub fn key_span(&self, pointer: &str) -> Span {
        let spans = self.lookup(pointer);
        match spans.key {
            Some(key) => key,
            // The root has no key: point at its first key, not at all of it.
            None if pointer.is_empty() => self
                .spans
                .iter()
                .filter(|(p, _)| p.matches('/').count() == 1)
                .filter_map(|(_, s)| s.key)
                .min_by_key(|s| s.start)
                .unwrap_or(Span::new(spans.value.start, spans.value.start + 1)),
            None => spans.value,
        }
    }

    fn lookup(&self, pointer: &str) -> NodeSpans {
        let mut p = pointer;
        loop {
            if let Some(s) = self.spans.get(p) {
                return *s;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => {
                    return NodeSpans {
                        key: None,
                        value: Span::default(),
                    };
                }
            }
        }
    }
}

/// Appends one JSON-pointer segment, escaped as RFC 6901 requires.
pub fn pointer_join(base: &str, segment: &str) -> String {
    let mut out = String::with_capacity(base.len() + 1 + segment.len());
    out.push_str(base);
    out.push('/');
    for c in segment.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

/// Parses `text` as one YAML document. Syntax errors and duplicate keys come back as
/// diagnostics; a document with a syntax error has no value.
pub fn parse(file: FileId, text: &str) -> (Option<Document>, Vec<Diagnostic>) {
    let lines = LineStarts::new(text);
    let mut sink = Sink::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut sink, false) {
        let at = lines.offset(text, *e.marker());
        let message = e.info().trim_end_matches('.').to_string();
        return (
            None,
            vec![
                Diagnostic::error(Code::YamlSyntax, format!("invalid YAML: {message}"))
                    .at(file, Span::new(at, at + 1))
                    .with_help("look above this point for an unclosed bracket or quote, or a line indented differently from its neighbours"),
            ],
        );
    }
    let mut builder = Builder {
        text,
        lines: &lines,
        events: sink.events,
        pos: 0,
        anchors: HashMap::new(),
        file,
        diagnostics: Vec::new(),
    };
    // Skip StreamStart / DocumentStart; an empty file is an empty mapping.
    while matches!(
        builder.peek(),
        Some(Event::StreamStart | Event::DocumentStart)
    ) {
        builder.pos += 1;
    }
    let root = match builder.peek() {
        None | Some(Event::StreamEnd | Event::DocumentEnd) => Node {
            kind: NodeKind::Map(Vec::new()),
            span: Span::default(),
        },
        _ => builder.node(),
    };
    let mut spans = HashMap::new();
    let value = to_json(&root, String::new(), None, &mut spans);
    (Some(Document { value, spans }), builder.diagnostics)
}

#[derive(Default)]
struct Sink {
    events: Vec<(Event, Marker)>,
}

impl MarkedEventReceiver for Sink {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.events.push((ev, mark));
    }
}

#[derive(Debug, Clone)]
struct Node {
    kind: NodeKind,
    span: Span,
}

#[derive(Debug, Clone)]
enum NodeKind {
    Scalar { text: String, plain: bool },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

struct Builder<'a> {
    text: &'a str,
    lines: &'a LineStarts,
    events: Vec<(Event, Marker)>,
    pos: usize,
    anchors: HashMap<usize, Node>,
    file: FileId,
    diagnostics: Vec<Diagnostic>,
}

impl Builder<'_> {
    fn peek(&self) -> Option<&Event> {
        self.events.get(self.pos).map(|(e, _)| e)
    }

    fn node(&mut self) -> Node {
        let (event, mark) = self.events[self.pos].clone();
        self.pos += 1;
        let start = self.lines.offset(self.text, mark);
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let mut end = scalar_end(self.text, start, &text, style);
                if matches!(style, TScalarStyle::Literal | TScalarStyle::Folded) {
                    // A block scalar runs until the next node, less trailing blank lines.
                    if let Some((_, next)) = self.events.get(self.pos) {
                        let next = self.lines.offset(self.text, *next).max(start);
                        end = start + self.text[start..next].trim_end().len().max(1);
                    }
                }
                let forced_string = tag.is_some_and(|t| t.handle == "!!" && t.suffix == "str");
                let plain = style == TScalarStyle::Plain && !forced_string;
                (
                    Node {
                        kind: NodeKind::Scalar { text, plain },
                        span: Span::new(start, end),
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                // The alias stands where it is written; what it holds keeps the
                // anchor's positions (errors inside point at the definition).
                let len = self.text[start..]
                    .find(|c: char| c.is_whitespace() || matches!(c, ',' | ']' | '}'))
                    .unwrap_or(self.text.len() - start);
                let node = self.anchors.get(&id).cloned().map(|mut n| {
                    n.span = Span::new(start, start + len.max(1));
                    n
                });
                let node = node.unwrap_or(Node {
                    kind: NodeKind::Scalar {
                        text: String::new(),
                        plain: true,
                    },
                    span: Span::new(start, start + 1),
                });
                return node;
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                while !matches!(self.peek(), Some(Event::SequenceEnd) | None) {
                    items.push(self.node());
                }
                let end = self.collection_end(start, items.last().map(|n| n.span.end), ']');
                self.pos += 1;
                (
                    Node {
                        kind: NodeKind::Seq(items),
                        span: Span::new(start, end),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(Node, Node)> = Vec::new();
                let mut merged: Vec<(Node, Node)> = Vec::new();
                while !matches!(self.peek(), Some(Event::MappingEnd) | None) {
                    let key = self.node();
                    let value = self.node();
                    self.push_entry(&mut entries, &mut merged, key, value);
                }
                // Merged entries stand elsewhere in the file: the end is that of the
                // entries written here.
                let end = self.collection_end(start, entries.last().map(|(_, v)| v.span.end), '}');
                self.pos += 1;
                // Keys written in the mapping itself win over merged ones.
                for (k, v) in merged {
                    if !entries.iter().any(|(e, _)| same_key(e, &k)) {
                        entries.push((k, v));
                    }
                }
                (
                    Node {
                        kind: NodeKind::Map(entries),
                        span: Span::new(start, end),
                    },
                    anchor,
                )
            }
            other => unreachable!("the YAML parser emitted {other:?} where a node belongs"),
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        node
    }

    /// Where a collection ends: after its closing bracket when it is a flow
    /// collection, else at the end of its last item.
    fn collection_end(&self, start: usize, last_item_end: Option<usize>, close: char) -> usize {
        if let Some((_, mark)) = self.events.get(self.pos) {
            let at = self.lines.offset(self.text, *mark);
            if self.text[at..].starts_with(close) {
                return at + 1;
            }
        }
        last_item_end.unwrap_or(start + 1)
    }

    fn push_entry(
        &mut self,
        entries: &mut Vec<(Node, Node)>,
        merged: &mut Vec<(Node, Node)>,
        key: Node,
        value: Node,
    ) {
        let key_text = match &key.kind {
            NodeKind::Scalar { text, .. } => text.clone(),
            _ => {
                self.diagnostics.push(
                    Diagnostic::error(Code::YamlSyntax, "mapping keys must be plain strings")
                        .at(self.file, key.span),
                );
                return;
            }
        };
        // YAML merge key: `<<: *defaults` copies the entries not given here.
        if key_text == "<<" {
            let sources = match value.kind {
                NodeKind::Map(_) => vec![value],
                NodeKind::Seq(items) => items,
                NodeKind::Scalar { .. } => Vec::new(),
            };
            for source in sources {
                if let NodeKind::Map(from) = source.kind {
                    for (k, v) in from {
                        if !merged.iter().any(|(e, _)| same_key(e, &k)) {
                            merged.push((k, v));
                        }
                    }
                }
            }
            return;
        }
        if let Some((first, _)) = entries.iter().find(|(e, _)| same_key(e, &key)) {
            let line = self.lines.line_of(first.span.start);
            self.diagnostics.push(
                Diagnostic::error(Code::DuplicateKey, format!("duplicate key `{key_text}`"))
                    .at(self.file, key.span)
                    .with_help(format!(
                        "`{key_text}` is already set on line {line}; YAML keeps only one, so remove or rename this one"
                    )),
            );
            return;
        }
        entries.push((key, value));
    }
}

fn same_key(a: &Node, b: &Node) -> bool {
    matches!((&a.kind, &b.kind),
        (NodeKind::Scalar { text: x, .. }, NodeKind::Scalar { text: y, .. }) if x == y)
}

/// Where a scalar ends in the source: the closing quote of a quoted scalar, the raw
/// text of a plain one, or the end of the line for block scalars and anything the
/// source does not spell out verbatim.
fn scalar_end(text: &str, start: usize, value: &str, style: TScalarStyle) -> usize {
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let rest = &text[start..line_end];
    let end = match style {
        TScalarStyle::Plain if rest.starts_with(value) && !value.is_empty() => start + value.len(),
        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
            let quote = if style == TScalarStyle::SingleQuoted {
                '\''
            } else {
                '"'
            };
            rest.char_indices()
                .skip(1)
                .find(|&(_, c)| c == quote)
                .map_or(line_end, |(i, _)| start + i + 1)
        }
        _ => line_end,
    };
    end.max(start + 1).min(text.len().max(start + 1))
}

/// Converts a node to JSON, recording spans under each node's pointer.
fn to_json(
    node: &Node,
    pointer: String,
    key: Option<Span>,
    spans: &mut HashMap<String, NodeSpans>,
) -> Value {
    let value = match &node.kind {
        NodeKind::Scalar { text, plain } => {
            if *plain {
                resolve_plain(text)
            } else {
                Value::String(text.clone())
            }
        }
        NodeKind::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| to_json(n, format!("{pointer}/{i}"), None, spans))
                .collect(),
        ),
        NodeKind::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let NodeKind::Scalar { text, .. } = &k.kind else {
                    continue;
                };
                let child = pointer_join(&pointer, text);
                map.insert(text.clone(), to_json(v, child, Some(k.span), spans));
            }
            Value::Object(map)
        }
    };
    spans.insert(
        pointer,
        NodeSpans {
            key,
            value: node.span,
        },
    );
    value
}

/// Resolves a plain scalar by the YAML 1.2 core schema. `yes`, `no`, `on` and `off`
/// stay strings (they are booleans only in YAML 1.1, a classic trap in `on:` keys).
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let int_like = text
        .strip_prefix(['-', '+'])
        .unwrap_or(text)
        .chars()
        .all(|c| c.is_ascii_digit());
    if int_like && let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Number(i.into());
    }
    let float_like = text.chars().any(|c| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if float_like && let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

/// Byte offsets of line starts, to turn the parser's line/column markers into offsets.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineStarts(starts)
    }

    /// The parser counts lines from 1 and columns in characters from 0.
    fn offset(&self, text: &str, mark: Marker) -> usize {
        let line = mark.line().max(1) - 1;
        let Some(&start) = self.0.get(line) else {
            return text.len();
        };
        let end = self.0.get(line + 1).copied().unwrap_or(text.len());
        text[start..end]
            .char_indices()
            .nth(mark.col())
            .map_or(end, |(i, _)| start + i)
    }

    fn line_of(&self, offset: usize) -> usize {
        self.0.partition_point(|&s| s <= offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointer_segments_are_escaped_as_rfc_6901_says() {
        assert_eq!(pointer_join("/map", "dealname"), "/map/dealname");
        assert_eq!(pointer_join("/map", "a/b~c"), "/map/a~1b~0c");
        assert_eq!(pointer_join("", "~1"), "/~01");
    }

    fn doc(text: &str) -> Document {
        let (doc, diags) = parse(FileId(0), text);
        assert!(diags.is_empty(), "{diags:?}");
        doc.unwrap()
    }

    #[test]
    fn plain_scalars_follow_yaml_1_2_core_schema() {
        let d = doc("on: deal.creation\nyes: no\nn: 15\nf: 0.5\nq: '15'\nt: true\nz: ~\n");
        assert_eq!(
            d.value,
            json!({"on": "deal.creation", "yes": "no", "n": 15, "f": 0.5, "q": "15", "t": true, "z": null})
        );
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let text = "pack: x\nmap:\n  dealstage:\n    to: LifeCycle.Stag\n";
        let d = doc(text);
        let key = d.key_span("/map/dealstage/to");
        assert_eq!(&text[key.start..key.end], "to");
        let value = d.value_span("/map/dealstage/to");
        assert_eq!(&text[value.start..value.end], "LifeCycle.Stag");
    }

    #[test]
    fn spans_handle_multibyte_text_before_the_node() {
        let text = "title: \"🎯 Score\"\nbody: x\n";
        let d = doc(text);
        let v = d.value_span("/title");
        assert_eq!(&text[v.start..v.end], "\"🎯 Score\"");
        let b = d.key_span("/body");
        assert_eq!(&text[b.start..b.end], "body");
    }

    #[test]
    fn block_scalars_span_all_their_lines() {
        let text = "a: |\n  one\n  two\nb: 1\n";
        let d = doc(text);
        let v = d.value_span("/a");
        assert!(
            text[v.start..v.end].ends_with("two"),
            "{:?}",
            &text[v.start..v.end]
        );
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_second_key() {
        let text = "a: 1\nb: 2\na: 3\n";
        let (_, diags) = parse(FileId(0), text);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, Code::DuplicateKey);
        assert_eq!(diags[0].span.unwrap().start, 10);
    }

    #[test]
    fn anchors_and_merge_keys_expand() {
        let d = doc("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n");
        assert_eq!(d.value["other"], json!({"y": 3, "x": 1}));
        assert_eq!(d.value["base"], json!({"x": 1, "y": 2}));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let (doc, diags) = parse(FileId(0), "a: [1, 2\nb: 3\n");
        assert!(doc.is_none());
        assert_eq!(diags[0].code, Code::YamlSyntax);
    }
}
