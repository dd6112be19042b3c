//! Orders and the rules a new order must follow.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Invalid;

/// The most lines one order may have.
pub const MAX_LINES: usize = 100;
/// The most units of one product one line may order.
pub const MAX_QUANTITY: i64 = 10_000;

/// An order's state as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Paid for, stock taken.
    Placed,
    /// Cancelled: stock released, payment refunded.
    Cancelled,
}

impl OrderStatus {
    /// The lower-case word used on the wire and in the monolith's schema.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the lower-case word.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "placed" => Some(OrderStatus::Placed),
            "cancelled" => Some(OrderStatus::Cancelled),
            _ => None,
        }
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    /// Product ordered.
    pub product_id: i64,
    /// Units ordered.
    pub quantity: i64,
    /// Price of one unit when the order was placed.
    pub unit_price_cents: i64,
}

/// An order as `GET /orders/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Order id.
    pub id: i64,
    /// Who placed it.
    pub customer_id: i64,
    /// Placed or cancelled.
    pub status: OrderStatus,
    /// Sum of the lines, in cents.
    pub total_cents: i64,
    /// The lines, in the order they were given.
    pub lines: Vec<OrderLine>,
    /// When it was placed.
    pub created_at: String,
    /// Last change (cancellation).
    pub updated_at: String,
}

/// One line of the body of `POST /orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrderLine {
    /// Product to order.
    pub product_id: i64,
    /// Units, 1 to [`MAX_QUANTITY`].
    pub quantity: i64,
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Who orders.
    pub customer_id: i64,
    /// What, 1 to [`MAX_LINES`] lines, each product at most once.
    pub lines: Vec<NewOrderLine>,
}

impl NewOrder {
    /// Checks the rules every new order must follow, before any I/O.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_lines(&self.lines)
    }
}

/// Checks a list of order lines: not empty, not too long, positive bounded
/// quantities, each product once.
pub fn validate_lines(lines: &[NewOrderLine]) -> Result<(), Invalid> {
    if lines.is_empty() {
        return Err(Invalid::new(
            "an order needs at least one line",
            json!({ "field": "lines" }),
        ));
    }
    if lines.len() > MAX_LINES {
        return Err(Invalid::new(
            format!("an order may have at most {MAX_LINES} lines, got {}", lines.len()),
            json!({ "field": "lines" }),
        ));
    }
    let mut seen = HashSet::new();
    for (index, line) in lines.iter().enumerate() {
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            return Err(Invalid::new(
                format!(
                    "line {index}: quantity must be between 1 and {MAX_QUANTITY}, got {}",
                    line.quantity
                ),
                json!({ "line": index, "field": "quantity" }),
            ));
        }
        if !seen.insert(line.product_id) {
            return Err(Invalid::new(
                format!(
                    "line {index}: product {} appears on more than one line; put its whole quantity on one line",
                    line.product_id
                ),
                json!({ "line": index, "field": "product_id" }),
            ));
        }
    }
    Ok(())
}

/// Sums `quantity × unit price` over lines, `None` on overflow.
pub fn order_total(lines: &[OrderLine]) -> Option<i64> {
    lines.iter().try_fold(0i64, |total, line| {
        line.quantity
            .checked_mul(line.unit_price_cents)
            .and_then(|amount| total.checked_add(amount))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(product_id: i64, quantity: i64) -> NewOrderLine {
        NewOrderLine { product_id, quantity }
    }

    #[test]
    fn rejects_empty_zero_negative_and_duplicate_lines() {
        assert!(validate_lines(&[]).is_err());
        assert_eq!(
            validate_lines(&[line(1, 0)]).unwrap_err().detail["field"],
            "quantity"
        );
        assert!(validate_lines(&[line(1, -3)]).is_err());
        assert!(validate_lines(&[line(1, MAX_QUANTITY + 1)]).is_err());
        let duplicate = validate_lines(&[line(1, 1), line(2, 1), line(1, 2)]).unwrap_err();
        assert_eq!(duplicate.detail["line"], 2);
        assert!(validate_lines(&[line(1, 1), line(2, MAX_QUANTITY)]).is_ok());
    }

    #[test]
    fn total_detects_overflow() {
        let l = |q, p| OrderLine {
            product_id: 1,
            quantity: q,
            unit_price_cents: p,
        };
        assert_eq!(order_total(&[l(2, 150), l(1, 5)]), Some(305));
        assert_eq!(order_total(&[l(10_000, i64::MAX / 2)]), None);
    }
}
