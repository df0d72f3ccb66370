//! SQL text the engine writes for itself: identifiers and string literals quoted once, the same
//! way everywhere. A leaf: every layer that writes SQL (feature transforms, steps, segments,
//! platform files) may use it.

/// A quoted identifier: `"name"`, with `"` doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal: `'text'`, with `'` doubled.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(ident("user_id"), "\"user_id\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
