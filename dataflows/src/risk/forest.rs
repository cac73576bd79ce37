//! An Isolation Forest (Liu, Ting and Zhou, 2008): unsupervised anomaly scores for
//! feature vectors. Each tree isolates points of a random subsample by random splits; an
//! anomaly, being few and different, is isolated in fewer splits, so its average path
//! length is short and its score `2^(−E[h(x)] / c(ψ))` close to 1, where inliers score
//! well under 0.5.
//!
//! Deterministic: the same samples in the same order and the same seed give the same
//! forest, bit for bit (its own small generator, no global state), so that every worker,
//! process and restart that trains on the same sessions scores alike. A forest is plain
//! data (serde), to be stored with its version. Owns nothing but the model.

use serde::{Deserialize, Serialize};

/// How a forest is grown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Growth {
    pub trees: usize,
    /// ψ: the points each tree is grown from (all of them when fewer).
    pub sample_size: usize,
    pub seed: u64,
}

impl Default for Growth {
    /// The paper's defaults: 100 trees of 256 points.
    fn default() -> Self {
        Growth { trees: 100, sample_size: 256, seed: 0x5eed }
    }
}

/// A node of a tree, children by index into the tree's nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Node {
    Split {
        feature: usize,
        at: f64,
        below: usize,
        above: usize,
    },
    /// The points of the subsample that ended here.
    Leaf {
        size: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    trees: Vec<Vec<Node>>,
    /// The subsample size the trees were grown from: the normaliser's ψ.
    sample_size: usize,
}

/// splitmix64: small, fast and good enough to pick subsamples and split points.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// c(n): the average path length of an unsuccessful search in a binary search tree of
/// n points, which normalises path lengths.
pub fn average_path(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        n => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

impl Forest {
    /// Grows a forest over `samples` (each the same length).
    pub fn train(samples: &[Vec<f64>], growth: Growth) -> Forest {
        let sample_size = growth.sample_size.min(samples.len());
        if sample_size == 0 {
            return Forest { trees: Vec::new(), sample_size: 0 };
        }
        let height_limit = (sample_size as f64).log2().ceil() as usize;
        let trees = (0..growth.trees)
            .map(|t| {
                let mut random = Random(growth.seed ^ (t as u64).wrapping_mul(0xa076_1d64_78bd_642f));
                // A subsample without replacement: a partial Fisher-Yates shuffle.
                let mut order: Vec<usize> = (0..samples.len()).collect();
                for i in 0..sample_size {
                    let j = i + random.below(order.len() - i);
                    order.swap(i, j);
                }
                let points: Vec<&[f64]> = order[..sample_size].iter().map(|&i| samples[i].as_slice()).collect();
                let mut nodes = Vec::new();
                grow(&points, 0, height_limit, &mut random, &mut nodes);
                nodes
            })
            .collect();
        Forest { trees, sample_size }
    }

    /// Why it cannot score points of `width` features, if it cannot: a tree with no
    /// node, a split on a feature past `width`, or a child that does not come after its
    /// parent (as [`Forest::train`] lays them out, so every path ends).
    pub fn check(&self, width: usize) -> Result<(), String> {
        for (t, tree) in self.trees.iter().enumerate() {
            if tree.is_empty() {
                return Err(format!("tree {t} has no node"));
            }
            for (i, node) in tree.iter().enumerate() {
                if let Node::Split { feature, below, above, .. } = node {
                    if *feature >= width {
                        return Err(format!("tree {t} node {i} splits on feature {feature}, of {width}"));
                    }
                    if [below, above].iter().any(|&&child| child <= i || child >= tree.len()) {
                        return Err(format!("tree {t} node {i} has a child out of place"));
                    }
                }
            }
        }
        Ok(())
    }

    /// How many trees it has.
    pub fn trees(&self) -> usize {
        self.trees.len()
    }

    /// The anomaly score of `point`, in (0, 1]: above about 0.6 stands out, an inlier is
    /// under 0.5. 0.5 from a forest grown on nothing.
    pub fn score(&self, point: &[f64]) -> f64 {
        if self.trees.is_empty() {
            return 0.5;
        }
        let mean = self.trees.iter().map(|t| path_length(t, point)).sum::<f64>() / self.trees.len() as f64;
        let norm = average_path(self.sample_size);
        if norm == 0.0 {
            return 0.5;
        }
        2f64.powf(-mean / norm)
    }
}

/// Grows the subtree of `points` at `depth`, pushing its nodes; returns its root's index.
fn grow(points: &[&[f64]], depth: usize, limit: usize, random: &mut Random, nodes: &mut Vec<Node>) -> usize {
    let here = nodes.len();
    nodes.push(Node::Leaf { size: points.len() });
    if points.len() <= 1 || depth >= limit {
        return here;
    }
    // A random feature among those that still vary here; none: the points are equal.
    let width = points[0].len();
    let range = |f: usize| points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p[f]), hi.max(p[f])));
    let varying: Vec<usize> = (0..width).filter(|&f| range(f).0 < range(f).1).collect();
    if varying.is_empty() {
        return here;
    }
    let feature = varying[random.below(varying.len())];
    let (lo, hi) = range(feature);
    let at = lo + random.unit() * (hi - lo);
    let (below, above): (Vec<&[f64]>, Vec<&[f64]>) = points.iter().partition(|p| p[feature] < at);
    let below = grow(&below, depth + 1, limit, random, nodes);
    let above = grow(&above, depth + 1, limit, random, nodes);
    nodes[here] = Node::Split { feature, at, below, above };
    here
}

