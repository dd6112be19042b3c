//! The sample shop's HTTP contract: request and response bodies.
//!
//! The monolith and the extracted services serve the same public routes, so
//! they share these types the way real teams share an OpenAPI document. What
//! a service does with them (rounding, field names it reads from its own
//! schema) is still its own code, which is where shadow diffing finds bugs.
//!
//! Money is always integer cents; timestamps are RFC 3339 UTC strings.

pub mod catalog;
pub mod orders;
pub mod saga;

pub use catalog::{Customer, Product, ProductUpdate, StockLevel, StockUpdate};
pub use orders::{NewOrder, NewOrderLine, Order, OrderLine, OrderStatus};
pub use saga::{
    OrderReplica, Payment, PaymentRequest, ReplicaLine, Reservation, ReservationRequest, ReservedLine,
};

/// A request body that is well-formed JSON but breaks a rule of the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// What is wrong, for a person.
    pub message: String,
    /// Where it is wrong, for a program (for example `{"line": 2}`).
    pub detail: serde_json::Value,
}

impl Invalid {
    fn new(message: impl Into<String>, detail: serde_json::Value) -> Self {
        Self {
            message: message.into(),
            detail,
        }
    }
}

impl From<Invalid> for service_runtime::ApiError {
    fn from(invalid: Invalid) -> Self {
        service_runtime::ApiError::unprocessable(invalid.message).with_detail(invalid.detail)
    }
}
