//! The route decision with 1,000 routes: the cost every request pays.
//! Run: `cargo bench -p facade --bench route_match`.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use facade::routing::{CapabilityDef, Matcher, PathPattern, Route, RouteTable};
use facade::stage::Stage;
use hyper::{HeaderMap, Method};

const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn table(routes: usize) -> RouteTable {
    let capabilities: Vec<CapabilityDef> = (0..50)
        .map(|c| CapabilityDef::new(&format!("capability{c}"), "legacy", &format!("service{c}")))
        .collect();
    let shapes = [
        "/api/v1/r{n}",
        "/api/v1/r{n}/{id}",
        "/api/v1/r{n}/{id}/items",
        "/static/r{n}/*",
    ];
    let routes: Vec<Route> = (0..routes)
        .map(|n| {
            let path = shapes[n % shapes.len()].replace("{n}", &n.to_string());
            Route {
                pattern: PathPattern::parse(&path).expect("valid pattern"),
                path,
                methods: if n % 3 == 0 { vec![Method::GET] } else { Vec::new() },
                host: None,
                headers: Vec::new(),
                capability: n % capabilities.len(),
            }
        })
        .collect();
    let targets = vec![Stage::Service; capabilities.len()];
    RouteTable::new(
        Arc::new(Matcher::new(routes, capabilities, Some("legacy".into()))),
        targets,
        1,
    )
}

fn bench(c: &mut Criterion) {
    let table = table(1_000);
    let headers = HeaderMap::new();
    let mut group = c.benchmark_group("route decision, 1000 routes");
    for (name, path) in [
        ("template hit", "/api/v1/r997/12345/items"),
        ("exact hit", "/api/v1/r996"),
        ("prefix hit", "/static/r999/css/site.css"),
        ("miss to default", "/checkout/cart"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(table.decide(
                    &Method::GET,
                    Some("shop.example"),
                    black_box(path),
                    &headers,
                    CLIENT,
                ))
                .backend
            })
        });
    }
    group.bench_function("normalize + decide", |b| {
        b.iter(|| {
            let path =
                facade::path::normalize(black_box("/api/v1/r997/../r997/12345/items")).expect("valid path");
            black_box(
                table
                    .decide(&Method::GET, None, &path, &headers, CLIENT)
                    .backend
                    .map(str::len),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