/// h(x): the edges from the root to `point`'s leaf, plus c(size) for the points the leaf
/// left unsplit.
fn path_length(tree: &[Node], point: &[f64]) -> f64 {
    let (mut node, mut edges) = (0, 0.0);
    loop {
        match &tree[node] {
            Node::Split { feature, at, below, above } => {
                node = if point[*feature] < *at { *below } else { *above };
                edges += 1.0;
            }
            Node::Leaf { size } => return edges + average_path(*size),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 500 points of a 3-d cloud around the origin (sums of uniforms: near-normal).
    fn cloud(seed: u64) -> Vec<Vec<f64>> {
        let mut random = Random(seed);
        let mut normalish = || (0..6).map(|_| random.unit()).sum::<f64>() - 3.0;
        (0..500).map(|_| vec![normalish(), normalish(), normalish()]).collect()
    }

    #[test]
    fn the_normaliser_is_the_papers() {
        assert_eq!(average_path(1), 0.0);
        assert_eq!(average_path(2), 1.0);
        assert!((average_path(256) - 10.2448).abs() < 1e-3, "{}", average_path(256));
    }

    #[test]
    fn an_outlier_scores_high_and_the_cloud_low() {
        let points = cloud(1);
        let forest = Forest::train(&points, Growth::default());
        let inliers = points.iter().map(|p| forest.score(p)).sum::<f64>() / points.len() as f64;
        assert!(inliers < 0.5, "the cloud scores {inliers:.3} on average");
        let far = forest.score(&[6.0, -6.0, 6.0]);
        assert!(far > 0.7, "a far point scores {far:.3}");
        // Far in one feature only is found too, less surely (random features: a third of
        // the splits look at it).
        let odd = forest.score(&[0.0, 0.0, 8.0]);
        let below = points.iter().filter(|p| forest.score(p) < odd).count();
        assert!(below * 100 >= points.len() * 90, "an outlier in one feature ({odd:.3}) outscores only {below} of 500");
    }

    #[test]
    fn the_same_samples_and_seed_grow_the_same_forest_and_it_survives_serde() {
        let points = cloud(2);
        let a = Forest::train(&points, Growth::default());
        assert_eq!(a, Forest::train(&points, Growth::default()));
        assert_ne!(a, Forest::train(&points, Growth { seed: 7, ..Growth::default() }));
        let stored = serde_json::to_string(&a).unwrap();
        let back: Forest = serde_json::from_str(&stored).unwrap();
        for p in points.iter().take(50) {
            assert_eq!(a.score(p).to_bits(), back.score(p).to_bits());
        }
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert_eq!(Forest::train(&[], Growth::default()).score(&[1.0]), 0.5);
        let same = vec![vec![1.0, 2.0]; 10];
        let forest = Forest::train(&same, Growth::default());
        let at = forest.score(&[1.0, 2.0]);
        assert!((0.0..=1.0).contains(&at));
        assert!(forest.score(&[5.0, 2.0]) >= at, "a point off a constant sample is no more normal");
        let one = Forest::train(&[vec![3.0]], Growth::default());
        assert_eq!(one.score(&[3.0]), 0.5);
    }
}
