//! Grammar tests: every construct the engine accepts, what it computes over small record sets,
//! and the error bodies (code, caret, row and column, reason) of what it refuses.

use super::eval::{Dataset, Row, like, run};
use super::parser::{Expr, Literal, MAX_OFFSET, Op, RelativeDate, Select, parse};
use serde_json::{Value, json};

/// 2026-03-15T12:00:00Z, the "now" of these tests.
const NOW_MS: i64 = 1_773_576_000_000;

fn row(v: Value) -> Row {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("rows are objects"),
    }
}

fn users() -> Vec<Row> {
    vec![
        row(
            json!({"Id": "005000000000001AAA", "Username": "b@x", "Name": "Bea", "IsActive": true,
                   "ProfileId": "00e000000000001AAA", "LastLoginDate": "2026-03-15T08:00:00.000+0000"}),
        ),
        row(
            json!({"Id": "005000000000002AAA", "Username": "a@x", "Name": "Al", "IsActive": false,
                   "ProfileId": "00e000000000002AAA", "LastLoginDate": "2026-03-14T08:00:00.000+0000"}),
        ),
        row(
            json!({"Id": "005000000000003AAA", "Username": "c_1@x", "Name": "Cy", "IsActive": true,
                   "ProfileId": "00e000000000001AAA", "LastLoginDate": null}),
        ),
    ]
}

fn dataset() -> Dataset {
    let mut data = Dataset {
        rows: users(),
        ..Dataset::default()
    };
    data.parents.insert(
        "Profile",
        vec![
            row(json!({"Id": "00e000000000001AAA", "Name": "Admin", "PermissionsModifyAllData": true})),
            row(json!({"Id": "00e000000000002AAA", "Name": "Std", "PermissionsModifyAllData": false})),
        ],
    );
    data
}

/// The usernames a query over [`users`] returns, in order.
fn usernames(soql: &str) -> Vec<String> {
    let q = parse(soql).unwrap_or_else(|e| panic!("{soql}: {e:?}"));
    run(&q, &dataset(), NOW_MS, "v67.0")
        .records
        .iter()
        .map(|r| r["Username"].as_str().unwrap_or("null").to_string())
        .collect()
}

fn error(soql: &str) -> (&'static str, String) {
    let e = parse(soql).expect_err(soql);
    (e.code, e.message)
}

#[test]
fn field_lists_and_case_insensitive_names() {
    let q = parse("select id, USERNAME, profile.name from user").unwrap();
    assert_eq!(q.object.name, "User");
    let Select::Fields(paths) = &q.select else {
        panic!("fields expected");
    };
    let names: Vec<String> = paths.iter().map(|p| p.display()).collect();
    assert_eq!(names, ["Id", "Username", "Profile.Name"]);
}

#[test]
fn relationship_fields_render_nested_parents() {
    let q = parse("SELECT Username, Profile.Name FROM User WHERE Username = 'b@x'").unwrap();
    let out = run(&q, &dataset(), NOW_MS, "v67.0");
    assert_eq!(
        out.records,
        [json!({
            "attributes": {"type": "User", "url": "/services/data/v67.0/sobjects/User/005000000000001AAA"},
            "Username": "b@x",
            "Profile": {
                "attributes": {"type": "Profile", "url": "/services/data/v67.0/sobjects/Profile/00e000000000001AAA"},
                "Name": "Admin"
            }
        })]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Profile.PermissionsModifyAllData = true"),
        ["b@x", "c_1@x"]
    );
}

#[test]
fn comparisons() {
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username = 'A@X'"),
        ["a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username != 'a@x'"),
        ["b@x", "c_1@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username <> 'a@x'"),
        ["b@x", "c_1@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username < 'b@x'"),
        ["a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username <= 'b@x'"),
        ["b@x", "a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username > 'b@x'"),
        ["c_1@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username >= 'b@x'"),
        ["b@x", "c_1@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE IsActive = false"),
        ["a@x"]
    );
    // An id matches its 15-character form.
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Id = '005000000000002'"),
        ["a@x"]
    );
}

#[test]
fn null_in_and_like() {
    assert_eq!(
        usernames("SELECT Username FROM User WHERE LastLoginDate = null"),
        ["c_1@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE LastLoginDate != NULL"),
        ["b@x", "a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username IN ('a@x', 'C_1@X')"),
        ["a@x", "c_1@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username NOT IN ('a@x')"),
        ["b@x", "c_1@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username LIKE 'A%'"),
        ["a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username LIKE '_@x'"),
        ["b@x", "a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username LIKE 'c\\_%'"),
        ["c_1@x"]
    );
    assert!(like("50%", "50\\%"));
    assert!(!like("500", "50\\%"));
    assert!(like("anything", "%"));
    assert!(!like("ab", "a"));
}

