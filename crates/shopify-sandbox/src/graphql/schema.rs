//! The slice of Shopify's Admin GraphQL schema the sandbox serves.
//!
//! Object, interface, input and leaf types with their fields and arguments, used by the
//! validator (unknown fields and arguments are refused the way Shopify refuses them), the
//! input coercion, the cost calculator and the executor. Field names and types follow the
//! Admin API; only what the services, `wos-sync` and the captured fixtures read is present
//! (an unknown field is refused as Shopify refuses a misspelt one).

/// A type reference: `ID`, `ID!`, `[InventoryChangeInput!]!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A named type.
    Named(&'static str),
    /// A non-null wrapper.
    NonNull(&'static Ty),
    /// A list wrapper.
    List(&'static Ty),
}

impl Ty {
    /// The innermost named type.
    pub fn named(self) -> &'static str {
        match self {
            Self::Named(name) => name,
            Self::NonNull(inner) | Self::List(inner) => inner.named(),
        }
    }

    /// Whether the outer wrapper is non-null.
    pub fn is_non_null(self) -> bool {
        matches!(self, Self::NonNull(_))
    }

    /// The type without its outer non-null wrapper.
    pub fn nullable(self) -> Ty {
        match self {
            Self::NonNull(inner) => *inner,
            other => other,
        }
    }

    /// Whether there is a list wrapper (outside any non-null).
    pub fn is_list(self) -> bool {
        matches!(self.nullable(), Self::List(_))
    }
}

impl std::fmt::Display for Ty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(name) => f.write_str(name),
            Self::NonNull(inner) => write!(f, "{inner}!"),
            Self::List(inner) => write!(f, "[{inner}]"),
        }
    }
}

const fn n(name: &'static str) -> Ty {
    Ty::Named(name)
}

macro_rules! nn {
    ($name:expr) => {
        Ty::NonNull(&Ty::Named($name))
    };
}

macro_rules! list_nn {
    ($name:expr) => {
        Ty::NonNull(&Ty::List(&Ty::NonNull(&Ty::Named($name))))
    };
}

/// An argument of a field (or a field of an input object).
#[derive(Debug, Clone, Copy)]
pub struct ArgDef {
    /// Name.
    pub name: &'static str,
    /// Type.
    pub ty: Ty,
}

const fn arg(name: &'static str, ty: Ty) -> ArgDef {
    ArgDef { name, ty }
}

/// A field of an object or interface.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    /// Name.
    pub name: &'static str,
    /// Type.
    pub ty: Ty,
    /// Arguments.
    pub args: &'static [ArgDef],
}

const fn f(name: &'static str, ty: Ty) -> FieldDef {
    FieldDef {
        name,
        ty,
        args: &[],
    }
}

const fn fa(name: &'static str, ty: Ty, args: &'static [ArgDef]) -> FieldDef {
    FieldDef { name, ty, args }
}

/// An object or interface type.
#[derive(Debug)]
pub struct ObjectDef {
    /// Name.
    pub name: &'static str,
    /// Fields (`__typename` is implicit).
    pub fields: &'static [FieldDef],
    /// For interfaces: the object types implementing it.
    pub possible_types: &'static [&'static str],
}

impl ObjectDef {
    /// The field with this name.
    pub fn field(&self, name: &str) -> Option<&'static FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether this is an interface.
    pub fn is_interface(&self) -> bool {
        !self.possible_types.is_empty()
    }
}

/// An input object type.
#[derive(Debug)]
pub struct InputDef {
    /// Name.
    pub name: &'static str,
    /// Fields.
    pub fields: &'static [ArgDef],
}

