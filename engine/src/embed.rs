//! Positions inside text embedded in YAML (Rhai scripts, templates): maps a line and
//! column inside the parsed scalar back to a byte offset in the file, so an error in
//! line 3 of a `|` block points at that line of the pack.

use crate::diagnostic::Span;

/// The file offset of `line` (from 1) and `col` (characters, from 0) inside the
/// scalar whose value span is `span`.
pub fn offset(text: &str, span: Span, line: usize, col: usize) -> usize {
    let start = span.start.min(text.len());
    let head = &text[start..];
    let line = line.max(1);
    if let Some(indent) = block_content_indent(text, start) {
        // The parser marks a block scalar at its first content line.
        let line_start = start - indent;
        let mut at = line_start;
        for _ in 1..line {
            match text[at..].find('\n') {
                Some(i) => at += i + 1,
                None => break,
            }
        }
        return column(text, at + indent_of(text, at, indent), col);
    }
    if head.starts_with('|') || head.starts_with('>') {
        // A block scalar: content starts on the line after the header, indented.
        let Some(nl) = head.find('\n') else {
            return start;
        };
        let body_start = start + nl + 1;
        let body = &text[body_start..];
        let indent = body
            .lines()
            .find(|l| !l.trim().is_empty())
            .map_or(0, |l| l.len() - l.trim_start_matches(' ').len());
        let mut line_start = body_start;
        for _ in 1..line {
            match text[line_start..].find('\n') {
                Some(i) => line_start += i + 1,
                None => break,
            }
        }
        return column(text, line_start + indent_of(text, line_start, indent), col);
    }
    let quoted = head.starts_with('"') || head.starts_with('\'');
    if line == 1 {
        column(text, start + usize::from(quoted), col)
    } else {
        start
    }
}

/// A span of `len` characters at `line`/`col` inside the scalar at `span`, clipped to
/// its line.
pub fn span(text: &str, scalar: Span, line: usize, col: usize, len: usize) -> Span {
    let mut from = offset(text, scalar, line, col);
    let end_of_line = text[from..].find('\n').map_or(text.len(), |i| from + i);
    if from == end_of_line && from > scalar.start {
        // Past the end of the text (an unfinished expression): point at its last character.
        let trimmed = text[scalar.start.min(from)..from].trim_end();
        from = scalar.start.min(from) + trimmed.char_indices().next_back().map_or(0, |(i, _)| i);
    }
    let to = text[from..end_of_line]
        .char_indices()
        .nth(len.max(1))
        .map_or(end_of_line, |(i, _)| from + i);
    Span::new(from, to.max(from + 1).min(text.len().max(from + 1)))
}

/// Line and column (characters, from 0) of a byte offset inside `value`.
pub fn line_col(value: &str, byte: usize) -> (usize, usize) {
    let byte = byte.min(value.len());
    let before = &value[..byte];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
    (line, col)
}

/// When `start` is the first content character of a `|` or `>` block scalar, the
/// block's indentation.
fn block_content_indent(text: &str, start: usize) -> Option<usize> {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let indent = &text[line_start..start];
    if line_start == 0 || !indent.chars().all(|c| c == ' ') {
        return None;
    }
    let previous = &text[..line_start - 1];
    let previous = previous[previous.rfind('\n').map_or(0, |i| i + 1)..].trim_end();
    let header = previous.split(" #").next().unwrap_or("").trim_end();
    let indicator = header.rsplit(' ').next().unwrap_or("");
    let is_block = indicator.starts_with('|') || indicator.starts_with('>');
    is_block.then_some(indent.len())
}

/// How much of a block's `indent` the line at `line_start` has: its leading spaces,
/// up to `indent`. A less indented line (which ends the block, or is text the parser
/// took anyway) must not be cut inside a character.
fn indent_of(text: &str, line_start: usize, indent: usize) -> usize {
    text[line_start..]
        .bytes()
        .take(indent)
        .take_while(|b| *b == b' ')
        .count()
}

fn line_len(text: &str, line_start: usize) -> usize {
    text[line_start..]
        .find('\n')
        .unwrap_or(text.len() - line_start)
}

fn column(text: &str, line_start: usize, col: usize) -> usize {
    let end = line_start + line_len(text, line_start);
    text[line_start..end]
        .char_indices()
        .nth(col)
        .map_or(end, |(i, _)| line_start + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_less_indented_line_with_wide_characters_is_not_cut_inside_one() {
        // Found by fuzzing the rule-pack loader: the block's indentation (4) ran past
        // the line's own two spaces into the three bytes of `⚠`.
        let text = "script: |\n    let v = 1;\n  ⚠ v\n";
        let value_start = text.find('|').unwrap();
        for col in 0..4 {
            let at = offset(text, Span::new(value_start, value_start + 1), 2, col);
            assert!(text.is_char_boundary(at), "col {col}: {at}");
        }
        let content = text.find("let").unwrap();
        let at = offset(text, Span::new(content, content + 1), 2, 0);
        assert!(text.is_char_boundary(at));
        assert_eq!(&text[at..at + 3], "⚠");
        let _ = span(text, Span::new(content, content + 1), 2, 1, 3);
    }

    #[test]
    fn maps_into_block_scalars_past_their_indentation() {
        let text = "script: |\n  let v = 1;\n  v +* 2\n";
        let value_start = text.find('|').unwrap();
        let at = offset(text, Span::new(value_start, value_start + 1), 2, 2);
        assert_eq!(&text[at..at + 2], "+*");
    }

    #[test]
    fn maps_into_block_scalars_marked_at_their_content() {
        let text = "script: |\n  let v = 1;\n  v +* 2\n";
        let content = text.find("let").unwrap();
        let at = offset(text, Span::new(content, content + 1), 2, 2);
        assert_eq!(&text[at..at + 2], "+*");
    }

    #[test]
    fn maps_into_quoted_scalars_past_the_quote() {
        let text = "if: \"deal.x == 1\"\n";
        let at = offset(text, Span::new(4, 17), 1, 5);
        assert_eq!(&text[at..at + 1], "x");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\n🎯x", 7), (2, 1));
    }
}
