//! Runs a parsed [`Query`] over records: follows relationship paths to parent records, filters
//! (`WHERE`), sorts (`ORDER BY`), skips (`OFFSET`), cuts (`LIMIT`), counts (`COUNT()`) and renders
//! the records as the REST API does (`attributes` first, parents nested).

use super::parser::{Expr, Literal, Op, Path, Query, RelativeDate, Select, object_of};
use super::schema::{FieldType, Relationship, SObject};
use crate::state::same_id;
use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::collections::HashMap;

/// A record: field name → value (datetimes as `2026-01-01T00:00:00.000+0000`, dates as
/// `2026-01-01`).
pub(crate) type Row = Map<String, Value>;

const DAY_MS: i64 = 86_400_000;

/// What a query runs over: the queried object's rows the caller may see, and every row of each
/// object a relationship path reaches.
#[derive(Debug, Default)]
pub(crate) struct Dataset {
    pub(crate) rows: Vec<Row>,
    pub(crate) parents: HashMap<&'static str, Vec<Row>>,
}

/// A query's answer before paging: `totalSize` and the rendered records.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) total: usize,
    pub(crate) records: Vec<Value>,
}

/// Runs `q` at simulated time `now_ms`; record URLs name API `version` (`v67.0`).
pub(crate) fn run(q: &Query, data: &Dataset, now_ms: i64, version: &str) -> Outcome {
    let mut rows: Vec<&Row> = data
        .rows
        .iter()
        .filter(|row| {
            q.filter
                .as_ref()
                .is_none_or(|e| data.matches(e, row, now_ms))
        })
        .collect();
    if !q.order.is_empty() {
        rows.sort_by(|a, b| {
            q.order
                .iter()
                .map(|o| {
                    let (x, y) = (data.resolve(a, &o.path), data.resolve(b, &o.path));
                    match (x.is_null(), y.is_null()) {
                        (true, true) => Ordering::Equal,
                        (true, false) if o.nulls_last => Ordering::Greater,
                        (true, false) => Ordering::Less,
                        (false, true) if o.nulls_last => Ordering::Less,
                        (false, true) => Ordering::Greater,
                        (false, false) if o.descending => compare(y, x),
                        (false, false) => compare(x, y),
                    }
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        });
    }
    let limit = q.limit.unwrap_or(usize::MAX);
    let kept = rows.into_iter().skip(q.offset).take(limit);
    match &q.select {
        Select::Count => Outcome {
            total: kept.count(),
            records: Vec::new(),
        },
        Select::Fields(paths) => {
            let records: Vec<Value> = kept
                .map(|row| {
                    let mut out = attributes(row, q.object, version);
                    for path in paths {
                        data.put(&mut out, row, &path.hops, path, version);
                    }
                    Value::Object(out)
                })
                .collect();
            Outcome {
                total: records.len(),
                records,
            }
        }
    }
}

/// A record's `attributes`: its type and its REST URL (null without an id).
fn attributes(row: &Row, object: &SObject, version: &str) -> Row {
    let url = match row.get("Id") {
        Some(Value::String(id)) => json!(format!(
            "/services/data/{version}/sobjects/{}/{id}",
            object.name
        )),
        _ => Value::Null,
    };
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        json!({"type": object.name, "url": url}),
    );
    out
}

impl Dataset {
    /// The parent record a relationship of `row` points at.
    fn parent(&self, row: &Row, hop: &Relationship) -> Option<&Row> {
        let id = row.get(hop.id_field)?.as_str()?;
        self.parents.get(hop.target)?.iter().find(|p| {
            p.get("Id")
                .and_then(Value::as_str)
                .is_some_and(|pid| same_id(pid, id))
        })
    }

    /// The value at the end of a path (null when a parent is missing).
    fn resolve<'a>(&'a self, row: &'a Row, path: &Path) -> &'a Value {
        let mut current = row;
        for hop in &path.hops {
            match self.parent(current, hop) {
                Some(p) => current = p,
                None => return &Value::Null,
            }
        }
        current.get(path.field.name).unwrap_or(&Value::Null)
    }

    /// Writes a selected path into `out`: a field, or a nested parent record holding it.
    fn put(&self, out: &mut Row, row: &Row, hops: &[&'static Relationship], path: &Path, v: &str) {
        let Some((hop, rest)) = hops.split_first() else {
            let value = row.get(path.field.name).cloned().unwrap_or(Value::Null);
            out.insert(path.field.name.into(), value);
            return;
        };
        let Some(parent) = self.parent(row, hop) else {
            out.entry(hop.name).or_insert(Value::Null);
            return;
        };
        let target = object_of(hop);
        let entry = out
            .entry(hop.name)
            .or_insert_with(|| Value::Object(attributes(parent, target, v)));
        if let Value::Object(nested) = entry {
            self.put(nested, parent, rest, path, v);
        }
    }

    fn matches(&self, e: &Expr, row: &Row, now_ms: i64) -> bool {
        match e {
            Expr::And(items) => items.iter().all(|i| self.matches(i, row, now_ms)),
            Expr::Or(items) => items.iter().any(|i| self.matches(i, row, now_ms)),
            Expr::Not(inner) => !self.matches(inner, row, now_ms),
            Expr::Compare(path, op, lit) => {
                compare_value(self.resolve(row, path), path.field.kind, *op, lit, now_ms)
            }
            Expr::In(path, negated, values) => {
                let v = self.resolve(row, path);
                let found = values
                    .iter()
                    .any(|lit| compare_value(v, path.field.kind, Op::Eq, lit, now_ms));
                found != *negated
            }
        }
    }
}

/// Orders two non-null values of the same field: text case-insensitively (datetimes in
/// Salesforce's format sort as text), numbers and booleans by value.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// Whether `value` (a field of type `kind`) satisfies `op literal`.
fn compare_value(value: &Value, kind: FieldType, op: Op, lit: &Literal, now_ms: i64) -> bool {
    if *lit == Literal::Null || value.is_null() {
        let both_null = *lit == Literal::Null && value.is_null();
        return match op {
            Op::Eq => both_null,
            Op::Ne => !both_null,
            _ => false,
        };
    }
    let ordering = match (lit, value) {
        (Literal::Str(s), Value::String(v)) => {
            if op == Op::Like {
                return like(v, s);
            }
            if kind == FieldType::Id && same_id(v, s) {
                Ordering::Equal
            } else {
                v.to_lowercase().cmp(&s.to_lowercase())
            }
        }
        (Literal::Int(n), Value::Number(v)) => match v.as_i64() {
            Some(v) => v.cmp(n),
            None => return false,
        },
        (Literal::Bool(b), Value::Bool(v)) => v.cmp(b),
        (Literal::DateTime(ms), Value::String(v)) => {
            return in_range(to_ms(v, kind), (*ms, ms + 1), op);
        }
        (Literal::Date(ms), Value::String(v)) => {
            return in_range(to_ms(v, kind), (*ms, ms + DAY_MS), op);
        }
        (Literal::Relative(r), Value::String(v)) => {
            return in_range(to_ms(v, kind), relative_range(*r, now_ms), op);
        }
        _ => return false,
    };
    match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Lt => ordering == Ordering::Less,
        Op::Gt => ordering == Ordering::Greater,
        Op::Le => ordering != Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Like => false,
    }
}

/// Whether a time satisfies `op` against the half-open span `[start, end)` a literal covers:
/// `=` is inside it, `<` before it, `>` after it.
fn in_range(ms: Option<i64>, (start, end): (i64, i64), op: Op) -> bool {
    let Some(ms) = ms else {
        return false;
    };
    match op {
        Op::Eq => start <= ms && ms < end,
        Op::Ne => !(start <= ms && ms < end),
        Op::Lt => ms < start,
        Op::Le => ms < end,
        Op::Gt => ms >= end,
        Op::Ge => ms >= start,
        Op::Like => false,
    }
}

/// The span a relative date literal covers, in UTC days around `now_ms`.
fn relative_range(r: RelativeDate, now_ms: i64) -> (i64, i64) {
    let today = now_ms.div_euclid(DAY_MS) * DAY_MS;
    match r {
        RelativeDate::Today => (today, today + DAY_MS),
        RelativeDate::Yesterday => (today - DAY_MS, today),
        RelativeDate::Tomorrow => (today + DAY_MS, today + 2 * DAY_MS),
        // "Starts with the current day and continues for the past n days."
        RelativeDate::LastNDays(n) => (today - n * DAY_MS, today + DAY_MS),
        RelativeDate::NextNDays(n) => (today + DAY_MS, today + (n + 1) * DAY_MS),
    }
}

/// A record's datetime or date text in unix milliseconds.
fn to_ms(text: &str, kind: FieldType) -> Option<i64> {
    if kind == FieldType::Date {
        let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        return Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .ok()
        .map(|d| d.timestamp_millis())
}

/// SOQL `LIKE`, case-insensitive: `%` any run, `_` one character, `\%` and `\_` themselves.
pub(crate) fn like(text: &str, pattern: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Char(char),
    }
    let mut parts = Vec::new();
    let mut chars = pattern.chars().flat_map(char::to_lowercase).peekable();
    while let Some(c) = chars.next() {
        parts.push(match c {
            '\\' if matches!(chars.peek(), Some('%' | '_')) => {
                P::Char(chars.next().expect("peeked"))
            }
            '%' => P::Any,
            '_' => P::One,
            c => P::Char(c),
        });
    }
    let text: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    // matched[j]: the pattern's first i parts match the text's first j characters.
    let mut matched = vec![false; text.len() + 1];
    matched[0] = true;
    for part in parts {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            next[j] = match part {
                P::Any => matched[j] || (j > 0 && next[j - 1]),
                P::One => j > 0 && matched[j - 1],
                P::Char(c) => j > 0 && matched[j - 1] && text[j - 1] == c,
            };
        }
        matched = next;
    }
    matched[text.len()]
}
