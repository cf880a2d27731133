//! Recursive-descent SOQL parser: tokens → [`Query`], with names resolved against the schema
//! (unknown objects, fields and relationships are refused here, naming the token).
//!
//! ```text
//! query     := SELECT select FROM object [WHERE or_expr] [ORDER BY order {, order}]
//!              [LIMIT int] [OFFSET int]
//! select    := COUNT ( ) | path {, path}
//! or_expr   := and_expr {OR and_expr}        -- AND and OR never mix without parentheses
//! and_expr  := unary {AND unary}
//! unary     := NOT unary | ( or_expr ) | path op value | path [NOT] IN ( value {, value} )
//! op        := = | != | <> | < | > | <= | >= | LIKE
//! value     := 'string' | int | true | false | null | date | datetime
//!            | TODAY | YESTERDAY | TOMORROW | LAST_N_DAYS:n | NEXT_N_DAYS:n
//! order     := path [ASC | DESC] [NULLS FIRST | NULLS LAST]
//! ```

use super::SoqlError;
use super::lexer::{Tok, Token, tokenize};
use super::schema::{Field, FieldType, Relationship, SObject, object, type_name};

/// Salesforce's largest `OFFSET`.
pub(crate) const MAX_OFFSET: i64 = 2000;

/// A parsed query.
#[derive(Debug, PartialEq)]
pub(crate) struct Query {
    pub(crate) object: &'static SObject,
    pub(crate) select: Select,
    pub(crate) filter: Option<Expr>,
    pub(crate) order: Vec<Order>,
    pub(crate) limit: Option<usize>,
    pub(crate) offset: usize,
}

/// What the query returns.
#[derive(Debug, PartialEq)]
pub(crate) enum Select {
    /// `COUNT()`: only `totalSize`.
    Count,
    Fields(Vec<Path>),
}

/// A field, reached from the queried object through zero or more parent relationships.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Path {
    pub(crate) hops: Vec<&'static Relationship>,
    pub(crate) field: &'static Field,
}

/// A `WHERE` condition.
#[derive(Debug, PartialEq)]
pub(crate) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare(Path, Op, Literal),
    In(Path, bool, Vec<Literal>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Like,
}

/// A date literal relative to today (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelativeDate {
    Today,
    Yesterday,
    Tomorrow,
    LastNDays(i64),
    NextNDays(i64),
}

/// A value on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
    /// Midnight UTC of a day, unix milliseconds.
    Date(i64),
    /// Unix milliseconds.
    DateTime(i64),
    Relative(RelativeDate),
}

/// One `ORDER BY` item.
#[derive(Debug, PartialEq)]
pub(crate) struct Order {
    pub(crate) path: Path,
    pub(crate) descending: bool,
    pub(crate) nulls_last: bool,
}

/// Parses a query against the schema.
pub(crate) fn parse(soql: &str) -> Result<Query, SoqlError> {
    let tokens = tokenize(soql)?;
    let mut p = Parser {
        soql,
        tokens,
        at: 0,
    };
    let query = p.query()?;
    if p.at < p.tokens.len() {
        return Err(p.unexpected());
    }
    Ok(query)
}

