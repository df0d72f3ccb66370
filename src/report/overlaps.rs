//! Segment overlaps for the report: how many target users each pair of segments shares.

use datafusion::arrow::array::{AsArray, RecordBatch};

/// Target users shared by each pair of segments `(a, b)` with `a < b`, pairs sharing nobody
/// left out, in name order. Counted per user over (user, segment) pairs sorted by user, so the
/// cost follows the members, not the number of segment pairs.
pub(super) fn overlaps(members: &[RecordBatch]) -> Vec<(String, String, u64)> {
    use std::collections::{BTreeMap, HashMap};
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let rows: usize = members.iter().map(|b| b.num_rows()).sum();
    for b in members {
        let seg = b.column(0).as_string::<i32>();
        for s in seg.iter().flatten() {
            names.entry(s).or_insert(0);
        }
    }
    let names: Vec<&str> = names.into_keys().collect();
    let index: HashMap<&str, u64> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i as u64))
        .collect();
    let mut users: HashMap<&str, u64> = HashMap::with_capacity(rows);
    let mut pairs: Vec<u64> = Vec::with_capacity(rows);
    for b in members {
        let seg = b.column(0).as_string::<i32>();
        let user = b.column(1).as_string::<i32>();
        for (s, u) in seg.iter().zip(user.iter()) {
            let (Some(s), Some(u)) = (s, u) else { continue };
            let next = users.len() as u64;
            let u = *users.entry(u).or_insert(next);
            pairs.push(u << 16 | index[s]);
        }
    }
    pairs.sort_unstable();
    let k = names.len();
    let mut counts = vec![0u64; k * k];
    let mut start = 0;
    while start < pairs.len() {
        let user = pairs[start] >> 16;
        let mut end = start + 1;
        while end < pairs.len() && pairs[end] >> 16 == user {
            end += 1;
        }
        // Segment indices of one user, ascending (the pairs are sorted).
        for i in start..end {
            for j in i + 1..end {
                let (a, b) = ((pairs[i] & 0xffff) as usize, (pairs[j] & 0xffff) as usize);
                counts[a * k + b] += 1;
            }
        }
        start = end;
    }
    let mut out = Vec::new();
    for a in 0..k {
        for b in a + 1..k {
            if counts[a * k + b] > 0 {
                out.push((
                    names[a].to_string(),
                    names[b].to_string(),
                    counts[a * k + b],
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    /// The per-user count of shared members equals a count over every pair of segments, in
    /// name order, with pairs that share nobody left out.
    #[test]
    fn overlaps_count_the_users_each_pair_of_segments_shares() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("segment", DataType::Utf8, false),
            Field::new("user_id", DataType::Utf8, false),
        ]));
        // User u is in segment s when (u * (s + 3)) % 7 < 3, over two batches.
        let segs = ["seg_b", "seg_a", "seg_d", "seg_c"];
        let mut rows: Vec<(String, String)> = Vec::new();
        for u in 0..500u32 {
            for (s, name) in segs.iter().enumerate() {
                if (u * (s as u32 + 3)) % 7 < 3 {
                    rows.push((name.to_string(), format!("user{u}")));
                }
            }
        }
        let half = rows.len() / 2;
        let batch = |r: &[(String, String)]| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        r.iter().map(|x| x.0.as_str()),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        r.iter().map(|x| x.1.as_str()),
                    )),
                ],
            )
            .unwrap()
        };
        let got = overlaps(&[batch(&rows[..half]), batch(&rows[half..])]);
        let mut sorted = segs.to_vec();
        sorted.sort();
        let mut want = Vec::new();
        for (i, a) in sorted.iter().enumerate() {
            for b in &sorted[i + 1..] {
                let n = (0..500u32)
                    .filter(|u| {
                        rows.contains(&(a.to_string(), format!("user{u}")))
                            && rows.contains(&(b.to_string(), format!("user{u}")))
                    })
                    .count() as u64;
                if n > 0 {
                    want.push((a.to_string(), b.to_string(), n));
                }
            }
        }
        assert!(!want.is_empty());
        assert_eq!(got, want);
    }
}
