use serde_json::json;

use super::{super::prepare::prepared, *};

const INPUT: Ty = Ty::NonNull(&Ty::Named("InventoryAdjustQuantitiesInput"));

fn run(value: Value) -> (Option<Value>, Vec<(String, String)>) {
    let mut problems = Vec::new();
    let out = coerce(INPUT, Some(&value), &mut Vec::new(), &mut problems);
    (
        out,
        problems
            .into_iter()
            .map(|p| (p.dotted_path(), p.explanation))
            .collect(),
    )
}

#[test]
fn missing_non_null_fields_and_unknown_fields_are_problems() {
    let (_, problems) = run(json!({
        "name": "incoming", "reason": "correction", "bogus": 1,
        "changes": [{"locationId": "gid://shopify/Location/1", "delta": 2}]
    }));
    assert_eq!(
        problems,
        vec![
            (
                "bogus".into(),
                "Field is not defined on InventoryAdjustQuantitiesInput".into()
            ),
            (
                "changes.0.inventoryItemId".into(),
                "Expected value to not be null".into()
            ),
        ]
    );
}

#[test]
fn absent_stays_absent_and_null_stays_null() {
    let (out, problems) = run(json!({
        "name": "available", "reason": "correction",
        "changes": [
            {"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": 2, "delta": 1},
            {"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": "x", "delta": 1, "changeFromQuantity": null}
        ]
    }));
    assert!(problems.is_empty(), "{problems:?}");
    let out = out.expect("coerced");
    assert!(out["changes"][0].get("changeFromQuantity").is_none());
    assert_eq!(out["changes"][1]["changeFromQuantity"], Value::Null);
    assert_eq!(out["changes"][0]["locationId"], json!("2"));
    assert!(out.get("referenceDocumentUri").is_none());
}

#[test]
fn ints_are_32_bit_and_not_floats() {
    for bad in [json!(2_147_483_648_i64), json!(1.0), json!("1")] {
        let (_, problems) = run(json!({
            "name": "available", "reason": "correction",
            "changes": [{"inventoryItemId": "a", "locationId": "b", "delta": bad}]
        }));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "changes.0.delta");
        assert!(
            problems[0].1.starts_with("Could not coerce value"),
            "{problems:?}"
        );
    }
}

#[test]
fn a_single_value_is_a_list_of_one_and_non_objects_are_refused() {
    let (out, problems) = run(json!({
        "name": "available", "reason": "correction",
        "changes": {"inventoryItemId": "a", "locationId": "b", "delta": 1}
    }));
    assert!(problems.is_empty());
    assert_eq!(
        out.expect("coerced")["changes"].as_array().map(Vec::len),
        Some(1)
    );
    let (_, problems) = run(json!("nope"));
    assert_eq!(problems[0].1, "Expected \"nope\" to be a key-value object.");
    let (_, problems) = run(Value::Null);
    assert_eq!(problems[0].1, "Expected value to not be null");
}

#[test]
fn literals_substitute_variables_and_drop_absent_ones() {
    let doc = graphql_parser::parse_query::<String>(
        r#"{ f(a: {x: $v, y: $missing, z: [1, ENUM, "s", null, 2.5]}) }"#,
    )
    .expect("parses")
    .into_static();
    let graphql_parser::query::Definition::Operation(
        graphql_parser::query::OperationDefinition::SelectionSet(set),
    ) = &doc.definitions[0]
    else {
        panic!("shorthand query")
    };
    let graphql_parser::query::Selection::Field(field) = &set.items[0] else {
        panic!("field")
    };
    let mut variables = Map::new();
    variables.insert("v".into(), json!(7));
    let value = literal_to_json(&field.arguments[0].1, &variables).expect("present");
    assert_eq!(value, json!({"x": 7, "z": [1, "ENUM", "s", null, 2.5]}));
}

#[test]
fn invalid_variables_name_the_path_like_shopify() {
    let errors = prepared(
        "mutation M($input: InventoryAdjustQuantitiesInput!) { inventoryAdjustQuantities(input: $input) { userErrors { message } } }",
        json!({"input": {"name": "incoming", "reason": "correction", "changes": [{"locationId": "gid://shopify/Location/1", "delta": 2}]}}),
        |_| (),
    )
    .expect_err("invalid");
    assert_eq!(
        errors[0].get("message"),
        Some(&Out::str(
            "Variable $input of type InventoryAdjustQuantitiesInput! was provided invalid value for changes.0.inventoryItemId (Expected value to not be null)"
        ))
    );
    let missing = prepared(
        "mutation M($input: InventoryAdjustQuantitiesInput!) { inventoryAdjustQuantities(input: $input) { userErrors { message } } }",
        json!({}),
        |_| (),
    )
    .expect_err("missing");
    assert_eq!(
        missing[0].get("message"),
        Some(&Out::str(
            "Variable $input of type InventoryAdjustQuantitiesInput! was provided invalid value (Expected value to not be null)"
        ))
    );
}
