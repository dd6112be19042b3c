//! Products, stock levels and customers.

use serde::{Deserialize, Serialize};

use crate::Invalid;

/// A product as `GET /products/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Product id.
    pub id: i64,
    /// Stock-keeping unit, unique.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Longer text.
    pub description: String,
    /// Unit price in cents.
    pub price_cents: i64,
    /// Units in stock (owned by the monolith's inventory).
    pub stock: i64,
    /// Last change of the product's catalog data.
    pub updated_at: String,
}

/// The body of `PUT /products/{id}`: at least one field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductUpdate {
    /// New unit price in cents, zero or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_cents: Option<i64>,
    /// New stock level, zero or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<i64>,
}

impl ProductUpdate {
    /// Checks the contract's rules for a product update.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.price_cents.is_none() && self.stock.is_none() {
            return Err(Invalid::new(
                "nothing to update: give price_cents, stock or both",
                serde_json::Value::Null,
            ));
        }
        if let Some(price) = self.price_cents.filter(|p| *p < 0) {
            return Err(Invalid::new(
                format!("price_cents must be zero or more, got {price}"),
                serde_json::json!({ "field": "price_cents" }),
            ));
        }
        if let Some(stock) = self.stock.filter(|s| *s < 0) {
            return Err(Invalid::new(
                format!("stock must be zero or more, got {stock}"),
                serde_json::json!({ "field": "stock" }),
            ));
        }
        Ok(())
    }
}

/// One product's stock, as `GET /inventory?product_ids=…` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Product id.
    pub product_id: i64,
    /// Units in stock.
    pub stock: i64,
}

/// The body of `PUT /inventory/{product_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockUpdate {
    /// New stock level, zero or more.
    pub stock: i64,
}

/// A customer as `GET /customers/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Customer id.
    pub id: i64,
    /// E-mail address, unique.
    pub email: String,
    /// Display name.
    pub name: String,
}
