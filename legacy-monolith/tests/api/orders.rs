//! Orders: `POST /orders` (one local transaction across stock, orders and
//! payments), `GET /orders/{id}`, `POST /orders/{id}/cancel` and
//! `GET /customers/{id}/orders`. Every rejected order must leave the
//! database exactly as it was: the rejections are tables of [`Refusal`]
//! cases.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use service_runtime::pagination::Page;
use shop_api::{Order, OrderLine, OrderStatus};
use test_harness::Engine;

use crate::helpers::{
    json_body, lines_json, order_body, price, spawn_app, Refusal, Request, TestApp, NO_SUCH_CUSTOMER,
    NO_SUCH_PRODUCT, OTHER, POOR, POOR_LIMIT, RICH, SEEDED_ORDERS, STOCK,
};

/// `POST /orders` for `(product_id, quantity)` lines.
fn place(customer_id: i64, lines: &[(i64, i64)]) -> Request {
    Request::post_json("/orders", order_body(customer_id, lines))
}

/// An order of `lines` by [`RICH`], refused because line `line` asks for
/// more than the `available` stock.
fn short_of_stock(name: &str, lines: &[(i64, i64)], line: usize, available: i64) -> Refusal {
    let (product_id, requested) = lines[line];
    Refusal::new(name, place(RICH, lines), StatusCode::CONFLICT).detail(json!({
        "line": line,
        "product_id": product_id,
        "requested": requested,
        "available": available,
    }))
}

/// `POST /orders/{id}/cancel`.
fn cancel(id: impl std::fmt::Display) -> Request {
    Request::post_empty(format!("/orders/{id}/cancel"))
}

async fn get_order(app: &TestApp, id: i64) -> Order {
    let body = json_body(app.get(&format!("/orders/{id}")).await, StatusCode::OK).await;
    serde_json::from_value(body).expect("an order")
}

async fn customer_page(app: &TestApp, customer_id: i64, query: &str) -> Page<Order> {
    let body = json_body(
        app.get(&format!("/customers/{customer_id}/orders{query}")).await,
        StatusCode::OK,
    )
    .await;
    serde_json::from_value(body).expect("a page of orders")
}

async fn an_order_is_placed_paid_and_stock_taken(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let response = app
        .post_json("/orders", &order_body(RICH, &[(3, 3), (1, 2)]))
        .await;
    let order: Order =
        serde_json::from_value(json_body(response, StatusCode::CREATED).await).expect("an order");

    let id = SEEDED_ORDERS + 1;
    assert_eq!(order.id, id, "the first id after the seeded orders");
    assert_eq!(order.customer_id, RICH);
    assert_eq!(order.status, OrderStatus::Placed);
    assert_eq!(
        order.lines,
        vec![
            OrderLine {
                product_id: 3,
                quantity: 3,
                unit_price_cents: 399
            },
            OrderLine {
                product_id: 1,
                quantity: 2,
                unit_price_cents: 1_000
            },
        ],
        "lines keep the order they were given in"
    );
    assert_eq!(order.total_cents, 3 * 399 + 2 * 1_000);
    assert_eq!(order.created_at, order.updated_at);

    assert_eq!(
        app.all_stock().await,
        vec![STOCK - 2, STOCK, STOCK - 3, STOCK, STOCK]
    );
    assert_eq!(
        app.payment_row(&format!("order:{id}")).await,
        Some((format!("order:{id}"), id, RICH, 3_197, "captured".to_owned()))
    );
    assert_eq!(
        app.text("SELECT origin FROM orders WHERE id = $1", &[id]).await,
        "monolith"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM order_lines WHERE order_id = $1", &[id])
            .await,
        2
    );
    assert_eq!(
        app.scalar("SELECT next_id FROM id_allocations WHERE name = 'orders'", &[])
            .await,
        id + 1
    );

    assert_eq!(get_order(&app, id).await, order);
    let listed = customer_page(&app, RICH, "").await;
    assert_eq!(listed.items.first(), Some(&order), "newest first");

    // The next order gets the next id.
    let next = app.place_order(OTHER, &[(5, 1)]).await;
    assert_eq!((next.id, next.total_cents), (id + 1, 50));
    assert_eq!(
        app.payment_row(&format!("order:{}", id + 1)).await.map(|p| p.3),
        Some(50)
    );
}

