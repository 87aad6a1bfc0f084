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
        let tokens = tokenize(text)?;
        let mut p = Parser {
            tokens: &tokens,
            pos: 0,
            end_col: text.chars().count() + 1,
        };
        let root = p.expr()?;
        if let Some(t) = p.peek() {
            return Err(syntax(t.col, "expected AND, OR or the end of the policy"));
        }
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

// ---------------------------------------------------------------------------------------------
// Tokenizer and parser

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Attr(String),
    And,
    Or,
    Of,
    Num(usize),
    /// `KofN` of the canonical syntax.
    KofN(usize, usize),
    LParen,
    RParen,
    Comma,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    col: usize,
}

fn syntax(col: usize, reason: &str) -> Error {
    Error::PolicySyntax {
        column: col,
        reason: reason.to_owned(),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let is_ident = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-');
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Token {
                    tok: Tok::LParen,
                    col,
                });
                i += 1;
            }
            ')' => {
                out.push(Token {
                    tok: Tok::RParen,
                    col,
                });
                i += 1;
            }
            ',' => {
                out.push(Token {
                    tok: Tok::Comma,
                    col,
                });
                i += 1;
            }
            '0'..='9' => {
                let start = i;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let k = parse_num(&chars[start..i], col)?;
                // Canonical `KofN`: digits, "of" (any case), digits, with no spaces.
                let of = i + 2 <= chars.len()
                    && chars[i].eq_ignore_ascii_case(&'o')
                    && chars[i + 1].eq_ignore_ascii_case(&'f');
                if of && i + 2 < chars.len() && chars[i + 2].is_ascii_digit() {
                    let nstart = i + 2;
                    let mut j = nstart;
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                    let n = parse_num(&chars[nstart..j], nstart + 1)?;
                    out.push(Token {
                        tok: Tok::KofN(k, n),
                        col,
                    });
                    i = j;
                } else {
                    if i < chars.len() && is_ident(chars[i]) && !of {
                        return Err(syntax(i + 1, "unexpected character after a number"));
                    }
                    out.push(Token {
                        tok: Tok::Num(k),
                        col,
                    });
                }
            }
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let tok = match word.to_ascii_lowercase().as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "of" => Tok::Of,
                    _ => {
                        if word.len() > MAX_ATTRIBUTE_LEN {
                            return Err(syntax(col, "attribute longer than 64 characters"));
                        }
                        if let Some(off) = word.chars().position(|c| c.is_ascii_uppercase()) {
                            return Err(syntax(col + off, "attributes are lowercase"));
                        }
                        if !is_valid_attribute(&word) {
                            return Err(syntax(col, "invalid attribute"));
                        }
                        Tok::Attr(word)
                    }
                };
                out.push(Token { tok, col });
            }
            _ => return Err(syntax(col, &format!("unexpected character {c:?}"))),
        }
    }
    Ok(out)
}

