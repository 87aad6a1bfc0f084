//! The policy language of kp-cpre.md: threshold trees over attributes.
//!
//! Text syntax: `sync AND (location OR node-2)`, `2 of (a, b, c)`; keywords are case-insensitive;
//! AND binds tighter than OR; a chain `a AND b AND c` at one level is one 3-of-3 gate; parentheses
//! nest. The canonical text (`and(…)`, `or(…)`, `2of3(…)`, no spaces) parses too.

use rand_core::{CryptoRng, RngCore};

use super::attr::{is_valid_attribute, AttributeSet, MAX_ATTRIBUTE_LEN};
use crate::error::{Error, Result};
use crate::group::Scalar;

/// Most children of one gate.
pub const MAX_FAN_IN: usize = 16;
/// Deepest gate nesting (edges from the root to the deepest leaf).
pub const MAX_DEPTH: usize = 8;
/// Most leaves of one policy.
pub const MAX_LEAVES: usize = 64;
/// Deepest nesting of parentheses and gates while parsing: twice [`MAX_DEPTH`], room for redundant
/// parentheses. Checked as the parser descends, so hostile text (thousands of `(`) is refused before
/// it can exhaust the stack; the tree's own depth is checked after.
pub const MAX_NESTING: usize = 2 * MAX_DEPTH;
/// Longest policy text: 64 leaves of 64 bytes with their operators fit well within it.
pub const MAX_POLICY_TEXT: usize = 8 * 1024;

/// A node of a policy tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// An attribute.
    Leaf(String),
    /// A `k`-of-`children.len()` threshold gate.
    Gate {
        /// Threshold.
        k: usize,
        /// Children, in written order.
        children: Vec<Node>,
    },
}

/// A parsed, validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    root: Node,
    leaves: Vec<String>,
    canonical: String,
}

/// A leaf of a minimal satisfying set with its Lagrange factor Δ_l.
#[derive(Clone, Debug)]
pub struct LeafFactor {
    /// Index of the leaf in [`Policy::leaves`] order.
    pub leaf: usize,
    /// Product of the Lagrange coefficients at 0 along the leaf's path.
    pub delta: Scalar,
}

impl Policy {
    /// Parses policy text (infix or canonical).
    pub fn parse(text: &str) -> Result<Self> {
        let root = parse::tree(text)?;
        Self::from_tree(root)
    }

    /// Validates a tree against the limits and builds the policy.
    pub fn from_tree(root: Node) -> Result<Self> {
        let mut leaves = Vec::new();
        check(&root, 0, &mut leaves)?;
        if leaves.len() > MAX_LEAVES {
            return Err(Error::PolicyLimit(format!(
                "{} leaves (at most {MAX_LEAVES})",
                leaves.len()
            )));
        }
        let mut canonical = String::new();
        write_canonical(&root, &mut canonical);
        Ok(Self {
            root,
            leaves,
            canonical,
        })
    }

    /// The tree.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// Leaf attributes in depth-first, written order (the order of a re-key's leaves).
    pub fn leaves(&self) -> &[String] {
        &self.leaves
    }

    /// Canonical text (hashed into re-keys and tokens).
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// P(A).
    pub fn is_satisfied(&self, attrs: &AttributeSet) -> bool {
        eval(&self.root, attrs)
    }

    /// The minimal satisfying leaf set with Lagrange factors, or None when P(A) = 0.
    ///
    /// Each gate takes the k satisfied children whose own minimal sets are smallest (ties by child
    /// order); Δ_l multiplies the Lagrange coefficients at 0 of the chosen children's original
    /// (1-based) indices along l's path.
    pub fn minimal_satisfying_set(&self, attrs: &AttributeSet) -> Option<Vec<LeafFactor>> {
        minimal(&self.root, attrs, &mut 0)
    }

    /// GPSW sharing of `secret` over the tree: the leaf shares q_l(0), in leaf order.
    pub fn share<R: RngCore + CryptoRng>(&self, secret: &Scalar, rng: &mut R) -> Vec<Scalar> {
        let mut out = Vec::with_capacity(self.leaves.len());
        share_node(&self.root, secret.clone(), rng, &mut out);
        out
    }
}

impl core::fmt::Display for Policy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.canonical)
    }
}

fn check(node: &Node, depth: usize, leaves: &mut Vec<String>) -> Result<()> {
    match node {
        Node::Leaf(a) => {
            if !is_valid_attribute(a) {
                return Err(Error::InvalidAttribute(a.clone()));
            }
            leaves.push(a.clone());
            if leaves.len() > MAX_LEAVES {
                return Err(Error::PolicyLimit(format!("more than {MAX_LEAVES} leaves")));
            }
            Ok(())
        }
        Node::Gate { k, children } => {
            if depth >= MAX_DEPTH {
                return Err(Error::PolicyLimit(format!(
                    "deeper than {MAX_DEPTH} levels"
                )));
            }
            if children.is_empty() || children.len() > MAX_FAN_IN {
                return Err(Error::PolicyLimit(format!(
                    "a gate has {} children (1 to {MAX_FAN_IN})",
                    children.len()
                )));
            }
            if *k == 0 || *k > children.len() {
                return Err(Error::PolicyLimit(format!(
                    "threshold {k} of {} children",
                    children.len()
                )));
            }
            children
                .iter()
                .try_for_each(|c| check(c, depth + 1, leaves))
        }
    }
}

