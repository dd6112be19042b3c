//! Unit tests of the route decision: no sockets, no clock.

use super::*;

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn route(path: &str, methods: &[&str], capability: usize) -> Route {
    Route {
        path: path.to_owned(),
        pattern: PathPattern::parse(path).unwrap(),
        methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
        host: None,
        headers: Vec::new(),
        capability,
    }
}

fn table(routes: Vec<Route>, stages: Vec<Stage>) -> RouteTable {
    let capabilities = vec![
        CapabilityDef::new("catalog", "legacy", "catalog"),
        CapabilityDef::new("orders", "legacy", "orders"),
    ];
    RouteTable::new(
        Arc::new(Matcher::new(routes, capabilities, Some("legacy".into()))),
        stages,
        1,
    )
}

fn backend<'t>(t: &'t RouteTable, method: &str, path: &str) -> Option<&'t str> {
    t.decide(&method.parse().unwrap(), None, path, &HeaderMap::new(), CLIENT)
        .backend
}

#[test]
fn routes_by_path_method_and_target() {
    let t = table(
        vec![
            route("/products", &["GET"], 0),
            route("/products/{id}", &["GET", "PUT"], 0),
            route("/orders/*", &[], 1),
        ],
        vec![Stage::Service, Stage::Legacy],
    );
    assert_eq!(backend(&t, "GET", "/products"), Some("catalog"));
    assert_eq!(backend(&t, "PUT", "/products/7"), Some("catalog"));
    // Wrong method: no route, so the default backend (the monolith).
    assert_eq!(backend(&t, "DELETE", "/products/7"), Some("legacy"));
    assert_eq!(backend(&t, "GET", "/products/7/reviews"), Some("legacy"));
    assert_eq!(
        t.decide(&Method::POST, None, "/orders/9/cancel", &HeaderMap::new(), CLIENT)
            .capability,
        Some("orders")
    );
    assert_eq!(backend(&t, "GET", "/orders"), Some("legacy"));
    assert_eq!(backend(&t, "GET", "/ordersx"), Some("legacy"));
}

#[test]
fn the_first_route_in_file_order_wins() {
    let t = table(
        vec![
            route("/products/{id}", &[], 1),
            route("/products/special", &[], 0),
        ],
        vec![Stage::Service, Stage::Service],
    );
    assert_eq!(
        t.decide(&Method::GET, None, "/products/special", &HeaderMap::new(), CLIENT)
            .route,
        Some((0, "/products/{id}"))
    );
    let t = table(
        vec![
            route("/products/special", &[], 0),
            route("/products/{id}", &[], 1),
        ],
        vec![Stage::Service, Stage::Service],
    );
    assert_eq!(
        t.decide(&Method::GET, None, "/products/special", &HeaderMap::new(), CLIENT)
            .route,
        Some((0, "/products/special"))
    );
}

#[test]
fn host_and_header_predicates_must_all_hold() {
    let mut beta = route("/products", &[], 0);
    beta.host = Some("shop.example".into());
    beta.headers = vec![(HeaderName::from_static("x-beta"), HeaderValue::from_static("1"))];
    let t = table(vec![beta], vec![Stage::Service, Stage::Legacy]);
    let mut headers = HeaderMap::new();
    assert_eq!(
        t.decide(&Method::GET, Some("shop.example"), "/products", &headers, CLIENT)
            .backend,
        Some("legacy")
    );
    headers.insert("x-beta", HeaderValue::from_static("1"));
    assert_eq!(
        t.decide(&Method::GET, Some("shop.example"), "/products", &headers, CLIENT)
            .backend,
        Some("catalog")
    );
    assert_eq!(
        t.decide(&Method::GET, Some("other"), "/products", &headers, CLIENT)
            .backend,
        Some("legacy")
    );
}

#[test]
fn bad_patterns_are_refused() {
    for bad in ["products", "/a/{}", "/a/{id}x", "/a/*/b", "/a/{id}/*", "/a/../b"] {
        assert!(PathPattern::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn host_is_lower_cased_without_port() {
    assert_eq!(
        host_of(Some(&HeaderValue::from_static("Shop.Example:8080"))).as_deref(),
        Some("shop.example")
    );
    assert_eq!(
        host_of(Some(&HeaderValue::from_static("[::1]:80"))).as_deref(),
        Some("::1")
    );
}

#[test]
fn stages_decide_side_shadow_and_fallback() {
    let routes = vec![route("/products/{id}", &[], 0)];
    fn get(t: &RouteTable) -> Decision<'_> {
        t.decide(&Method::GET, None, "/products/1", &HeaderMap::new(), CLIENT)
    }
    let shadow = table(routes.clone(), vec![Stage::Shadow, Stage::Legacy]);
    let d = get(&shadow);
    assert_eq!(
        (d.backend, d.shadow, d.fallback),
        (Some("legacy"), ShadowCopy::To("catalog"), None)
    );
    let post = shadow.decide(&Method::POST, None, "/products/1", &HeaderMap::new(), CLIENT);
    assert_eq!(post.shadow, ShadowCopy::RefusedUnsafeMethod);
    let service = table(routes.clone(), vec![Stage::Service, Stage::Legacy]);
    let d = get(&service);
    assert_eq!(
        (d.backend, d.shadow, d.fallback),
        (Some("catalog"), ShadowCopy::No, Some("legacy"))
    );
    let retired = table(routes.clone(), vec![Stage::Retired, Stage::Legacy]);
    assert_eq!(get(&retired).fallback, None);
    assert_eq!(get(&retired).backend, Some("catalog"));
}

#[test]
fn a_canary_splits_by_sticky_key() {
    let routes = vec![route("/products/{id}", &[], 0)];
    let canary = |permille| {
        table(
            routes.clone(),
            vec![
                Stage::Canary(crate::decision::stage::Permille::new(permille).unwrap()),
                Stage::Legacy,
            ],
        )
    };
    let at_half = canary(500);
    let mut sides = std::collections::HashMap::new();
    for i in 0..1000u32 {
        let client = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        let d = at_half.decide(&Method::GET, None, "/products/1", &HeaderMap::new(), client);
        // The same client always gets the same answer.
        let again = at_half.decide(&Method::GET, None, "/products/1", &HeaderMap::new(), client);
        assert_eq!(d.backend, again.backend);
        *sides.entry(d.backend).or_insert(0) += 1;
        if d.backend == Some("catalog") {
            assert_eq!(d.fallback, Some("legacy"));
        }
    }
    assert!(
        sides[&Some("catalog")] > 400 && sides[&Some("legacy")] > 400,
        "{sides:?}"
    );
}