fn parse_num(digits: &[char], col: usize) -> Result<usize> {
    let s: String = digits.iter().collect();
    match s.parse::<usize>() {
        Ok(n) if n <= MAX_FAN_IN => Ok(n),
        _ => Err(syntax(col, "number out of range (1 to 16)")),
    }
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    end_col: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn col(&self) -> usize {
        self.peek().map_or(self.end_col, |t| t.col)
    }

    fn bump(&mut self) -> Option<&Token> {
        let t = self.tokens.get(self.pos);
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<()> {
        let col = self.col();
        match self.bump() {
            Some(t) if t.tok == want => Ok(()),
            _ => Err(syntax(col, &format!("expected {what}"))),
        }
    }

    // expr := and_expr (OR and_expr)*
    fn expr(&mut self) -> Result<Node> {
        let mut items = vec![self.and_expr()?];
        while matches!(self.peek(), Some(Token { tok: Tok::Or, .. })) {
            self.bump();
            items.push(self.and_expr()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Node::Gate {
                k: 1,
                children: items,
            }
        })
    }

    // and_expr := primary (AND primary)*
    fn and_expr(&mut self) -> Result<Node> {
        let mut items = vec![self.primary()?];
        while matches!(self.peek(), Some(Token { tok: Tok::And, .. })) {
            self.bump();
            items.push(self.primary()?);
        }
        let n = items.len();
        Ok(if n == 1 {
            items.remove(0)
        } else {
            Node::Gate {
                k: n,
                children: items,
            }
        })
    }

    fn list(&mut self) -> Result<Vec<Node>> {
        self.expect(Tok::LParen, "'('")?;
        let mut items = vec![self.expr()?];
        loop {
            let col = self.col();
            match self.bump().map(|t| &t.tok) {
                Some(Tok::Comma) => items.push(self.expr()?),
                Some(Tok::RParen) => return Ok(items),
                _ => return Err(syntax(col, "expected ',' or ')'")),
            }
        }
    }

    fn primary(&mut self) -> Result<Node> {
        let col = self.col();
        let tok = self.bump().map(|t| t.tok.clone());
        match tok {
            Some(Tok::Attr(a)) => Ok(Node::Leaf(a)),
            Some(Tok::LParen) => {
                let e = self.expr()?;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            // Canonical prefix gates: and(…), or(…).
            Some(Tok::And) if self.at_lparen() => {
                let children = self.list()?;
                Ok(Node::Gate {
                    k: children.len(),
                    children,
                })
            }
            Some(Tok::Or) if self.at_lparen() => Ok(Node::Gate {
                k: 1,
                children: self.list()?,
            }),
            Some(Tok::KofN(k, n)) => {
                let children = self.list()?;
                if children.len() != n {
                    return Err(syntax(
                        col,
                        &format!("{k}of{n} has {} children", children.len()),
                    ));
                }
                gate(k, children, col)
            }
            Some(Tok::Num(k)) => {
                self.expect(Tok::Of, "'of'")?;
                let children = self.list()?;
                gate(k, children, col)
            }
            None => Err(syntax(col, "expected an attribute, '(' or 'K of (...)'")),
            Some(_) => Err(syntax(col, "expected an attribute, '(' or 'K of (...)'")),
        }
    }

    fn at_lparen(&self) -> bool {
        matches!(
            self.peek(),
            Some(Token {
                tok: Tok::LParen,
                ..
            })
        )
    }
}

fn gate(k: usize, children: Vec<Node>, col: usize) -> Result<Node> {
    if k == 0 || k > children.len() {
        return Err(syntax(
            col,
            &format!("threshold {k} needs 1 to {} children", children.len()),
        ));
    }
    Ok(Node::Gate { k, children })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Policy::parse(s).unwrap().canonical().to_owned()
    }

    #[test]
    fn precedence_chains_and_canonical_text() {
        assert_eq!(
            canon("sync AND (location OR node-2)"),
            "and(sync,or(location,node-2))"
        );
        assert_eq!(canon("a and b OR c"), "or(and(a,b),c)");
        assert_eq!(canon("a AND b AND c"), "and(a,b,c)");
        assert_eq!(canon("(a AND b) AND (c AND d)"), "and(and(a,b),and(c,d))");
        assert_eq!(canon("2 of (a, b, c)"), "2of3(a,b,c)");
        assert_eq!(canon("2 OF (a, b)"), "and(a,b)");
        assert_eq!(canon("sync"), "sync");
        for text in [
            "and(sync,or(location,node-2))",
            "2of3(a,b,and(c,d))",
            "or(a,3of4(b,c,d,e))",
        ] {
            assert_eq!(canon(text), text, "canonical text re-parses to itself");
        }
    }

    #[test]
    fn errors_point_at_the_column() {
        let col = |s: &str| match Policy::parse(s) {
            Err(Error::PolicySyntax { column, .. }) => column,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(col("a AND"), 6);
        assert_eq!(col("a AND (b OR c"), 14);
        assert_eq!(col("a # b"), 3);
        assert_eq!(col("a b"), 3);
        assert_eq!(col("sync AND Loc"), 10);
        assert_eq!(col("2 of (a, b"), 11);
        assert_eq!(col("3 of (a, b)"), 1);
        assert_eq!(col("2of3(a,b)"), 1);
        assert_eq!(col("(a OR b))"), 9);
    }

    #[test]
    fn limits() {
        let wide = format!(
            "or({})",
            (0..17)
                .map(|i| format!("a{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(matches!(Policy::parse(&wide), Err(Error::PolicyLimit(_))));
        let mut deep = "a".to_string();
        for i in 0..9 {
            deep = format!("and({deep},b{i})");
        }
        assert!(matches!(Policy::parse(&deep), Err(Error::PolicyLimit(_))));
        let leaves: Vec<String> = (0..65).map(|i| format!("a{i}")).collect();
        let many = format!(
            "and({})",
            leaves
                .chunks(13)
                .map(|c| format!("or({})", c.join(",")))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(matches!(Policy::parse(&many), Err(Error::PolicyLimit(_))));
    }

    #[test]
    fn minimal_set_prefers_small_children_and_keeps_indices() {
        let p = Policy::parse("or(and(a,b,c),d)").unwrap();
        let attrs = AttributeSet::new(["a", "b", "c", "d"]).unwrap();
        let m = p.minimal_satisfying_set(&attrs).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].leaf, 3);
        assert_eq!(m[0].delta, Scalar::one());

        // 2-of-3 with children 1 and 3 satisfied: λ1 = 3/2, λ3 = -1/2.
        let p = Policy::parse("2of3(a,b,c)").unwrap();
        let attrs = AttributeSet::new(["a", "c"]).unwrap();
        let m = p.minimal_satisfying_set(&attrs).unwrap();
        let two_inv = Scalar::from_u64(2).inverse().unwrap();
        assert_eq!(m[0].delta, &Scalar::from_u64(3) * &two_inv);
        assert_eq!(m[1].delta, -&two_inv);
        assert!(p
            .minimal_satisfying_set(&AttributeSet::new(["a"]).unwrap())
            .is_none());
        assert!(!p.is_satisfied(&AttributeSet::new(["b"]).unwrap()));
    }

    #[test]
    fn sharing_interpolates_back_to_the_secret() {
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let p = Policy::parse("or(2of3(a,b,and(c,d)),e)").unwrap();
        let secret = Scalar::random_nonzero(&mut rng);
        let shares = p.share(&secret, &mut rng);
        for attrs in [
            vec!["a", "c", "d"],
            vec!["a", "b"],
            vec!["e"],
            vec!["b", "c", "d"],
        ] {
            let set = AttributeSet::new(attrs).unwrap();
            let m = p.minimal_satisfying_set(&set).unwrap();
            let mut acc = Scalar::zero();
            for lf in &m {
                acc = &acc + &(&shares[lf.leaf] * &lf.delta);
            }
            assert_eq!(acc, secret);
        }
    }
}