/// What a named type is.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A scalar (`ID`, `Int`, `String`, …).
    Scalar,
    /// An enum.
    Enum,
    /// An object or interface.
    Object(&'static ObjectDef),
    /// An input object.
    Input(&'static InputDef),
}

/// A page: `first` or `last` (one of them required, at most 250), cursors, `reverse`.
const PAGE_ARGS: &[ArgDef] = &[
    arg("first", n("Int")),
    arg("after", n("String")),
    arg("last", n("Int")),
    arg("before", n("String")),
    arg("reverse", n("Boolean")),
];

/// A page with a search (`query: "sku:…"`).
const SEARCH_PAGE_ARGS: &[ArgDef] = &[
    arg("first", n("Int")),
    arg("after", n("String")),
    arg("last", n("Int")),
    arg("before", n("String")),
    arg("reverse", n("Boolean")),
    arg("query", n("String")),
];

static QUERY_ROOT: ObjectDef = ObjectDef {
    name: "QueryRoot",
    fields: &[
        fa(
            "productVariants",
            nn!("ProductVariantConnection"),
            SEARCH_PAGE_ARGS,
        ),
        fa("locations", nn!("LocationConnection"), PAGE_ARGS),
        fa(
            "nodes",
            Ty::NonNull(&Ty::List(&Ty::Named("Node"))),
            &[arg("ids", list_nn!("ID"))],
        ),
        f("shop", nn!("Shop")),
        f("currentAppInstallation", nn!("AppInstallation")),
    ],
    possible_types: &[],
};

static MUTATION: ObjectDef = ObjectDef {
    name: "Mutation",
    fields: &[fa(
        "inventoryAdjustQuantities",
        n("InventoryAdjustQuantitiesPayload"),
        &[arg("input", nn!("InventoryAdjustQuantitiesInput"))],
    )],
    possible_types: &[],
};

static ADJUST_PAYLOAD: ObjectDef = ObjectDef {
    name: "InventoryAdjustQuantitiesPayload",
    fields: &[
        f("inventoryAdjustmentGroup", n("InventoryAdjustmentGroup")),
        f("userErrors", list_nn!("InventoryAdjustQuantitiesUserError")),
    ],
    possible_types: &[],
};

static ADJUST_USER_ERROR: ObjectDef = ObjectDef {
    name: "InventoryAdjustQuantitiesUserError",
    fields: &[
        f("field", Ty::List(&Ty::NonNull(&Ty::Named("String")))),
        f("message", nn!("String")),
        f("code", n("InventoryAdjustQuantitiesUserErrorCode")),
    ],
    possible_types: &[],
};

static GROUP: ObjectDef = ObjectDef {
    name: "InventoryAdjustmentGroup",
    fields: &[
        f("id", nn!("ID")),
        f("createdAt", nn!("DateTime")),
        f("reason", nn!("String")),
        f("referenceDocumentUri", n("URL")),
        f("app", nn!("App")),
        f("staffMember", n("StaffMember")),
        f("changes", list_nn!("InventoryChange")),
    ],
    possible_types: &[],
};

static CHANGE: ObjectDef = ObjectDef {
    name: "InventoryChange",
    fields: &[
        f("name", nn!("String")),
        f("delta", nn!("Int")),
        f("quantityAfterChange", n("Int")),
        f("ledgerDocumentUri", n("URL")),
        f("item", n("InventoryItem")),
        f("location", n("Location")),
    ],
    possible_types: &[],
};

static APP: ObjectDef = ObjectDef {
    name: "App",
    fields: &[
        f("id", nn!("ID")),
        f("title", nn!("String")),
        f("handle", n("String")),
        f("apiKey", nn!("String")),
    ],
    possible_types: &[],
};

static APP_INSTALLATION: ObjectDef = ObjectDef {
    name: "AppInstallation",
    fields: &[
        f("id", nn!("ID")),
        f("app", nn!("App")),
        f("accessScopes", list_nn!("AccessScope")),
    ],
    possible_types: &[],
};

static ACCESS_SCOPE: ObjectDef = ObjectDef {
    name: "AccessScope",
    fields: &[f("handle", nn!("String")), f("description", nn!("String"))],
    possible_types: &[],
};

static STAFF_MEMBER: ObjectDef = ObjectDef {
    name: "StaffMember",
    fields: &[
        f("id", nn!("ID")),
        f("name", nn!("String")),
        f("email", nn!("String")),
    ],
    possible_types: &[],
};

static INVENTORY_ITEM: ObjectDef = ObjectDef {
    name: "InventoryItem",
    fields: &[f("id", nn!("ID"))],
    possible_types: &[],
};

static VARIANT: ObjectDef = ObjectDef {
    name: "ProductVariant",
    fields: &[
        f("id", nn!("ID")),
        f("sku", n("String")),
        f("title", nn!("String")),
        f("barcode", n("String")),
        f("price", nn!("Money")),
        f("createdAt", nn!("DateTime")),
        f("updatedAt", nn!("DateTime")),
        f("inventoryItem", nn!("InventoryItem")),
        f("product", nn!("Product")),
    ],
    possible_types: &[],
};

static PRODUCT: ObjectDef = ObjectDef {
    name: "Product",
    fields: &[
        f("id", nn!("ID")),
        f("title", nn!("String")),
        f("vendor", nn!("String")),
        f("productType", nn!("String")),
        f("updatedAt", nn!("DateTime")),
    ],
    possible_types: &[],
};

static LOCATION: ObjectDef = ObjectDef {
    name: "Location",
    fields: &[
        f("id", nn!("ID")),
        f("name", nn!("String")),
        f("isActive", nn!("Boolean")),
    ],
    possible_types: &[],
};

static SHOP: ObjectDef = ObjectDef {
    name: "Shop",
    fields: &[
        f("id", nn!("ID")),
        f("name", nn!("String")),
        f("myshopifyDomain", nn!("String")),
    ],
    possible_types: &[],
};

static PAGE_INFO: ObjectDef = ObjectDef {
    name: "PageInfo",
    fields: &[
        f("hasNextPage", nn!("Boolean")),
        f("hasPreviousPage", nn!("Boolean")),
        f("startCursor", n("String")),
        f("endCursor", n("String")),
    ],
    possible_types: &[],
};

static NODE: ObjectDef = ObjectDef {
    name: "Node",
    fields: &[f("id", nn!("ID"))],
    possible_types: &["InventoryItem", "ProductVariant", "Product", "Location"],
};

macro_rules! connection {
    ($conn:ident, $edge:ident, $node:literal) => {
        static $conn: ObjectDef = ObjectDef {
            name: concat!($node, "Connection"),
            fields: &[
                f("nodes", list_nn!($node)),
                f("edges", list_nn!(concat!($node, "Edge"))),
                f("pageInfo", nn!("PageInfo")),
            ],
            possible_types: &[],
        };
        static $edge: ObjectDef = ObjectDef {
            name: concat!($node, "Edge"),
            fields: &[f("node", nn!($node)), f("cursor", nn!("String"))],
            possible_types: &[],
        };
    };
}

connection!(VARIANT_CONN, VARIANT_EDGE, "ProductVariant");
connection!(LOCATION_CONN, LOCATION_EDGE, "Location");

static OBJECTS: &[&ObjectDef] = &[
    &QUERY_ROOT,
    &MUTATION,
    &ADJUST_PAYLOAD,
    &ADJUST_USER_ERROR,
    &GROUP,
    &CHANGE,
    &APP,
    &APP_INSTALLATION,
    &ACCESS_SCOPE,
    &STAFF_MEMBER,
    &INVENTORY_ITEM,
    &VARIANT,
    &PRODUCT,
    &LOCATION,
    &SHOP,
    &PAGE_INFO,
    &NODE,
    &VARIANT_CONN,
    &VARIANT_EDGE,
    &LOCATION_CONN,
    &LOCATION_EDGE,
];

static ADJUST_INPUT: InputDef = InputDef {
    name: "InventoryAdjustQuantitiesInput",
    fields: &[
        arg("name", nn!("String")),
        arg("reason", nn!("String")),
        arg("referenceDocumentUri", n("URL")),
        arg("changes", list_nn!("InventoryChangeInput")),
    ],
};

static CHANGE_INPUT: InputDef = InputDef {
    name: "InventoryChangeInput",
    fields: &[
        arg("delta", nn!("Int")),
        arg("changeFromQuantity", n("Int")),
        arg("inventoryItemId", nn!("ID")),
        arg("locationId", nn!("ID")),
        arg("ledgerDocumentUri", n("URL")),
    ],
};

static INPUTS: &[&InputDef] = &[&ADJUST_INPUT, &CHANGE_INPUT];

const SCALARS: &[&str] = &[
    "ID", "String", "Int", "Float", "Boolean", "DateTime", "URL", "Money",
];

const ENUMS: &[&str] = &["InventoryAdjustQuantitiesUserErrorCode"];

/// What `name` is, if the schema has it.
pub fn kind(name: &str) -> Option<Kind> {
    if SCALARS.contains(&name) {
        return Some(Kind::Scalar);
    }
    if ENUMS.contains(&name) {
        return Some(Kind::Enum);
    }
    if let Some(object) = OBJECTS.iter().find(|o| o.name == name) {
        return Some(Kind::Object(object));
    }
    INPUTS
        .iter()
        .find(|i| i.name == name)
        .map(|input| Kind::Input(input))
}

/// The object or interface named `name`.
pub fn object(name: &str) -> Option<&'static ObjectDef> {
    OBJECTS.iter().copied().find(|o| o.name == name)
}

