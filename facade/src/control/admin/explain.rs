//! `GET /explain`: which route, capability, stage, side and instance would
//! serve a request, and why — the dry run of the route decision.

use std::net::IpAddr;

use crate::control::admin::api_error::ApiError;
use crate::control::admin::api_error::QueryParams;
use axum::extract::State;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::Json;
use hyper::{HeaderMap, Method, Uri};
use serde::{Deserialize, Serialize};

use super::AdminState;
use crate::decision::path;
use crate::decision::routing::{host_of, PathPattern, ShadowCopy, Target};
use crate::decision::stage::Stage;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExplainQuery {
    method: String,
    url: String,
    #[serde(default)]
    host: Option<String>,
    /// Headers as `Name: value` lines (they may decide the route and the
    /// canary's sticky key).
    #[serde(default)]
    headers: Option<String>,
    /// The client's address (the canary's last-resort key).
    #[serde(default)]
    client: Option<String>,
}

/// What `GET /explain` answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct Explanation {
    /// The path after normalization: what is matched and forwarded.
    pub normalized_path: String,
    /// `#index METHODS pattern` of the matched route.
    pub route: Option<String>,
    /// Its capability.
    pub capability: Option<String>,
    /// The capability's current stage.
    pub stage: Option<Stage>,
    /// The side that would answer.
    pub side: Option<Target>,
    /// The request's canary bucket (0 to 999), in canary.
    pub canary_bucket: Option<u16>,
    /// The backend chosen.
    pub backend: Option<String>,
    /// The backend a shadow copy would go to.
    pub shadow: Option<String>,
    /// The backend that would answer if the service failed.
    pub fallback: Option<String>,
    /// The instance the next request would go to.
    pub instance: Option<String>,
    /// The reasoning, in a sentence.
    pub why: String,
}

pub(super) async fn explain(
    State(state): State<AdminState>,
    QueryParams(query): QueryParams<ExplainQuery>,
) -> Result<Json<Explanation>, ApiError> {
    let method: Method = query
        .method
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{}` is not an HTTP method", query.method)))?;
    let uri: Uri = query
        .url
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{}` is not a URL or path", query.url)))?;
    let normalized = path::normalize(uri.path()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let host_value = query
        .host
        .clone()
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .and_then(|h| header::HeaderValue::from_str(&h).ok());
    let host = host_of(host_value.as_ref());
    let mut headers = HeaderMap::new();
    for line in query
        .headers
        .as_deref()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ApiError::BadRequest(format!("`{line}` is not a header; write `Name: value`")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| ApiError::BadRequest(format!("`{name}` is not a header name")))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| ApiError::BadRequest(format!("`{value}` is not a valid header value")))?;
        headers.append(name, value);
    }
    let client: IpAddr = match query.client.as_deref() {
        None => IpAddr::from([127, 0, 0, 1]),
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("`{text}` is not an IP address")))?,
    };
    let table = state.proxy.table.load();
    let decision = table.decide(&method, host.as_deref(), &normalized, &headers, client);
    let instance = decision
        .backend
        .and_then(|b| state.proxy.backends.get(b))
        .and_then(|b| b.pick())
        .map(|picked| picked.instance().authority.to_string());
    let route = decision.route.map(|(index, pattern)| {
        let methods = &table.matcher().routes()[index].methods;
        let methods = if methods.is_empty() {
            "*".to_owned()
        } else {
            methods.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
        };
        format!("#{} {methods} {pattern}", index + 1)
    });
    let why = match (&route, decision.capability, decision.stage, decision.backend) {
        (Some(route), Some(capability), Some(stage), Some(backend)) => {
            let mut why = format!(
                "route {route} is the first that matches {method} {normalized}; it belongs to capability `{capability}`, which is at {stage}"
            );
            if let Some(bucket) = decision.canary_bucket {
                why.push_str(&format!(
                    "; the request's sticky key falls in bucket {bucket} of 1000, {} the canary's share",
                    if decision.target == Some(Target::Service) {
                        "inside"
                    } else {
                        "outside"
                    }
                ));
            }
            why.push_str(&format!(", so backend `{backend}` serves it"));
            if let ShadowCopy::To(shadow) = decision.shadow {
                why.push_str(&format!(" and a copy goes to `{shadow}` to compare"));
            }
            if let ShadowCopy::RefusedUnsafeMethod = decision.shadow {
                why.push_str(" (not shadowed: the method is not idempotent and the capability does not say its service writes only its own database)");
            }
            if let Some(fallback) = decision.fallback {
                why.push_str(&format!(
                    "; if it fails, `{fallback}` answers a request that is safe to repeat"
                ));
            }
            why
        }
        (None, _, _, Some(backend)) => {
            format!("no route matches {method} {normalized}, so the default backend `{backend}` serves it")
        }
        _ => format!(
            "no route matches {method} {normalized} and there is no default backend: the facade answers 404"
        ),
    };
    let pattern_kind = decision
        .route
        .and_then(|(index, _)| match table.matcher().routes()[index].pattern {
            PathPattern::Prefix(_) => Some(" (prefix)"),
            _ => None,
        });
    Ok(Json(Explanation {
        normalized_path: normalized,
        route: route.map(|r| format!("{r}{}", pattern_kind.unwrap_or(""))),
        capability: decision.capability.map(str::to_owned),
        stage: decision.stage,
        side: decision.target,
        canary_bucket: decision.canary_bucket,
        backend: decision.backend.map(str::to_owned),
        shadow: match decision.shadow {
            ShadowCopy::To(backend) => Some(backend.to_owned()),
            _ => None,
        },
        fallback: decision.fallback.map(str::to_owned),
        instance,
        why,
    }))
}