async fn an_order_keeps_the_price_it_was_placed_at(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let placed = app.place_order(RICH, &[(2, 2)]).await;
    assert_eq!(placed.total_cents, 5_000);

    json_body(
        app.put_json("/products/2", &json!({ "price_cents": 9_999 }))
            .await,
        StatusCode::OK,
    )
    .await;
    let fetched = get_order(&app, placed.id).await;
    assert_eq!(fetched, placed);
    assert_eq!(fetched.lines[0].unit_price_cents, 2_500);

    let later = app.place_order(RICH, &[(2, 1)]).await;
    assert_eq!(later.lines[0].unit_price_cents, 9_999);
    assert_eq!(later.total_cents, 9_999);
}

async fn get_order_errors(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    app.assert_refusals([
        Refusal::new(
            "an unknown order",
            Request::get("/orders/12345"),
            StatusCode::NOT_FOUND,
        )
        .error_contains("12345"),
        Refusal::new(
            "an id that is not a number",
            Request::get("/orders/abc"),
            StatusCode::BAD_REQUEST,
        ),
    ])
    .await;
    // A seeded order is served with its lines.
    let seeded = get_order(&app, 1).await;
    assert_eq!(seeded.id, 1);
    assert!(!seeded.lines.is_empty());
    let sum: i64 = seeded.lines.iter().map(|l| l.quantity * l.unit_price_cents).sum();
    assert_eq!(seeded.total_cents, sum);
}

