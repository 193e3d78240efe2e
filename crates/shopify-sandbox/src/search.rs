//! Shopify's search syntax for the `query:` argument of connections, reduced to what the
//! sync uses: `sku:ABC-1`, quoted values (`sku:"A B"`, `sku:'A B'`), prefix matches
//! (`sku:ABC*`), negation (`-sku:X`, `NOT sku:X`), implicit `AND` and explicit `OR`, and bare
//! words (matched against titles and SKUs).
//!
//! Field values compare case-insensitively and exactly (or by prefix with `*`); bare words
//! by substring. A filter on a field the resource does not have is ignored, as Shopify
//! ignores unknown filters.

/// One term of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    /// Field name, `""` for a bare word.
    field: String,
    /// Lowercased value without quotes or trailing `*`.
    value: String,
    prefix: bool,
    negated: bool,
}

/// A parsed query: alternatives (`OR`) of conjunctions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    alternatives: Vec<Vec<Term>>,
}

impl SearchQuery {
    /// Parses a query string; an empty one matches everything.
    pub fn parse(text: &str) -> Self {
        let mut alternatives = vec![Vec::new()];
        let mut negate_next = false;
        for token in tokens(text) {
            match token.as_str() {
                "OR" => {
                    alternatives.push(Vec::new());
                    continue;
                }
                "AND" => continue,
                "NOT" => {
                    negate_next = true;
                    continue;
                }
                _ => {}
            }
            let (negated, token) = match token.strip_prefix('-') {
                Some(rest) if !rest.is_empty() => (true, rest.to_owned()),
                _ => (false, token),
            };
            let (field, raw) = match token.split_once(':') {
                Some((field, value)) if !field.is_empty() && !field.contains(['"', '\'']) => {
                    (field.to_owned(), value.to_owned())
                }
                _ => (String::new(), token),
            };
            let unquoted = unquote(&raw);
            let (value, prefix) = match unquoted.strip_suffix('*') {
                Some(stem) if unquoted == raw => (stem.to_owned(), true),
                _ => (unquoted, false),
            };
            if let Some(current) = alternatives.last_mut() {
                current.push(Term {
                    field,
                    value: value.to_lowercase(),
                    prefix,
                    negated: negated != negate_next,
                });
            }
            negate_next = false;
        }
        alternatives.retain(|a| !a.is_empty());
        Self { alternatives }
    }

    /// Whether a resource matches; `fields(name)` gives the resource's values for a field,
    /// or `None` if it has no such field (the term is then ignored). `fields("")` gives the
    /// words bare terms are matched against.
    pub fn matches(&self, fields: &dyn Fn(&str) -> Option<Vec<String>>) -> bool {
        if self.alternatives.is_empty() {
            return true;
        }
        self.alternatives.iter().any(|terms| {
            terms.iter().all(|term| {
                let Some(values) = fields(&term.field) else {
                    return true;
                };
                let hit = values.iter().any(|v| {
                    let v = v.to_lowercase();
                    if term.field.is_empty() {
                        v.contains(&term.value)
                    } else if term.prefix {
                        v.starts_with(&term.value)
                    } else {
                        v == term.value
                    }
                });
                hit != term.negated
            })
        })
    }
}

/// Splits on whitespace outside quotes; quotes stay in the token.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) => {
                current.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                current.push(c);
            }
            None if c.is_whitespace() => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            None => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn unquote(raw: &str) -> String {
    for q in ['"', '\''] {
        if let Some(inner) = raw.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.replace("\\\"", "\"");
        }
    }
    raw.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(query: &str, sku: &str, title: &str) -> bool {
        SearchQuery::parse(query).matches(&|field| match field {
            "sku" => Some(vec![sku.to_owned()]),
            "title" | "" => Some(vec![title.to_owned(), sku.to_owned()]),
            _ => None,
        })
    }

    #[test]
    fn sku_filters_are_exact_and_case_insensitive() {
        assert!(matches("sku:20A642-XL", "20A642-XL", "Tee"));
        assert!(matches("sku:20a642-xl", "20A642-XL", "Tee"));
        assert!(!matches("sku:20A642", "20A642-XL", "Tee"));
        assert!(matches("sku:20A642*", "20A642-XL", "Tee"));
        assert!(matches("sku:\"A B\"", "A B", "Tee"));
        assert!(matches("sku:'A B'", "A B", "Tee"));
        assert!(!matches("sku:\"A*\"", "AB", "Tee"));
    }

    #[test]
    fn boolean_structure() {
        assert!(matches("sku:X OR sku:Y", "Y", "t"));
        assert!(!matches("sku:X sku:Y", "Y", "t"));
        assert!(matches("-sku:X", "Y", "t"));
        assert!(!matches("NOT sku:Y", "Y", "t"));
        assert!(matches("", "anything", "t"));
        assert!(matches("tee", "S", "Blue Tee"));
        assert!(matches("unknown_field:zzz sku:S", "S", "t"));
    }
}
