//! The sample data set: a few hundred products and customers and a few
//! thousand orders with lines and payments, generated from a fixed random
//! seed so that every laptop gets the same shop.
//!
//! Seeding writes through SQL in one transaction: either the whole data set
//! is there afterwards or none of it is.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use service_runtime::{timestamp, Database};

/// How much sample data to load.
#[derive(Debug, Clone, Copy)]
pub struct SeedSize {
    /// Products, each with an inventory row.
    pub products: usize,
    /// Customers.
    pub customers: usize,
    /// Orders, each with 1 to 4 lines and a payment.
    pub orders: usize,
}

impl Default for SeedSize {
    fn default() -> Self {
        Self {
            products: 300,
            customers: 200,
            orders: 3_000,
        }
    }
}

/// What seeding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedReport {
    /// The database already held products; nothing was written.
    AlreadySeeded,
    /// The data set was loaded.
    Loaded {
        /// Products written.
        products: usize,
        /// Customers written.
        customers: usize,
        /// Orders written.
        orders: usize,
    },
}

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Compact",
    "Deluxe",
    "Eco",
    "Ergonomic",
    "Heavy-duty",
    "Lightweight",
    "Modern",
    "Rustic",
    "Smart",
    "Vintage",
    "Waterproof",
];
const NOUNS: &[&str] = &[
    "Backpack",
    "Blender",
    "Chair",
    "Desk Lamp",
    "Headphones",
    "Kettle",
    "Keyboard",
    "Mug",
    "Notebook",
    "Pan",
    "Sneakers",
    "Tent",
    "Umbrella",
    "Wallet",
    "Watch",
];
const FIRST_NAMES: &[&str] = &[
    "Ada", "Alan", "Barbara", "Dennis", "Edsger", "Frances", "Grace", "Guido", "Ken", "Linus", "Margaret",
    "Niklaus", "Radia", "Tim",
];
const LAST_NAMES: &[&str] = &[
    "Allen",
    "Hopper",
    "Kernighan",
    "Knuth",
    "Lamport",
    "Liskov",
    "Lovelace",
    "Perlman",
    "Ritchie",
    "Thompson",
    "Torvalds",
    "Turing",
    "Wirth",
];

/// Loads the sample data set unless the database already has products.
pub async fn seed_if_empty(db: &Database, size: SeedSize) -> Result<SeedReport, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let (existing,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM products")
        .fetch_one(&mut *tx)
        .await?;
    if existing > 0 {
        return Ok(SeedReport::AlreadySeeded);
    }
    let mut rng = StdRng::seed_from_u64(0x5EED);
    let now = timestamp::now();

    let mut prices = Vec::with_capacity(size.products);
    let mut stock = Vec::with_capacity(size.products);
    for n in 1..=size.products {
        let name = format!(
            "{} {}",
            ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())],
            NOUNS[rng.gen_range(0..NOUNS.len())]
        );
        let price: i64 = rng.gen_range(199..=49_999);
        let units: i64 = rng.gen_range(50..=500);
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO products (sku, name, description, price_cents, updated_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(format!("SKU-{n:05}"))
        .bind(&name)
        .bind(format!("A {} for everyday use.", name.to_lowercase()))
        .bind(price)
        .bind(&now)
        .fetch_one(&mut *tx)
        .await?;
        prices.push((id, price));
        stock.push(units);
    }

    let mut customers = Vec::with_capacity(size.customers);
    for n in 1..=size.customers {
        let first = FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.gen_range(0..LAST_NAMES.len())];
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO customers (email, name, credit_limit_cents, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(format!(
            "{}.{}{n}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        ))
        .bind(format!("{first} {last}"))
        .bind(rng.gen_range(200_000..=2_000_000i64))
        .bind(&now)
        .fetch_one(&mut *tx)
        .await?;
        customers.push(id);
    }

    for order_id in 1..=size.orders as i64 {
        let customer = customers[rng.gen_range(0..customers.len())];
        let line_count = rng.gen_range(1..=4usize);
        let mut chosen: Vec<usize> = Vec::with_capacity(line_count);
        while chosen.len() < line_count.min(prices.len()) {
            let index = rng.gen_range(0..prices.len());
            if !chosen.contains(&index) {
                chosen.push(index);
            }
        }
        let cancelled = rng.gen_bool(0.05);
        let mut total = 0i64;
        let mut lines = Vec::with_capacity(chosen.len());
        for index in chosen {
            let quantity = rng.gen_range(1..=3i64);
            let (product_id, price) = prices[index];
            total += quantity * price;
            if !cancelled {
                stock[index] = (stock[index] - quantity).max(0);
            }
            lines.push((product_id, quantity, price));
        }
        let status = if cancelled { "cancelled" } else { "placed" };
        sqlx::query(
            "INSERT INTO orders (id, customer_id, status, total_cents, origin, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'monolith', $5, $5)",
        )
        .bind(order_id)
        .bind(customer)
        .bind(status)
        .bind(total)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        for (line_no, (product_id, quantity, price)) in (1i64..).zip(lines) {
            sqlx::query(
                "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(order_id)
            .bind(line_no)
            .bind(product_id)
            .bind(quantity)
            .bind(price)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO payments (reference, order_id, customer_id, amount_cents, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(format!("order:{order_id}"))
        .bind(order_id)
        .bind(customer)
        .bind(total)
        .bind(if cancelled { "refunded" } else { "captured" })
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE id_allocations SET next_id = $1 WHERE name = 'orders'")
        .bind(size.orders as i64 + 1)
        .execute(&mut *tx)
        .await?;

    for ((product_id, _), units) in prices.iter().zip(&stock) {
        sqlx::query("INSERT INTO inventory (product_id, stock, updated_at) VALUES ($1, $2, $3)")
            .bind(product_id)
            .bind(units)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(SeedReport::Loaded {
        products: size.products,
        customers: size.customers,
        orders: size.orders,
    })
}
