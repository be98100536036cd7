//! Boosted regression trees added to the verifier's logistic score: the interactions between
//! features that a weighted sum cannot express (a bright spot is a target on a flat sky and
//! clutter on a textured roof).
//!
//! Why trees on top of the logistic model: on the training sets' targets, cross-validated,
//! the logistic model keeps about half the clutter at 99 % of the hits however its features
//! are transformed, and trees boosted from its score keep 30 % less (models/README.md, "Where
//! the verifier's features stop"). The trees start from the logistic model's log-odds and
//! learn what it leaves, so with zero rounds the verifier is the logistic model exactly.
//!
//! Newton boosting of depth-limited trees on the log-loss, splits searched over at most
//! [`BINS`] quantile edges per feature, leaves `-rate · G / (H + λ)` (XGBoost's rule). Written
//! here rather than taken from a crate: the pure-Rust GBDT crates either name no license
//! (`forust-ml`) or pull a hash crate that needs AES target features to build (`nanogbm`), and
//! the few thousand rows a verifier fits need 150 lines.

use super::{Row, Used, N};
use serde::{Deserialize, Serialize};

/// Most split candidates per feature (quantile edges of the fitting rows).
pub const BINS: usize = 32;
/// L2 penalty on leaf values (λ): a leaf with little evidence stays near 0.
const LAMBDA: f64 = 1.0;
/// Least hessian (about rows × p(1−p)) on each side of a split: no leaf for a handful of rows.
const MIN_HESSIAN: f64 = 1.0;

/// How the trees are grown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TreeOptions {
    /// Boosting rounds, one tree each (0: no trees).
    pub rounds: usize,
    /// Each tree's depth (splits from root to leaf).
    pub depth: usize,
    /// Shrinkage of each tree's leaves.
    pub rate: f64,
}

impl TreeOptions {
    /// No trees: the logistic model alone.
    pub const NONE: Self = Self {
        rounds: 0,
        depth: 3,
        rate: 0.1,
    };
}

/// A tree's node: a split sends a target `left` when its feature is below the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    /// An inner node; `left` and `right` index the tree's nodes, both after this one.
    Split {
        /// The feature's index in `verify::FEATURES`.
        feature: usize,
        /// Below it, left.
        threshold: f32,
        /// The left child's index.
        left: usize,
        /// The right child's index.
        right: usize,
    },
    /// A leaf.
    Leaf {
        /// Added to the log-odds.
        value: f32,
    },
}

/// The boosted trees: each tree's nodes, the root first and every child after its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    /// The trees.
    pub trees: Vec<Vec<Node>>,
}

impl Forest {
    /// The sum of the trees' leaves for features `f`.
    pub fn value(&self, f: &[f32; N]) -> f32 {
        self.trees.iter().map(|t| leaf(t, f)).sum()
    }

    /// Checks what a reader relies on: known features, finite numbers, children after their
    /// parent (so every walk ends). The error names the tree and node.
    pub fn check(&self) -> Result<(), String> {
        for (t, nodes) in self.trees.iter().enumerate() {
            if nodes.is_empty() {
                return Err(format!("`verifier.trees` tree {t} has no node"));
            }
            for (i, n) in nodes.iter().enumerate() {
                let bad = match *n {
                    Node::Split {
                        feature,
                        threshold,
                        left,
                        right,
                    } => {
                        if feature >= N {
                            Some(format!("feature {feature}, expected below {N}"))
                        } else if !threshold.is_finite() {
                            Some("a non-finite threshold".to_string())
                        } else if left <= i || right <= i || left >= nodes.len() || right >= nodes.len() {
                            Some(format!(
                                "children {left} and {right}, expected after it and below {}",
                                nodes.len()
                            ))
                        } else {
                            None
                        }
                    }
                    Node::Leaf { value } => (!value.is_finite()).then(|| "a non-finite value".to_string()),
                };
                if let Some(b) = bad {
                    return Err(format!("`verifier.trees` tree {t} node {i} has {b}"));
                }
            }
        }
        Ok(())
    }
}

/// The leaf value `f` reaches in one tree (checked: children come after their parent).
fn leaf(nodes: &[Node], f: &[f32; N]) -> f32 {
    let mut i = 0;
    loop {
        match nodes[i] {
            Node::Leaf { value } => return value,
            Node::Split {
                feature,
                threshold,
                left,
                right,
            } => i = if f[feature] < threshold { left } else { right },
        }
    }
}

