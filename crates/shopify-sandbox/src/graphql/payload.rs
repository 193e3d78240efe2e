//! The payload of `inventoryAdjustQuantities` as the executor renders it: the applied group,
//! its changes (the adjusted name's, then the `on_hand` mirrors), the app that made it, the
//! staff member Shopify refuses to show an app, and the user errors.

use std::sync::Arc;

use graphql_parser::query::Field;

use super::{
    errors::error,
    exec::{Executor, Obj, R, int, leaf_opt, leaf_str, time},
    value::Out,
};
use crate::{adjust::UserError, store::AppliedGroup};

/// The payload of `inventoryAdjustQuantities`.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The applied group (null for a no-op or a refusal).
    pub group: Option<Arc<AppliedGroup>>,
    /// The user errors.
    pub user_errors: Arc<Vec<UserError>>,
}

impl<'d> Executor<'_, 'd> {
    /// A field of the payload, a user error, the group, a change, the app or the staff member.
    pub(super) fn resolve_payload(
        &mut self,
        obj: &Obj,
        field: &'d Field<'static, String>,
        path: &[Out],
    ) -> R {
        let name = field.name.as_str();
        let shop = self.shop;
        match obj {
            Obj::Payload(payload) => match name {
                "inventoryAdjustmentGroup" => payload
                    .group
                    .as_ref()
                    .map_or(R::Null, |g| R::Object(Obj::Group(Arc::clone(g)))),
                "userErrors" => R::List(
                    (0..payload.user_errors.len())
                        .map(|i| R::Object(Obj::UserError(Arc::clone(&payload.user_errors), i)))
                        .collect(),
                ),
                _ => R::Null,
            },
            Obj::UserError(errors, i) => {
                let Some(e) = errors.get(*i) else {
                    return R::Null;
                };
                match name {
                    "field" => e.field.as_ref().map_or(R::Null, |f| {
                        R::List(f.iter().map(|s| leaf_str(s.clone())).collect())
                    }),
                    "message" => leaf_str(e.message.clone()),
                    "code" => leaf_str(e.code),
                    _ => R::Null,
                }
            }
            Obj::Group(group) => match name {
                "id" => leaf_str(format!(
                    "gid://shopify/InventoryAdjustmentGroup/{}",
                    group.id
                )),
                "createdAt" => R::Leaf(time(group.created_at)),
                "reason" => leaf_str(group.reason.clone()),
                "referenceDocumentUri" => leaf_opt(group.reference_document_uri.as_deref()),
                "app" => R::Object(Obj::App(group.app_id)),
                "staffMember" => {
                    // Shopify refuses this field to apps without `read_users` and still
                    // returns the rest of the payload (2025-01 parity fixture); the object
                    // is charged for all the same.
                    self.actual_cost += 1;
                    self.errors.push(error(
                        "Access denied for staffMember field. Required access: `read_users` access scope. Also: The app must be a finance embedded app or installed on a Shopify Plus or Advanced store. Contact Shopify Support to enable this scope for your app.",
                        &[field.position],
                        Some(path.to_vec()),
                        vec![
                            ("code", Out::str("ACCESS_DENIED")),
                            ("documentation", Out::str("https://shopify.dev/api/usage/access-scopes")),
                            ("requiredAccess", Out::str("`read_users` access scope. Also: The app must be a finance embedded app or installed on a Shopify Plus or Advanced store. Contact Shopify Support to enable this scope for your app.")),
                        ],
                    ));
                    R::Null
                }
                "changes" => R::List(
                    (0..group.changes.len())
                        .map(|i| R::Object(Obj::Change(Arc::clone(group), i)))
                        .collect(),
                ),
                _ => R::Null,
            },
            Obj::Change(group, i) => {
                let Some(change) = group.changes.get(*i) else {
                    return R::Null;
                };
                match name {
                    "name" => leaf_str(change.name.as_str()),
                    "delta" => int(change.delta),
                    // Shopify answers null here for API apps (every fixture).
                    "quantityAfterChange" => R::Null,
                    "ledgerDocumentUri" => leaf_opt(change.ledger_document_uri.as_deref()),
                    "item" => R::Object(Obj::Item(change.inventory_item_id)),
                    "location" => R::Object(Obj::Location(change.location_id)),
                    _ => R::Null,
                }
            }
            Obj::App(id) => {
                let app = shop.app(*id);
                match name {
                    "id" => leaf_str(format!("gid://shopify/App/{id}")),
                    "title" => leaf_opt(app.map(|a| a.title.as_str())),
                    "handle" => leaf_opt(app.map(|a| a.handle.as_str())),
                    "apiKey" => leaf_opt(app.map(|a| a.api_key.as_str())),
                    _ => R::Null,
                }
            }
            Obj::StaffMember => R::Null,
            _ => R::Null,
        }
    }
}