#[test]
fn and_or_not_and_parentheses() {
    assert_eq!(
        usernames("SELECT Username FROM User WHERE IsActive = true AND Username != 'b@x'"),
        ["c_1@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE Username = 'a@x' OR Username = 'b@x'"),
        ["b@x", "a@x"]
    );
    assert_eq!(
        usernames(
            "SELECT Username FROM User WHERE (Username = 'a@x' OR Username = 'b@x') AND IsActive = true"
        ),
        ["b@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE NOT IsActive = true"),
        ["a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE NOT (Username = 'a@x' OR Username = 'b@x')"),
        ["c_1@x"]
    );
    let q =
        parse("SELECT Id FROM User WHERE IsActive = true AND (Name = 'x' OR Name = 'y')").unwrap();
    assert!(matches!(q.filter, Some(Expr::And(ref items)) if matches!(items[1], Expr::Or(_))));
    // SOQL does not rank AND over OR: mixing them needs parentheses.
    for soql in [
        "SELECT Id FROM User WHERE Name = 'a' AND Name = 'b' OR Name = 'c'",
        "SELECT Id FROM User WHERE Name = 'a' OR Name = 'b' AND Name = 'c'",
    ] {
        let (code, message) = error(soql);
        assert_eq!(code, "MALFORMED_QUERY", "{soql}");
        assert!(
            message.ends_with("unexpected token: 'AND'")
                || message.ends_with("unexpected token: 'OR'")
        );
    }
}

#[test]
fn date_and_datetime_literals() {
    let q = parse("SELECT Id FROM User WHERE LastLoginDate > 2026-03-14T12:00:00Z").unwrap();
    assert!(matches!(
        q.filter,
        Some(Expr::Compare(_, Op::Gt, Literal::DateTime(_)))
    ));
    assert_eq!(
        usernames("SELECT Username FROM User WHERE LastLoginDate > 2026-03-14T12:00:00Z"),
        ["b@x"]
    );
    // 09:00+01:00 is 08:00Z, b's login time.
    assert_eq!(
        usernames("SELECT Username FROM User WHERE LastLoginDate < 2026-03-15T09:00:00.000+01:00"),
        ["a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE LastLoginDate <= 2026-03-15T09:00:00.000+01:00"),
        ["b@x", "a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE LastLoginDate = TODAY"),
        ["b@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE LastLoginDate = YESTERDAY"),
        ["a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE LastLoginDate < TODAY"),
        ["a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE LastLoginDate = TOMORROW"),
        Vec::<String>::new()
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE LastLoginDate = LAST_N_DAYS:1"),
        ["b@x", "a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User WHERE LastLoginDate = LAST_N_DAYS:0"),
        ["b@x"]
    );
    let q = parse("SELECT Id FROM User WHERE LastLoginDate >= NEXT_N_DAYS:3").unwrap();
    assert!(matches!(
        q.filter,
        Some(Expr::Compare(
            _,
            Op::Ge,
            Literal::Relative(RelativeDate::NextNDays(3))
        ))
    ));
    // A date literal is for date fields: a datetime field wants a datetime.
    let (code, message) = error("SELECT Id FROM User WHERE LastLoginDate > 2026-03-14");
    assert_eq!(code, "INVALID_QUERY_FILTER_OPERATOR");
    assert!(message.ends_with(
        "value of filter criterion for field 'LastLoginDate' must be of type datetime and should not be enclosed in quotes"
    ));
    assert_eq!(
        error("SELECT Id FROM User WHERE LastLoginDate > 2026-13-45").0,
        "MALFORMED_QUERY"
    );
}

#[test]
fn order_by_with_direction_and_nulls() {
    assert_eq!(
        usernames("SELECT Username FROM User ORDER BY Username"),
        ["a@x", "b@x", "c_1@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User ORDER BY Username DESC"),
        ["c_1@x", "b@x", "a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User ORDER BY LastLoginDate ASC"),
        ["c_1@x", "a@x", "b@x"],
        "nulls first by default"
    );
    assert_eq!(
        usernames("SELECT Username FROM User ORDER BY LastLoginDate ASC NULLS LAST"),
        ["a@x", "b@x", "c_1@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User ORDER BY LastLoginDate DESC NULLS FIRST"),
        ["c_1@x", "b@x", "a@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User ORDER BY Profile.Name DESC, Username ASC"),
        ["a@x", "b@x", "c_1@x"]
    );
}

#[test]
fn limit_offset_and_count() {
    assert_eq!(
        usernames("SELECT Username FROM User ORDER BY Username LIMIT 2"),
        ["a@x", "b@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User ORDER BY Username LIMIT 1 OFFSET 1"),
        ["b@x"]
    );
    assert_eq!(
        usernames("SELECT Username FROM User OFFSET 5"),
        Vec::<String>::new()
    );
    let q = parse("SELECT COUNT() FROM User WHERE IsActive = true").unwrap();
    assert_eq!(q.select, Select::Count);
    let out = run(&q, &dataset(), NOW_MS, "v67.0");
    assert_eq!((out.total, out.records.len()), (2, 0));
    let q = parse("select count() from User limit 1").unwrap();
    assert_eq!(run(&q, &dataset(), NOW_MS, "v67.0").total, 1);
    assert!(parse(&format!("SELECT Id FROM User OFFSET {MAX_OFFSET}")).is_ok());
    let (code, message) = error("SELECT Id FROM User OFFSET 2001");
    assert_eq!(code, "NUMBER_OUTSIDE_VALID_RANGE");
    assert!(
        message.ends_with("Maximum SOQL offset allowed is 2000"),
        "{message}"
    );
}