/// The query root.
pub fn query_root() -> &'static ObjectDef {
    &QUERY_ROOT
}

/// The mutation root.
pub fn mutation_root() -> &'static ObjectDef {
    &MUTATION
}

/// Whether a value of runtime type `object_type` satisfies a type condition.
pub fn satisfies(object_type: &str, condition: &str) -> bool {
    object_type == condition
        || object(condition).is_some_and(|o| o.possible_types.contains(&object_type))
}

/// Whether the object type is a connection (`…Connection`).
pub fn is_connection(name: &str) -> bool {
    name.ends_with("Connection")
}

/// Whether values of this named type are leaves (scalars and enums).
pub fn is_leaf(name: &str) -> bool {
    matches!(kind(name), Some(Kind::Scalar | Kind::Enum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_referenced_type_exists() {
        for object in OBJECTS {
            for field in object.fields {
                assert!(
                    kind(field.ty.named()).is_some(),
                    "{}.{}: {}",
                    object.name,
                    field.name,
                    field.ty
                );
                for a in field.args {
                    assert!(
                        kind(a.ty.named()).is_some(),
                        "{}.{}({})",
                        object.name,
                        field.name,
                        a.name
                    );
                }
            }
            for t in object.possible_types {
                assert!(object_exists(t), "{t}");
            }
        }
        for input in INPUTS {
            for field in input.fields {
                assert!(
                    kind(field.ty.named()).is_some(),
                    "{}.{}",
                    input.name,
                    field.name
                );
            }
        }
    }

    fn object_exists(name: &str) -> bool {
        object(name).is_some()
    }

    #[test]
    fn types_print_like_graphql() {
        assert_eq!(
            list_nn!("InventoryChangeInput").to_string(),
            "[InventoryChangeInput!]!"
        );
        assert_eq!(Ty::List(&Ty::Named("ID")).to_string(), "[ID]");
        assert!(satisfies("InventoryItem", "Node"));
        assert!(!satisfies("Shop", "Node"));
    }
}