/// Boosts `opts.rounds` trees on `rows` from the log-odds `base` (one per row), splitting on
/// the `used` features only.
pub fn boost(rows: &[Row], base: &[f64], used: &Used, opts: TreeOptions) -> Forest {
    let edges: Vec<Vec<f32>> = (0..N)
        .map(|j| if used[j] { quantile_edges(rows, j) } else { Vec::new() })
        .collect();
    let bins: Vec<[u8; N]> = rows
        .iter()
        .map(|r| std::array::from_fn(|j| edges[j].partition_point(|&e| e <= r.features[j]) as u8))
        .collect();
    let mut margin = base.to_vec();
    let mut trees = Vec::with_capacity(opts.rounds);
    for _ in 0..opts.rounds {
        let (g, h): (Vec<f64>, Vec<f64>) = rows
            .iter()
            .zip(&margin)
            .map(|(r, m)| {
                let p = 1.0 / (1.0 + (-m).exp());
                (
                    r.weight * (p - r.hit as u8 as f64),
                    r.weight * (p * (1.0 - p)).max(1e-6),
                )
            })
            .unzip();
        let grower = Grower {
            bins: &bins,
            edges: &edges,
            g: &g,
            h: &h,
            opts,
        };
        let mut nodes = Vec::new();
        grower.grow(&mut nodes, (0..rows.len()).collect(), 0);
        for (m, r) in margin.iter_mut().zip(rows) {
            *m += leaf(&nodes, &r.features) as f64;
        }
        trees.push(nodes);
    }
    Forest { trees }
}

/// Up to `BINS − 1` distinct quantiles of feature `j` over the rows, ascending.
fn quantile_edges(rows: &[Row], j: usize) -> Vec<f32> {
    let mut v: Vec<f32> = rows.iter().map(|r| r.features[j]).collect();
    v.sort_by(f32::total_cmp);
    let mut edges: Vec<f32> = (1..BINS).map(|k| v[k * v.len() / BINS]).collect();
    edges.dedup();
    // An edge equal to the smallest value would leave its left side empty.
    edges.retain(|&e| v.first().is_some_and(|&lo| e > lo));
    edges
}

/// One round's data: each row's bins, gradient and hessian.
struct Grower<'a> {
    bins: &'a [[u8; N]],
    edges: &'a [Vec<f32>],
    g: &'a [f64],
    h: &'a [f64],
    opts: TreeOptions,
}

/// The best split of a node: feature, bin edge index, gain.
type Split = (usize, usize, f64);

