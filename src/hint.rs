//! Text hints every layer may use: nearest names for a misspelt word, and line/column of a
//! byte offset. A leaf: it imports nothing of the crate.

/// Converts a byte offset in `text` to a 1-based line and column (in characters).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn similarity(a: &str, b: &str) -> f64 {
    strsim::jaro_winkler(&a.to_lowercase(), &b.to_lowercase())
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (similarity(word, c), c))
        .filter(|(s, _)| *s > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.as_str())
}

/// `"did you mean `x`?"` when a candidate is close enough to be a typo of `word`.
pub fn did_you_mean(word: &str, candidates: &[String]) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The candidates closest to `word`, best first (at most `n`).
pub fn nearest<'a>(word: &str, candidates: &'a [String], n: usize) -> Vec<&'a str> {
    let mut scored: Vec<(f64, &String)> = candidates
        .iter()
        .map(|c| (similarity(word, c), c))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(n)
        .map(|(_, c)| c.as_str())
        .collect()
}

/// The "nearest columns: a, b, c" hint for a column `word` missing from `columns`.
pub fn nearest_columns(word: &str, columns: &[String]) -> String {
    format!("nearest columns: {}", nearest(word, columns, 3).join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_of_offsets() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, t.len()), (3, 2));
    }

    #[test]
    fn typo_hints() {
        let names: Vec<String> = ["user_id", "amount", "ts"].map(String::from).to_vec();
        assert_eq!(closest("usr_id", &names), Some("user_id"));
        assert_eq!(closest("zzzz", &names), None);
        assert_eq!(nearest("amont", &names, 1), vec!["amount"]);
        assert!(nearest_columns("amont", &names).starts_with("nearest columns: amount"));
    }
}