async fn malformed_or_mistyped_orders_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let valid = order_body(RICH, &[(1, 1)]).to_string();
    let json_type = Some("application/json");
    let raw = |name: &str, content_type: Option<&'static str>, text: String, status: StatusCode| {
        Refusal::new(
            name,
            Request::raw(Method::POST, "/orders", content_type, text),
            status,
        )
    };
    let mistyped = |name: &str, body: Value| {
        raw(
            name,
            json_type,
            body.to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    };
    app.assert_refusals([
        raw(
            "truncated JSON",
            json_type,
            "{\"customer_id\": 1, \"lines\": [".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        raw(
            "not JSON",
            json_type,
            "not json".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        raw("an empty body", json_type, String::new(), StatusCode::BAD_REQUEST),
        mistyped(
            "the customer id as text",
            json!({ "customer_id": "one", "lines": [] }),
        ),
        mistyped(
            "a quantity as text",
            json!({ "customer_id": 1, "lines": [{ "product_id": 1, "quantity": "2" }] }),
        ),
        mistyped(
            "a fractional quantity",
            json!({ "customer_id": 1, "lines": [{ "product_id": 1, "quantity": 1.5 }] }),
        ),
        mistyped("no lines", json!({ "customer_id": 1 })),
        mistyped(
            "an unknown field",
            json!({ "customer_id": 1, "lines": [{ "product_id": 1, "quantity": 1 }], "coupon": "FREE" }),
        ),
        raw(
            "no content type",
            None,
            valid.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        raw(
            "a text content type",
            Some("text/plain"),
            valid,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ])
    .await;
}

async fn orders_breaking_line_rules_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let too_many: Vec<(i64, i64)> = (1..=101).map(|n| (n, 1)).collect();
    let broken = |name: &str, lines: &[(i64, i64)], detail: Value| {
        Refusal::new(name, place(RICH, lines), StatusCode::UNPROCESSABLE_ENTITY).detail(detail)
    };
    let quantity_of_line = |line: usize| json!({ "line": line, "field": "quantity" });
    app.assert_refusals([
        broken("quantity 0", &[(1, 0)], quantity_of_line(0)),
        broken("a negative quantity", &[(1, -1)], quantity_of_line(0)),
        broken(
            "a negative quantity on the second line",
            &[(1, 1), (2, -3)],
            quantity_of_line(1),
        ),
        broken(
            "a quantity above the maximum",
            &[(1, 10_001)],
            quantity_of_line(0),
        ),
        broken("no lines", &[], json!({ "field": "lines" })),
        broken(
            "a product on two lines",
            &[(1, 1), (2, 1), (1, 2)],
            json!({ "line": 2, "field": "product_id" }),
        ),
        broken("101 lines", &too_many, json!({ "field": "lines" })),
    ])
    .await;
}

async fn orders_for_unknown_products_or_customers_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let unprocessable = |name: &str, request| Refusal::new(name, request, StatusCode::UNPROCESSABLE_ENTITY);
    app.assert_refusals([
        unprocessable("an unknown product", place(RICH, &[(NO_SUCH_PRODUCT, 1)]))
            .detail(json!({ "line": 0, "product_id": NO_SUCH_PRODUCT })),
        // The first line's stock was taken before the second line failed:
        // it comes back.
        unprocessable(
            "an unknown product after a known one",
            place(RICH, &[(1, 4), (NO_SUCH_PRODUCT, 1)]),
        )
        .detail(json!({ "line": 1, "product_id": NO_SUCH_PRODUCT })),
        unprocessable("an unknown customer", place(NO_SUCH_CUSTOMER, &[(1, 1)]))
            .detail(json!({ "field": "customer_id" }))
            .error_contains("999"),
    ])
    .await;
}

async fn insufficient_stock_is_409_with_what_is_available(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    app.set_stock(2, 3).await;

    app.assert_refusals([short_of_stock("4 ordered, 3 in stock", &[(2, 4)], 0, 3)])
        .await;

    // Exactly what is in stock can be ordered, leaving zero.
    let order = app.place_order(RICH, &[(2, 3)]).await;
    assert_eq!(order.total_cents, 7_500);
    assert_eq!(app.stock(2).await, 0);
    app.assert_refusals([short_of_stock("1 ordered, none in stock", &[(2, 1)], 0, 0)])
        .await;
}

async fn a_failing_second_line_rolls_back_the_first(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    app.set_stock(2, 3).await;

    let lines = [(1, 2), (2, 4), (3, 1)];
    app.assert_refusals([short_of_stock("the second of three lines short", &lines, 1, 3)])
        .await;
    assert_eq!(app.stock(1).await, STOCK, "the first line's stock was put back");

    // The same order with a quantity that fits goes through whole.
    let order = app.place_order(RICH, &[(1, 2), (2, 3), (3, 1)]).await;
    assert_eq!(order.total_cents, 2 * 1_000 + 3 * 2_500 + 399);
    assert_eq!(app.all_stock().await, vec![STOCK - 2, 0, STOCK - 1, STOCK, STOCK]);
}

async fn a_declined_payment_rolls_back_the_whole_order(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    // Both lines' stock is taken before the payment is declined: stock,
    // order id and payment all roll back.
    app.assert_refusals([Refusal::new(
        "over the credit limit",
        place(POOR, &[(1, 2), (4, 1)]),
        StatusCode::PAYMENT_REQUIRED,
    )
    .detail(json!({ "amount_cents": 12_000, "credit_limit_cents": POOR_LIMIT }))])
        .await;

    // One cent over the limit is declined, exactly the limit is accepted.
    app.execute("UPDATE products SET price_cents = 5001 WHERE id = 5", &[])
        .await;
    app.assert_refusals([Refusal::new(
        "one cent over the credit limit",
        place(POOR, &[(5, 1)]),
        StatusCode::PAYMENT_REQUIRED,
    )
    .detail(json!({ "amount_cents": POOR_LIMIT + 1, "credit_limit_cents": POOR_LIMIT }))])
        .await;
    let order = app.place_order(POOR, &[(1, 5)]).await;
    assert_eq!((order.id, order.total_cents), (SEEDED_ORDERS + 1, POOR_LIMIT));
}

async fn a_total_too_large_is_refused_after_stock_was_taken(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    json_body(
        app.put_json("/products/5", &json!({ "price_cents": i64::MAX / 2 }))
            .await,
        StatusCode::OK,
    )
    .await;

    app.assert_refusals([Refusal::new(
        "a total beyond 64 bits",
        place(RICH, &[(1, 1), (5, 3)]),
        StatusCode::UNPROCESSABLE_ENTITY,
    )])
    .await;
}

async fn cancelling_restores_stock_and_refunds(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let kept = app.place_order(RICH, &[(1, 1)]).await;
    let order = app.place_order(OTHER, &[(1, 2), (2, 3)]).await;
    assert_eq!(
        app.all_stock().await,
        vec![STOCK - 3, STOCK - 3, STOCK, STOCK, STOCK]
    );

    let body = json_body(app.send(&cancel(order.id)).await, StatusCode::OK).await;
    let cancelled: Order = serde_json::from_value(body).expect("an order");
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        (
            cancelled.id,
            cancelled.customer_id,
            cancelled.total_cents,
            &cancelled.lines
        ),
        (order.id, OTHER, order.total_cents, &order.lines)
    );
    assert_eq!(cancelled.created_at, order.created_at);
    assert!(cancelled.updated_at >= order.updated_at);
    assert_eq!(get_order(&app, order.id).await, cancelled);

    assert_eq!(
        app.all_stock().await,
        vec![STOCK - 1, STOCK, STOCK, STOCK, STOCK],
        "only the cancelled order's stock came back"
    );
    let payment = app
        .payment_row(&format!("order:{}", order.id))
        .await
        .expect("a payment");
    assert_eq!((payment.3, payment.4.as_str()), (order.total_cents, "refunded"));
    let other = app
        .payment_row(&format!("order:{}", kept.id))
        .await
        .expect("a payment");
    assert_eq!(other.4, "captured");
    assert_eq!(get_order(&app, kept.id).await, kept);

    app.assert_refusals([
        // A second cancel puts nothing back.
        Refusal::new("a second cancel", cancel(order.id), StatusCode::CONFLICT)
            .error_contains("already cancelled"),
        Refusal::new("an unknown order", cancel(4242), StatusCode::NOT_FOUND),
        Refusal::new(
            "an id that is not a number",
            cancel("abc"),
            StatusCode::BAD_REQUEST,
        ),
    ])
    .await;
}

async fn customer_orders_are_listed_newest_first(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let mut placed = Vec::new();
    for product in [1, 2, 3] {
        placed.push(app.place_order(OTHER, &[(product, 1)]).await);
    }
    app.place_order(RICH, &[(4, 1)]).await;

    let expected: Vec<(i64,)> =
        sqlx::query_as("SELECT id FROM orders WHERE customer_id = $1 ORDER BY id DESC")
            .bind(OTHER)
            .fetch_all(app.db.pool())
            .await
            .expect("reading orders");
    let expected: Vec<i64> = expected.into_iter().map(|(id,)| id).collect();
    assert_eq!(&expected[..3], &[placed[2].id, placed[1].id, placed[0].id]);

    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = customer_page(&app, OTHER, &query).await;
        pages += 1;
        assert!(page.items.len() <= 2);
        for order in &page.items {
            assert_eq!(order.customer_id, OTHER);
            assert_eq!(
                *order,
                get_order(&app, order.id).await,
                "a listed order has its lines"
            );
        }
        seen.extend(page.items.iter().map(|o| o.id));
        match page.next_cursor {
            Some(cursor) => {
                assert_eq!(Some(cursor), page.items.last().map(|o| o.id));
                query = format!("?limit=2&cursor={cursor}");
            }
            None => break,
        }
        assert!(pages <= expected.len(), "pagination does not end");
    }
    assert_eq!(seen, expected);

    let first = customer_page(&app, OTHER, "?limit=3").await;
    assert_eq!(
        first.items,
        vec![placed[2].clone(), placed[1].clone(), placed[0].clone()]
    );

    // A customer without orders gets an empty last page.
    app.execute(
        "INSERT INTO customers (email, name, credit_limit_cents, created_at) \
         VALUES ('new@example.com', 'New Customer', 0, '2026-01-01T00:00:00.000Z')",
        &[],
    )
    .await;
    let new_id = app
        .scalar("SELECT id FROM customers WHERE email = 'new@example.com'", &[])
        .await;
    let empty = customer_page(&app, new_id, "").await;
    assert!(empty.items.is_empty());
    assert_eq!(empty.next_cursor, None);

    let bad_request =
        |name: &str, path: &str| Refusal::new(name, Request::get(path), StatusCode::BAD_REQUEST);
    app.assert_refusals([
        Refusal::new(
            "an unknown customer",
            Request::get(format!("/customers/{NO_SUCH_CUSTOMER}/orders")),
            StatusCode::NOT_FOUND,
        ),
        bad_request("a customer id that is not a number", "/customers/abc/orders"),
        bad_request("limit 0", "/customers/3/orders?limit=0"),
        bad_request("limit 201", "/customers/3/orders?limit=201"),
        bad_request("a cursor that is not a number", "/customers/3/orders?cursor=x"),
    ])
    .await;
}

