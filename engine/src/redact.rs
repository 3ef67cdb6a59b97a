//! What no diagnostic may show: the values of keys that name a secret (misspelt
//! ones too: a `client_secert` is refused as an unknown field, and its line is the
//! snippet), and the user info of URLs (`https://user:pass@host`).

use std::borrow::Cow;

use serde_json::Value;

use crate::diagnostic::Span;

/// Words a secret's key is made of, matched with a typo or two.
const SECRET_WORDS: &[&str] = &[
    "secret",
    "token",
    "password",
    "passwd",
    "passphrase",
    "credential",
    "credentials",
    "private",
    "apikey",
    "authorization",
    "bearer",
    "cookie",
];

/// Short words that name a secret only when spelt exactly (a typo of `key` is
/// `keep`, `kex`…).
const SHORT_WORDS: &[&str] = &["key", "pat", "pwd", "pass", "auth", "dsn"];

/// Whether `key` (a mapping key) names a secret: one of its words (split at `_`,
/// `-`, `.` and at a capital) is one of [`SECRET_WORDS`] within one edit (two for
/// the long ones), or one of [`SHORT_WORDS`]; or the key run together holds one
/// (`clientsecret`).
pub fn secret_key(key: &str) -> bool {
    let words = words(key);
    let joined: String = words.concat();
    words
        .iter()
        .any(|w| SHORT_WORDS.contains(&w.as_str()) || SECRET_WORDS.iter().any(|s| close(w, s)))
        || SECRET_WORDS.iter().any(|s| joined.contains(s))
}

fn close(word: &str, secret: &str) -> bool {
    let allowed = if secret.len() >= 8 { 2 } else { 1 };
    word.len() >= 4 && strsim::damerau_levenshtein(word, secret) <= allowed
}

/// `clientSecret_value-2` as `client`, `secret`, `value`, `2`, lowercased.
fn words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The JSON pointers of the scalars at or under a key that names a secret
/// ([`secret_key`]).
pub fn secret_pointers(value: &Value) -> Vec<String> {
    fn walk(value: &Value, pointer: String, secret: bool, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let under = crate::source::pointer_join(&pointer, k);
                    walk(v, under, secret || secret_key(k), found);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, format!("{pointer}/{i}"), secret, found);
                }
            }
            Value::Null => {}
            _ if secret => found.push(pointer),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(value, String::new(), false, &mut found);
    found
}

/// The spans of the user info of every URL in `text` (`user:pass` in
/// `https://user:pass@host/…`).
pub fn url_user_info(text: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("://") {
        let start = from + at + 3;
        let authority = text[start..]
            .find(|c: char| c.is_whitespace() || "/?#\"'`<>,;()[]{}\\".contains(c))
            .map_or(&text[start..], |end| &text[start..start + end]);
        if let Some(end) = authority.rfind('@').filter(|end| *end > 0) {
            spans.push(Span::new(start, start + end));
        }
        from = start;
    }
    spans
}

/// `text` with the user info of its URLs as `***` (`https://***@host`).
pub fn mask_urls(text: &str) -> Cow<'_, str> {
    let spans = url_user_info(text);
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for span in spans {
        out.push_str(&text[last..span.start]);
        out.push_str("***");
        last = span.end;
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_name_a_secret_misspelt_or_not() {
        for key in [
            "client_secret",
            "client_secert",
            "clientSecret",
            "clientsecret",
            "shared_secret",
            "admin_token",
            "tokne",
            "api_key",
            "apiKey",
            "API_KEY",
            "password",
            "db_passwrod",
            "aws_credentials",
            "authorization",
            "bearer_token",
            "session_cookie",
            "sentry_dsn",
        ] {
            assert!(secret_key(key), "`{key}` names a secret");
        }
        for key in [
            "keep",
            "keep_done",
            "region",
            "search",
            "redact",
            "state",
            "base_url",
            "topic",
            "catalog",
            "prefix",
        ] {
            assert!(!secret_key(key), "`{key}` names no secret");
        }
    }

    #[test]
    fn url_user_info_is_found_and_masked() {
        let text = "a: https://user:pass@host/x?y=1 b: http://host/@not c: htp://x@y";
        assert_eq!(
            mask_urls(text),
            "a: https://***@host/x?y=1 b: http://host/@not c: htp://***@y"
        );
        assert_eq!(mask_urls("`ftp://u:p@h`"), "`ftp://***@h`");
        assert!(matches!(mask_urls("https://host/"), Cow::Borrowed(_)));
    }
}
