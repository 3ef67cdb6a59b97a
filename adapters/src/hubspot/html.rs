//! Note and task bodies as HubSpot keeps them: HTML. A pack writes its notes in
//! Markdown (`**Engagement:**`, `- field: old → new`, blank lines between paragraphs);
//! sent as they are, HubSpot would show the text run together on one line, because
//! HTML folds line breaks. Each line break is kept as one (`<br />`), lists and
//! emphasis become their HTML, and HTML a template writes itself passes unchanged.

use pulldown_cmark::{Event, Options, Parser, html};

/// The HTML HubSpot should store for a note or task body written in Markdown.
pub fn from_markdown(text: &str) -> String {
    let events = Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH).map(|e| match e {
        Event::SoftBreak => Event::HardBreak,
        other => other,
    });
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    html::push_html(&mut out, events);
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::from_markdown;

    #[test]
    fn lines_lists_and_bold_survive_as_html() {
        assert_eq!(
            from_markdown(
                "🔄 Synced (O1)\n- LifeCycle.Stage: Prospect → Qualified\n- Amount: 1 → 2\n"
            ),
            "<p>🔄 Synced (O1)</p>\n<ul>\n<li>LifeCycle.Stage: Prospect → Qualified</li>\n<li>Amount: 1 → 2</li>\n</ul>"
        );
        assert_eq!(
            from_markdown("**Engagement:** eng-1\n**Created:** today"),
            "<p><strong>Engagement:</strong> eng-1<br />\n<strong>Created:</strong> today</p>"
        );
    }

    #[test]
    fn html_a_template_writes_passes_unchanged() {
        let html = "<p>⏳ <strong>Not yet sent</strong></p>\n<ul><li>Postal Code</li></ul>";
        assert_eq!(from_markdown(html), html);
    }

    #[test]
    fn text_is_escaped_where_it_is_not_markup() {
        assert_eq!(
            from_markdown("Price < 5 & rising"),
            "<p>Price &lt; 5 &amp; rising</p>"
        );
    }
}
