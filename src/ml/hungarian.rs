//! Minimum-cost assignment (the Hungarian algorithm, O(n³)) for matching cluster centroids of
//! one run to the previous run's.

/// For a rows × cols cost matrix, returns for each row the column assigned to it (`None` when
/// there are more rows than columns and the row got none), minimising the total cost.
pub fn assign(cost: &[Vec<f64>]) -> Vec<Option<usize>> {
    let rows = cost.len();
    if rows == 0 {
        return vec![];
    }
    let cols = cost[0].len();
    let n = rows.max(cols);
    let big = cost.iter().flatten().fold(0.0f64, |m, &v| m.max(v.abs())) * 4.0 + 1.0;
    let c = |i: usize, j: usize| {
        if i < rows && j < cols {
            cost[i][j]
        } else {
            big
        }
    };
    // Jonker-Volgenant style potentials, 1-based with a dummy column 0.
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; n + 1];
    let mut p = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = c(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = vec![None; rows];
    for j in 1..=n {
        if p[j] >= 1 && p[j] <= rows && j <= cols {
            out[p[j] - 1] = Some(j - 1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum() {
        let cost = vec![
            vec![4.0, 1.0, 3.0],
            vec![2.0, 0.0, 5.0],
            vec![3.0, 2.0, 2.0],
        ];
        assert_eq!(assign(&cost), vec![Some(1), Some(0), Some(2)]);
        let rect = vec![vec![1.0, 9.0], vec![9.0, 1.0], vec![5.0, 5.0]];
        assert_eq!(assign(&rect), vec![Some(0), Some(1), None]);
    }
}