impl Grower<'_> {
    /// Appends the subtree of `rows` at `depth` to `nodes`; returns its root's index.
    fn grow(&self, nodes: &mut Vec<Node>, rows: Vec<usize>, depth: usize) -> usize {
        let at = nodes.len();
        let (g, h) = rows
            .iter()
            .fold((0.0, 0.0), |(g, h), &i| (g + self.g[i], h + self.h[i]));
        let value = (-self.opts.rate * g / (h + LAMBDA)) as f32;
        nodes.push(Node::Leaf { value });
        let best = if depth < self.opts.depth {
            self.best_split(&rows, g, h)
        } else {
            None
        };
        let Some((feature, edge, _)) = best else {
            return at;
        };
        let (left, right): (Vec<usize>, Vec<usize>) = rows
            .into_iter()
            .partition(|&i| (self.bins[i][feature] as usize) <= edge);
        let l = self.grow(nodes, left, depth + 1);
        let r = self.grow(nodes, right, depth + 1);
        nodes[at] = Node::Split {
            feature,
            threshold: self.edges[feature][edge],
            left: l,
            right: r,
        };
        at
    }

    /// The split with the largest gain in the penalised log-loss, if any gains.
    fn best_split(&self, rows: &[usize], g: f64, h: f64) -> Option<Split> {
        let score = |g: f64, h: f64| g * g / (h + LAMBDA);
        let mut best: Option<Split> = None;
        for (j, edges) in self.edges.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
            let mut hist = [(0.0f64, 0.0f64); BINS];
            for &i in rows {
                let b = &mut hist[self.bins[i][j] as usize];
                (b.0, b.1) = (b.0 + self.g[i], b.1 + self.h[i]);
            }
            let (mut gl, mut hl) = (0.0, 0.0);
            // Bin b's rows are below edge b: splitting after bin b sends bins 0..=b left.
            for (b, &(gb, hb)) in hist.iter().enumerate().take(edges.len()) {
                (gl, hl) = (gl + gb, hl + hb);
                let (gr, hr) = (g - gl, h - hl);
                if hl < MIN_HESSIAN || hr < MIN_HESSIAN {
                    continue;
                }
                let gain = score(gl, hl) + score(gr, hr) - score(g, h);
                if gain > 1e-9 && best.is_none_or(|(_, _, bg)| gain > bg) {
                    best = Some((j, b, gain));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::spread;
    use super::super::{fit, ModelSpec, Verifier, ALL};
    use super::*;

    /// Rows whose label is an interaction: a target when features 0 and 1 have the same sign
    /// (a weighted sum cannot express it), with every 29th label flipped.
    fn xor_rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| {
                let (a, b) = spread(i);
                let mut features = [0.0; N];
                (features[0], features[1]) = (a, b);
                Row {
                    features,
                    hit: ((a > 0.0) == (b > 0.0)) != (i % 29 == 0),
                    weight: 1.0,
                }
            })
            .collect()
    }

    fn correct(v: &Verifier, rows: &[Row]) -> usize {
        rows.iter().filter(|r| (v.score(&r.features) >= 0.5) == r.hit).count()
    }

    #[test]
    fn trees_learn_an_interaction_the_logistic_model_cannot() {
        let rows = xor_rows(800);
        let logistic = fit(&rows, &ModelSpec::logistic(1.0));
        let spec = ModelSpec {
            trees: TreeOptions {
                rounds: 60,
                depth: 2,
                rate: 0.3,
            },
            ..ModelSpec::logistic(1.0)
        };
        let boosted = fit(&rows, &spec);
        assert!(correct(&logistic, &rows) < 520, "{} of 800", correct(&logistic, &rows));
        // 28 labels are flipped, and the splits fall on quantile edges, so a few rows next to
        // the boundaries land on the wrong side; the trees get about nine in ten right.
        assert!(correct(&boosted, &rows) >= 720, "{} of 800", correct(&boosted, &rows));
        let forest = boosted.trees.as_ref().unwrap();
        assert_eq!(forest.trees.len(), 60);
        // Depth 2: at most 3 splits and 4 leaves a tree; only the two features that vary split.
        for t in &forest.trees {
            assert!(t.len() <= 7, "{t:?}");
            for n in t {
                if let Node::Split { feature, .. } = n {
                    assert!(*feature < 2, "{t:?}");
                }
            }
        }
        // With the logistic part unchanged, the trees are what moved the scores.
        assert_eq!(boosted.weights, logistic.weights);
    }

    #[test]
    fn a_left_out_feature_is_never_split_on() {
        let rows = xor_rows(400);
        let mut used = ALL;
        used[1] = false;
        let trees = boost(
            &rows,
            &vec![0.0; rows.len()],
            &used,
            TreeOptions {
                rounds: 10,
                ..TreeOptions::NONE
            },
        );
        let splits_on_1 = trees
            .trees
            .iter()
            .flatten()
            .any(|n| matches!(n, Node::Split { feature: 1, .. }));
        assert!(!splits_on_1);
    }

    #[test]
    fn damaged_trees_are_refused_by_tree_and_node() {
        let rows = xor_rows(200);
        let spec = ModelSpec {
            trees: TreeOptions {
                rounds: 3,
                ..TreeOptions::NONE
            },
            ..ModelSpec::logistic(1.0)
        };
        let v = fit(&rows, &spec);
        let mut info = serde_json::json!({});
        v.record(&mut info);
        assert_eq!(Verifier::from_info(&info).unwrap().unwrap(), v);
        let damage = |path: &str, value: serde_json::Value| {
            let mut bad = info.clone();
            *bad.pointer_mut(path).unwrap() = value;
            Verifier::from_info(&bad).unwrap_err()
        };
        let e = damage("/verifier/trees/trees/1/0/split/left", serde_json::json!(0));
        assert!(e.contains("tree 1 node 0") && e.contains("children 0"), "{e}");
        let e = damage("/verifier/trees/trees/2/0/split/feature", serde_json::json!(N));
        assert!(
            e.contains("tree 2 node 0") && e.contains(&format!("feature {N}")),
            "{e}"
        );
        let e = damage("/verifier/trees/trees/0", serde_json::json!([]));
        assert!(e.contains("tree 0 has no node"), "{e}");
        let e = damage("/verifier/trees/trees/0/0", serde_json::json!({ "branch": 1 }));
        assert!(e.contains("`verifier`"), "{e}");
    }
}