struct Parser<'a> {
    soql: &'a str,
    tokens: Vec<Token>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| t.is_keyword(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let found = self.peek_keyword(kw);
        if found {
            self.at += 1;
        }
        found
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        let found = self.peek().is_some_and(|t| t.tok == *tok);
        if found {
            self.at += 1;
        }
        found
    }

    /// Where the next token starts (the query's end when there is none).
    fn here(&self) -> usize {
        self.peek()
            .map_or_else(|| self.soql.chars().count(), |t| t.at)
    }

    fn unexpected(&self) -> SoqlError {
        let what = match self.peek() {
            Some(t) => format!("unexpected token: '{}'", t.text),
            None => "unexpected token: <EOF>".to_string(),
        };
        SoqlError::malformed(self.soql, self.here(), &what)
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), SoqlError> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect(&mut self, tok: &Tok) -> Result<(), SoqlError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    /// A word that is not a reserved keyword, with where it starts.
    fn name(&mut self) -> Result<(String, usize), SoqlError> {
        match self.peek() {
            Some(Token {
                tok: Tok::Word(w),
                at,
                ..
            }) if !is_reserved(w) => {
                let found = (w.clone(), *at);
                self.at += 1;
                Ok(found)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_keyword("SELECT")?;
        // Field names are resolved once the object is known.
        let mut raw_fields = Vec::new();
        let count = self.peek_keyword("COUNT")
            && self.tokens.get(self.at + 1).map(|t| &t.tok) == Some(&Tok::LParen);
        if count {
            self.at += 1;
            self.expect(&Tok::LParen)?;
            self.expect(&Tok::RParen)?;
        } else {
            loop {
                raw_fields.push(self.name()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        self.expect_keyword("FROM")?;
        let (object_name, object_at) = self.name()?;
        let object = object(&object_name).ok_or_else(|| {
            SoqlError::at(
                self.soql,
                object_at,
                "INVALID_TYPE",
                &format!(
                    "sObject type '{object_name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
                ),
            )
        })?;
        let select = if count {
            Select::Count
        } else {
            let mut paths: Vec<Path> = Vec::new();
            for (text, at) in &raw_fields {
                let path = self.path(object, text, *at)?;
                if paths.contains(&path) {
                    return Err(SoqlError::malformed(
                        self.soql,
                        *at,
                        &format!("duplicate field selected: {}", path.display()),
                    ));
                }
                paths.push(path);
            }
            Select::Fields(paths)
        };
        let filter = if self.eat_keyword("WHERE") {
            Some(self.or_expr(object)?)
        } else {
            None
        };
        let mut order = Vec::new();
        if !count && self.eat_keyword("ORDER") {
            self.expect_keyword("BY")?;
            loop {
                order.push(self.order_item(object)?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        let limit = if self.eat_keyword("LIMIT") {
            Some(self.count_value()?.1 as usize)
        } else {
            None
        };
        let mut offset = 0;
        if self.eat_keyword("OFFSET") {
            let (at, n) = self.count_value()?;
            if n > MAX_OFFSET {
                return Err(SoqlError::at(
                    self.soql,
                    at,
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    &format!("Maximum SOQL offset allowed is {MAX_OFFSET}"),
                ));
            }
            offset = n as usize;
        }
        Ok(Query {
            object,
            select,
            filter,
            order,
            limit,
            offset,
        })
    }

    /// A non-negative integer (LIMIT, OFFSET) and where it starts.
    fn count_value(&mut self) -> Result<(usize, i64), SoqlError> {
        match self.peek() {
            Some(Token {
                tok: Tok::Int(n),
                at,
                ..
            }) if *n >= 0 => {
                let found = (*at, *n);
                self.at += 1;
                Ok(found)
            }
            _ => Err(self.unexpected()),
        }
    }

    /// Resolves `A.B.Field` from `object`: every part but the last is a relationship.
    fn path(&self, object: &'static SObject, text: &str, at: usize) -> Result<Path, SoqlError> {
        let parts: Vec<&str> = text.split('.').collect();
        let (last, hops_text) = parts.split_last().expect("split yields one part at least");
        let mut current = object;
        let mut hops = Vec::new();
        for hop in hops_text {
            let relationship = current.relationship(hop).ok_or_else(|| {
                SoqlError::at(
                    self.soql,
                    at,
                    "INVALID_FIELD",
                    &format!(
                        "Didn't understand relationship '{hop}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
                    ),
                )
            })?;
            current = object_of(relationship);
            hops.push(relationship);
        }
        let field = current.field(last).ok_or_else(|| {
            SoqlError::at(
                self.soql,
                at,
                "INVALID_FIELD",
                &format!(
                    "No such column '{last}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                    current.name
                ),
            )
        })?;
        Ok(Path { hops, field })
    }

    /// A chain of conditions joined by one connective; SOQL refuses `a AND b OR c` without
    /// parentheses.
    fn or_expr(&mut self, object: &'static SObject) -> Result<Expr, SoqlError> {
        let first = self.unary(object)?;
        let connective = if self.peek_keyword("AND") {
            "AND"
        } else if self.peek_keyword("OR") {
            "OR"
        } else {
            return Ok(first);
        };
        let other = if connective == "AND" { "OR" } else { "AND" };
        let mut items = vec![first];
        while self.eat_keyword(connective) {
            items.push(self.unary(object)?);
        }
        if self.peek_keyword(other) {
            return Err(self.unexpected());
        }
        Ok(if connective == "AND" {
            Expr::And(items)
        } else {
            Expr::Or(items)
        })
    }

    fn unary(&mut self, object: &'static SObject) -> Result<Expr, SoqlError> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.unary(object)?)));
        }
        if self.eat(&Tok::LParen) {
            let inner = self.or_expr(object)?;
            self.expect(&Tok::RParen)?;
            return Ok(inner);
        }
        let (text, at) = self.name()?;
        let path = self.path(object, &text, at)?;
        if !path.field.filterable {
            return Err(SoqlError::at(
                self.soql,
                at,
                "INVALID_FIELD",
                &format!(
                    "field '{}' can not be filtered in a query call",
                    path.field.name
                ),
            ));
        }
        let negated_in = self.peek_keyword("NOT")
            && self
                .tokens
                .get(self.at + 1)
                .is_some_and(|t| t.is_keyword("IN"));
        if negated_in || self.peek_keyword("IN") {
            self.at += if negated_in { 2 } else { 1 };
            self.expect(&Tok::LParen)?;
            let mut values = Vec::new();
            loop {
                let (value, value_at) = self.literal()?;
                check_literal(self.soql, &path, Op::Eq, &value, value_at)?;
                values.push(value);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RParen)?;
            return Ok(Expr::In(path, negated_in, values));
        }
        let op = match self.peek().map(|t| &t.tok) {
            Some(Tok::Eq) => Op::Eq,
            Some(Tok::Ne) => Op::Ne,
            Some(Tok::Lt) => Op::Lt,
            Some(Tok::Gt) => Op::Gt,
            Some(Tok::Le) => Op::Le,
            Some(Tok::Ge) => Op::Ge,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("LIKE") => Op::Like,
            _ => return Err(self.unexpected()),
        };
        self.at += 1;
        let (value, value_at) = self.literal()?;
        check_literal(self.soql, &path, op, &value, value_at)?;
        Ok(Expr::Compare(path, op, value))
    }

    /// A value and where it starts.
    fn literal(&mut self) -> Result<(Literal, usize), SoqlError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.unexpected());
        };
        let value = match &token.tok {
            Tok::Str(s) => Literal::Str(s.clone()),
            Tok::Int(n) => Literal::Int(*n),
            Tok::Date(ms) => Literal::Date(*ms),
            Tok::DateTime(ms) => Literal::DateTime(*ms),
            Tok::Word(w) => match w.to_ascii_uppercase().as_str() {
                "TRUE" => Literal::Bool(true),
                "FALSE" => Literal::Bool(false),
                "NULL" => Literal::Null,
                "TODAY" => Literal::Relative(RelativeDate::Today),
                "YESTERDAY" => Literal::Relative(RelativeDate::Yesterday),
                "TOMORROW" => Literal::Relative(RelativeDate::Tomorrow),
                "LAST_N_DAYS" | "NEXT_N_DAYS" => {
                    let last = w.eq_ignore_ascii_case("LAST_N_DAYS");
                    self.at += 1;
                    self.expect(&Tok::Colon)?;
                    let (_, n) = self.count_value()?;
                    let relative = if last {
                        RelativeDate::LastNDays(n)
                    } else {
                        RelativeDate::NextNDays(n)
                    };
                    return Ok((Literal::Relative(relative), token.at));
                }
                _ => return Err(self.unexpected()),
            },
            _ => return Err(self.unexpected()),
        };
        self.at += 1;
        Ok((value, token.at))
    }

    fn order_item(&mut self, object: &'static SObject) -> Result<Order, SoqlError> {
        let (text, at) = self.name()?;
        let path = self.path(object, &text, at)?;
        let descending = if self.eat_keyword("DESC") {
            true
        } else {
            self.eat_keyword("ASC");
            false
        };
        // Salesforce sorts nulls first unless told otherwise.
        let mut nulls_last = false;
        if self.eat_keyword("NULLS") {
            if self.eat_keyword("LAST") {
                nulls_last = true;
            } else {
                self.expect_keyword("FIRST")?;
            }
        }
        Ok(Order {
            path,
            descending,
            nulls_last,
        })
    }
}

/// The object a relationship leads to.
pub(crate) fn object_of(relationship: &Relationship) -> &'static SObject {
    object(relationship.target).expect("relationships name known objects")
}

impl Path {
    /// `Rel.Rel.Field` with the schema's spelling.
    pub(crate) fn display(&self) -> String {
        let mut parts: Vec<&str> = self.hops.iter().map(|h| h.name).collect();
        parts.push(self.field.name);
        parts.join(".")
    }
}

/// Words that end a field list or a condition, so they are never taken for names.
fn is_reserved(word: &str) -> bool {
    const RESERVED: [&str; 14] = [
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT",
        "OFFSET", "NULL", "NULLS",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// Salesforce refuses a value of the wrong type for the field, and LIKE on non-text fields.
fn check_literal(
    soql: &str,
    path: &Path,
    op: Op,
    value: &Literal,
    at: usize,
) -> Result<(), SoqlError> {
    use FieldType::*;
    let kind = path.field.kind;
    let fits = match (kind, value) {
        (_, Literal::Null) => op != Op::Like,
        (Id | Text, Literal::Str(_)) => true,
        (Bool, Literal::Bool(_)) => matches!(op, Op::Eq | Op::Ne),
        (Int, Literal::Int(_)) => op != Op::Like,
        (DateTime, Literal::DateTime(_) | Literal::Relative(_)) => op != Op::Like,
        (Date, Literal::Date(_) | Literal::Relative(_)) => op != Op::Like,
        _ => false,
    };
    if fits {
        return Ok(());
    }
    let quoting = if matches!(kind, Id | Text) {
        "should be enclosed in quotes"
    } else {
        "should not be enclosed in quotes"
    };
    Err(SoqlError::at(
        soql,
        at,
        "INVALID_QUERY_FILTER_OPERATOR",
        &format!(
            "value of filter criterion for field '{}' must be of type {} and {quoting}",
            path.field.name,
            type_name(kind)
        ),
    ))
}
