//! The SOQL engine: [`lexer`] → [`parser`] (a recursive-descent grammar into an AST, names
//! checked against [`schema`]) → [`eval`] over the org's records. Errors carry Salesforce's
//! error code and its message layout: the query, a caret under the offending token, its row and
//! column, and the reason.

pub(crate) mod eval;
mod lexer;
pub(crate) mod parser;
pub(crate) mod schema;

#[cfg(test)]
mod tests;

pub(crate) use eval::{Dataset, Row, run};
pub(crate) use parser::{Query, Select, parse};

/// A refused query: Salesforce's `errorCode` and `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SoqlError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl SoqlError {
    /// An error at character offset `at` of `soql`, in Salesforce's layout:
    /// `\n<query line>\n<spaces>^\nERROR at Row:<r>:Column:<c>\n<reason>`.
    pub(crate) fn at(soql: &str, at: usize, code: &'static str, reason: &str) -> SoqlError {
        let before: String = soql.chars().take(at).collect();
        let row = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        let line = soql.lines().nth(row - 1).unwrap_or("");
        let caret = " ".repeat(column - 1);
        SoqlError {
            code,
            message: format!("\n{line}\n{caret}^\nERROR at Row:{row}:Column:{column}\n{reason}"),
        }
    }

    /// `MALFORMED_QUERY` at `at`.
    pub(crate) fn malformed(soql: &str, at: usize, reason: &str) -> SoqlError {
        SoqlError::at(soql, at, "MALFORMED_QUERY", reason)
    }
}

impl Query {
    /// Every object a relationship path of this query reaches (their rows are needed to
    /// resolve it).
    pub(crate) fn parent_objects(&self) -> Vec<&'static str> {
        let mut paths: Vec<&parser::Path> = Vec::new();
        if let Select::Fields(fields) = &self.select {
            paths.extend(fields);
        }
        paths.extend(self.order.iter().map(|o| &o.path));
        let mut stack: Vec<&parser::Expr> = self.filter.iter().collect();
        while let Some(e) = stack.pop() {
            match e {
                parser::Expr::And(items) | parser::Expr::Or(items) => stack.extend(items),
                parser::Expr::Not(inner) => stack.push(inner),
                parser::Expr::Compare(p, _, _) | parser::Expr::In(p, _, _) => paths.push(p),
            }
        }
        let mut objects: Vec<&'static str> = Vec::new();
        for hop in paths.iter().flat_map(|p| &p.hops) {
            if !objects.contains(&hop.target) {
                objects.push(hop.target);
            }
        }
        objects
    }
}