async fn concurrent_orders_never_oversell(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    app.set_stock(1, 5).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let client = app.client.clone();
        let url = app.url("/orders");
        tasks.spawn(async move {
            let response = client
                .post(url)
                .json(&order_body(RICH, &[(1, 1)]))
                .send()
                .await
                .expect("placing an order");
            response.status()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.expect("a request task"));
    }
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    let conflicts = statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count();
    assert_eq!((created, conflicts), (5, 7), "{statuses:?}");
    assert_eq!(app.stock(1).await, 0);
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM payments WHERE order_id > $1",
            &[SEEDED_ORDERS]
        )
        .await,
        5
    );
}

/// Orders naming the same two products in opposite order, many at once:
/// with enough stock for all of them, every one must be placed. (Stock rows
/// locked in the client's line order deadlock on PostgreSQL.)
async fn concurrent_orders_with_lines_in_opposite_order_all_succeed(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    app.set_stock(1, 1_000).await;
    app.set_stock(2, 1_000).await;

    const ORDERS: i64 = 20;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..ORDERS {
        let client = app.client.clone();
        let url = app.url("/orders");
        let lines = if n % 2 == 0 {
            [(1, 1), (2, 1)]
        } else {
            [(2, 1), (1, 1)]
        };
        tasks.spawn(async move {
            let response = client
                .post(url)
                .json(&json!({ "customer_id": RICH, "lines": lines_json(&lines) }))
                .send()
                .await
                .expect("placing an order");
            let status = response.status();
            (status, response.text().await.unwrap_or_default())
        });
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut first_failure = None;
    while let Some(result) = tasks.join_next().await {
        let (status, body) = result.expect("a request task");
        *statuses.entry(status.as_u16()).or_default() += 1;
        if status != StatusCode::CREATED && first_failure.is_none() {
            first_failure = Some(body);
        }
    }
    assert_eq!(
        statuses,
        [(201, ORDERS as usize)].into(),
        "statuses of {ORDERS} concurrent orders; first failure: {first_failure:?}"
    );
    assert_eq!(app.stock(1).await, 1_000 - ORDERS);
    assert_eq!(app.stock(2).await, 1_000 - ORDERS);
    let total = price(1) + price(2);
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM orders WHERE total_cents = $1 AND id > $2",
            &[total, SEEDED_ORDERS]
        )
        .await,
        ORDERS
    );
}

test_harness::on_each_engine!(
    an_order_is_placed_paid_and_stock_taken,
    an_order_keeps_the_price_it_was_placed_at,
    get_order_errors,
    malformed_or_mistyped_orders_change_nothing,
    orders_breaking_line_rules_change_nothing,
    orders_for_unknown_products_or_customers_change_nothing,
    insufficient_stock_is_409_with_what_is_available,
    a_failing_second_line_rolls_back_the_first,
    a_declined_payment_rolls_back_the_whole_order,
    a_total_too_large_is_refused_after_stock_was_taken,
    cancelling_restores_stock_and_refunds,
    customer_orders_are_listed_newest_first,
    concurrent_orders_never_oversell,
    concurrent_orders_with_lines_in_opposite_order_all_succeed,
);
