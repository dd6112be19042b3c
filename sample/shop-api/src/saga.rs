//! The monolith endpoints the extracted orders service calls: stock
//! reservations, payments (both idempotent by a caller-chosen reference) and
//! the internal endpoint that receives the service's dual writes.

use serde::{Deserialize, Serialize};

use crate::orders::{NewOrderLine, OrderStatus};

/// The body of `POST /inventory/reservations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationRequest {
    /// Idempotency key: the same reference returns the same reservation.
    pub reference: String,
    /// What to hold; the same rules as an order's lines.
    pub lines: Vec<NewOrderLine>,
}

/// One held line, with the unit price at the time of holding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservedLine {
    /// Product held.
    pub product_id: i64,
    /// Units held.
    pub quantity: i64,
    /// Unit price when held.
    pub unit_price_cents: i64,
}

/// A stock reservation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    /// Reservation id.
    pub id: i64,
    /// The caller's idempotency key.
    pub reference: String,
    /// `held` or `released`.
    pub status: String,
    /// What is held.
    pub lines: Vec<ReservedLine>,
}

/// The body of `POST /payments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// Idempotency key: the same reference returns the same payment.
    pub reference: String,
    /// The order paid for (it may live in another service's database).
    pub order_id: i64,
    /// Who pays.
    pub customer_id: i64,
    /// How much, zero or more cents.
    pub amount_cents: i64,
}

/// A payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// Payment id.
    pub id: i64,
    /// The caller's idempotency key.
    pub reference: String,
    /// The order paid for.
    pub order_id: i64,
    /// Who paid.
    pub customer_id: i64,
    /// How much.
    pub amount_cents: i64,
    /// `captured` or `refunded`.
    pub status: String,
}

/// One line of a dual-written order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaLine {
    /// Position of the line in the order, from 1.
    pub line_no: i64,
    /// Product ordered.
    pub product_id: i64,
    /// Units ordered.
    pub quantity: i64,
    /// Price of one unit.
    pub unit_price_cents: i64,
}

/// The body of `PUT /internal/orders/{id}`: the orders service's copy of an
/// order, written into the monolith's tables during the dual-write phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderReplica {
    /// Who placed it.
    pub customer_id: i64,
    /// Placed or cancelled.
    pub status: OrderStatus,
    /// Sum of the lines.
    pub total_cents: i64,
    /// When it was placed.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// The lines.
    pub lines: Vec<ReplicaLine>,
}