fn write_canonical(node: &Node, out: &mut String) {
    match node {
        Node::Leaf(a) => out.push_str(a),
        Node::Gate { k, children } => {
            let n = children.len();
            if *k == n {
                out.push_str("and(");
            } else if *k == 1 {
                out.push_str("or(");
            } else {
                out.push_str(&format!("{k}of{n}("));
            }
            for (i, c) in children.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(c, out);
            }
            out.push(')');
        }
    }
}

fn eval(node: &Node, attrs: &AttributeSet) -> bool {
    match node {
        Node::Leaf(a) => attrs.contains(a),
        Node::Gate { k, children } => children.iter().filter(|c| eval(c, attrs)).count() >= *k,
    }
}

/// Lagrange coefficient at 0 for index `i` over the index set `set` (all 1-based).
fn lagrange_at_zero(i: usize, set: &[usize]) -> Scalar {
    // λ_i = Π_{j ≠ i} j / (j - i), computed as a fraction of small integers.
    let mut num: i128 = 1;
    let mut den: i128 = 1;
    for &j in set {
        if j != i {
            num *= j as i128;
            den *= j as i128 - i as i128;
        }
    }
    if num % den == 0 {
        let q = num / den;
        if let Ok(q) = i64::try_from(q) {
            return Scalar::from_i64(q);
        }
    }
    let to_scalar = |v: i128| {
        let s = Scalar::from_u64(v.unsigned_abs() as u64);
        if v < 0 {
            -&s
        } else {
            s
        }
    };
    // den ≠ 0 because the indices are distinct; its inverse exists.
    let inv = to_scalar(den).inverse().unwrap_or_else(Scalar::zero);
    &to_scalar(num) * &inv
}

fn minimal(node: &Node, attrs: &AttributeSet, next_leaf: &mut usize) -> Option<Vec<LeafFactor>> {
    match node {
        Node::Leaf(a) => {
            let idx = *next_leaf;
            *next_leaf += 1;
            attrs.contains(a).then(|| {
                vec![LeafFactor {
                    leaf: idx,
                    delta: Scalar::one(),
                }]
            })
        }
        Node::Gate { k, children } => {
            // Evaluate every child (to keep leaf numbering), then pick.
            let mut sat: Vec<(usize, Vec<LeafFactor>)> = Vec::new();
            for (i, c) in children.iter().enumerate() {
                if let Some(s) = minimal(c, attrs, next_leaf) {
                    sat.push((i + 1, s));
                }
            }
            if sat.len() < *k {
                return None;
            }
            // Stable sort by set size keeps child order among ties.
            sat.sort_by_key(|(_, s)| s.len());
            sat.truncate(*k);
            sat.sort_by_key(|(i, _)| *i);
            let idx: Vec<usize> = sat.iter().map(|(i, _)| *i).collect();
            let mut out = Vec::new();
            for (i, set) in sat {
                let lambda = lagrange_at_zero(i, &idx);
                for mut lf in set {
                    lf.delta = &lf.delta * &lambda;
                    out.push(lf);
                }
            }
            Some(out)
        }
    }
}

fn share_node<R: RngCore + CryptoRng>(
    node: &Node,
    value: Scalar,
    rng: &mut R,
    out: &mut Vec<Scalar>,
) {
    match node {
        Node::Leaf(_) => out.push(value),
        Node::Gate { k, children } => {
            // q(X) = value + c_1 X + ... + c_{k-1} X^{k-1}
            let coeffs: Vec<Scalar> = (1..*k).map(|_| Scalar::random_nonzero(rng)).collect();
            for (i, c) in children.iter().enumerate() {
                let x = Scalar::from_u64(i as u64 + 1);
                // Horner from the top coefficient down to the constant term.
                let mut acc = Scalar::zero();
                for co in coeffs.iter().rev() {
                    acc = &(&acc * &x) + co;
                }
                acc = &(&acc * &x) + &value;
                share_node(c, acc, rng, out);
            }
        }
    }
}

/// Number of leaves below a node.
pub fn leaf_count(node: &Node) -> usize {
    match node {
        Node::Leaf(_) => 1,
        Node::Gate { children, .. } => children.iter().map(leaf_count).sum(),
    }
}

impl Policy {
    /// SHA-256(layout(domain "at/v1/policy", canonical text)): what re-keys and tokens bind.
    pub fn hash(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let layout = crate::encoding::Writer::new()
            .field(crate::domain::tag::DOMAIN, crate::domain::POLICY_HASH)
            .field(crate::domain::tag::POLICY_TEXT, self.canonical.as_bytes())
            .finish();
        Sha256::digest(layout).into()
    }
}

mod parse;
#[cfg(test)]
mod tests;
