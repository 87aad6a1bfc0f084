//! The policy text parser: a tokenizer and a recursive-descent parser bounded by the limits of
//! the parent module (text length and nesting while parsing; fan-in, depth, leaves, attribute
//! length).

use super::*;

/// Parses policy text (infix or canonical) into a tree; the parent checks the tree's limits.
pub(super) fn tree(text: &str) -> Result<Node> {
    if text.len() > MAX_POLICY_TEXT {
        return Err(Error::PolicyLimit(format!(
            "{} bytes of policy text (at most {MAX_POLICY_TEXT})",
            text.len()
        )));
    }
    let tokens = tokenize(text)?;
    let mut p = Parser {
        tokens: &tokens,
        pos: 0,
        end_col: text.chars().count() + 1,
        nesting: 0,
    };
    let root = p.expr()?;
    if let Some(t) = p.peek() {
        return Err(syntax(t.col, "expected AND, OR or the end of the policy"));
    }
    Ok(root)
}

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
    /// Open parentheses and gates around the current position.
    nesting: usize,
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

    /// A nested expression (inside parentheses or a gate's list), refused past [`MAX_NESTING`]
    /// before descending: the recursion is what the bound protects.
    fn nested(&mut self) -> Result<Node> {
        if self.nesting >= MAX_NESTING {
            return Err(Error::PolicyLimit(format!(
                "nested deeper than {MAX_NESTING} parentheses or gates"
            )));
        }
        self.nesting += 1;
        let e = self.expr();
        self.nesting -= 1;
        e
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
        let mut items = vec![self.nested()?];
        loop {
            let col = self.col();
            match self.bump().map(|t| &t.tok) {
                Some(Tok::Comma) => items.push(self.nested()?),
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
                let e = self.nested()?;
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