#[test]
fn string_escapes() {
    let q = parse(r"SELECT Id FROM User WHERE Name = 'O\'Brien \\ \n'").unwrap();
    assert!(
        matches!(q.filter, Some(Expr::Compare(_, Op::Eq, Literal::Str(ref s))) if s == "O'Brien \\ \n")
    );
}

#[test]
fn error_bodies_name_the_token_with_a_caret() {
    let (code, message) = error("SELECT Id FROM Bogus");
    assert_eq!(code, "INVALID_TYPE");
    assert_eq!(
        message,
        "\nSELECT Id FROM Bogus\n               ^\nERROR at Row:1:Column:16\nsObject type 'Bogus' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
    );
    let (code, message) = error("SELECT Id, FullName FROM User");
    assert_eq!(code, "INVALID_FIELD");
    assert!(
        message.starts_with(
            "\nSELECT Id, FullName FROM User\n           ^\nERROR at Row:1:Column:12\nNo such column 'FullName' on entity 'User'."
        ),
        "{message}"
    );
    let (code, message) = error("SELECT Id FROM User WHERE Nope.Name = 'x'");
    assert_eq!(code, "INVALID_FIELD");
    assert!(
        message.contains("Didn't understand relationship 'Nope' in field path"),
        "{message}"
    );
    let (code, message) = error("SELECT Id FROM LoginHistory WHERE Status = 'Success'");
    assert_eq!(code, "INVALID_FIELD");
    assert!(message.ends_with("field 'Status' can not be filtered in a query call"));
    let (code, message) = error("SELECT Id FROM User\nWHERE Name = 'x' LIMIT");
    assert_eq!(code, "MALFORMED_QUERY");
    assert_eq!(
        message,
        "\nWHERE Name = 'x' LIMIT\n                      ^\nERROR at Row:2:Column:23\nunexpected token: <EOF>"
    );
    let (code, message) = error("SELECT Id FROM User WHERE Name == 'x'");
    assert_eq!(code, "MALFORMED_QUERY");
    assert!(
        message.ends_with("ERROR at Row:1:Column:33\nunexpected token: '='"),
        "{message}"
    );
}

#[test]
fn malformed_queries() {
    for soql in [
        "",
        "SELECT",
        "SELECT FROM User",
        "SELECT Id User",
        "SELECT Id, FROM User",
        "SELECT Id FROM User WHERE",
        "SELECT Id FROM User WHERE Name",
        "SELECT Id FROM User WHERE Name = 'unterminated",
        "SELECT Id FROM User WHERE Name = 'bad\\q'",
        "SELECT Id FROM User WHERE (Name = 'a'",
        "SELECT Id FROM User WHERE Name IN ()",
        "SELECT Id FROM User ORDER Username",
        "SELECT Id FROM User ORDER BY Username NULLS",
        "SELECT Id FROM User LIMIT -1",
        "SELECT Id FROM User LIMIT 'x'",
        "SELECT Id, id FROM User",
        "SELECT COUNT( FROM User",
        "SELECT COUNT() FROM User ORDER BY Id",
        "SELECT Id FROM User WHERE LastLoginDate = LAST_N_DAYS",
        "SELECT Id FROM User WHERE Name = 'a' extra",
        "SELECT Id FROM User WHERE Name = #",
    ] {
        assert_eq!(error(soql).0, "MALFORMED_QUERY", "{soql:?}");
    }
}

#[test]
fn literal_types_must_fit_the_field() {
    for (soql, expected) in [
        (
            "SELECT Id FROM User WHERE IsActive = 'true'",
            "boolean and should not be enclosed in quotes",
        ),
        (
            "SELECT Id FROM User WHERE Username = true",
            "string and should be enclosed in quotes",
        ),
        (
            "SELECT Id FROM OauthToken WHERE UseCount = '1'",
            "int and should not be enclosed in quotes",
        ),
        (
            "SELECT Id FROM User WHERE IsActive > true",
            "boolean and should not be enclosed in quotes",
        ),
        (
            "SELECT Id FROM OauthToken WHERE UseCount LIKE 1",
            "int and should not be enclosed in quotes",
        ),
    ] {
        let (code, message) = error(soql);
        assert_eq!(code, "INVALID_QUERY_FILTER_OPERATOR", "{soql}");
        assert!(message.ends_with(expected), "{soql}: {message}");
    }
    assert!(
        parse("SELECT Id FROM OauthToken WHERE UseCount >= 2 AND User.Username LIKE '%@x'").is_ok()
    );
}

#[test]
fn parent_objects_are_the_ones_paths_reach() {
    let q = parse(
        "SELECT Assignee.Username FROM PermissionSetAssignment WHERE PermissionSet.Profile.Name = 'x' ORDER BY Assignee.Name",
    )
    .unwrap();
    let mut parents = q.parent_objects();
    parents.sort_unstable();
    assert_eq!(parents, ["PermissionSet", "Profile", "User"]);
}
