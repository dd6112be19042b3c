//! The route decision: which route, capability, target and backend serve a
//! request. A pure function of the request head and the current table — no
//! I/O, no clock — so it is tested without sockets and benchmarked alone.
//!
//! Routes are ordered: the first route (in the order of the config file)
//! whose path, methods, host and headers all match wins. To keep that cheap
//! as the table grows, path patterns live in a segment trie; a lookup walks
//! the request's segments once, following the literal child and the `{param}`
//! child, and keeps the lowest-numbered route whose other predicates match.
//! (A ready-made router such as `matchit` picks the most specific pattern,
//! not the first in the user's order, hence this small trie.)

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use hyper::header::HeaderName;
use hyper::http::HeaderValue;
use hyper::{HeaderMap, Method};

use crate::decision::canary::{self, StickyKey};
use crate::decision::stage::Stage;

/// Which side serves one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The monolith.
    Legacy,
    /// The extracted service.
    Service,
}

impl Target {
    /// The lower-case name used in headers, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Legacy => "legacy",
            Target::Service => "service",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A path pattern: `/products` (exact), `/products/{id}` (template),
/// `/static/*` (prefix, on segment boundaries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// Exactly these segments.
    Exact(Vec<String>),
    /// Segments where `None` matches any one segment.
    Template(Vec<Option<String>>),
    /// These segments and anything below them.
    Prefix(Vec<String>),
}

impl PathPattern {
    /// Parses a pattern as written in the config file.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("path `{text}` must start with `/`"));
        }
        let (body, prefix) = match text.strip_suffix("/*") {
            Some(body) => (body, true),
            None => (text, false),
        };
        let mut segments = Vec::new();
        let mut template = false;
        for segment in body.split('/').filter(|s| !s.is_empty()) {
            if segment == "." || segment == ".." {
                return Err(format!("path `{text}` contains a dot segment"));
            }
            if segment.contains('*') {
                return Err(format!(
                    "path `{text}`: `*` is only allowed as a final `/*` (prefix match)"
                ));
            }
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "path `{text}`: `{segment}` is not a valid parameter (use `{{name}}`)"
                    ));
                }
                template = true;
                segments.push(None);
            } else if segment.contains(['{', '}']) {
                return Err(format!(
                    "path `{text}`: a parameter must be a whole segment, like `/{{id}}`"
                ));
            } else {
                segments.push(Some(segment.to_owned()));
            }
        }
        if prefix && template {
            return Err(format!(
                "path `{text}`: a prefix pattern cannot contain parameters"
            ));
        }
        Ok(if prefix {
            PathPattern::Prefix(segments.into_iter().flatten().collect())
        } else if template {
            PathPattern::Template(segments)
        } else {
            PathPattern::Exact(segments.into_iter().flatten().collect())
        })
    }
}

/// One configured route, compiled.
#[derive(Debug, Clone)]
pub struct Route {
    /// The pattern as written, for `explain` and listings.
    pub path: String,
    /// The compiled pattern.
    pub pattern: PathPattern,
    /// Methods it accepts; empty means any.
    pub methods: Vec<Method>,
    /// Host it requires (lower case, no port), if any.
    pub host: Option<String>,
    /// Headers it requires, with exact values.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Index of its capability in [`Matcher::capabilities`].
    pub capability: usize,
}

impl Route {
    fn accepts(&self, method: &Method, host: Option<&str>, headers: &HeaderMap) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.host.as_deref().is_none_or(|want| host == Some(want))
            && self
                .headers
                .iter()
                .all(|(name, value)| headers.get(name) == Some(value))
    }
}

/// A capability's static definition: its name, its two backends and what
/// the route decision needs to know about its canary and shadow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityDef {
    /// The capability's name.
    pub name: String,
    /// Backend that serves it while on legacy.
    pub legacy_backend: String,
    /// Backend that serves it once on service.
    pub service_backend: String,
    /// What keeps a client on one side of a canary.
    pub sticky: StickyKey,
    /// The service writes only to its own database, so a copy of a
    /// non-idempotent request may be shadowed to it.
    pub shadow_writes: bool,
}

impl CapabilityDef {
    /// A capability with the default canary key (the client's address) that
    /// shadows only idempotent requests.
    pub fn new(name: &str, legacy_backend: &str, service_backend: &str) -> Self {
        Self {
            name: name.to_owned(),
            legacy_backend: legacy_backend.to_owned(),
            service_backend: service_backend.to_owned(),
            sticky: StickyKey::ClientAddress,
            shadow_writes: false,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Node {
    /// foldhash, not SipHash: the keys are the operator's own route
    /// segments, fixed when the table is built, so there is no flooding to
    /// defend against, and a lookup per path segment is on every request.
    literal: foldhash::HashMap<String, Node>,
    param: Option<Box<Node>>,
    /// Exact and template routes that end here.
    terminal: Vec<usize>,
    /// Prefix routes whose prefix ends here.
    prefix: Vec<usize>,
}

/// The static part of the table, built once from the config.
#[derive(Debug, Clone)]
pub struct Matcher {
    routes: Vec<Route>,
    capabilities: Vec<CapabilityDef>,
    default_backend: Option<String>,
    root: Node,
}

impl Matcher {
    /// Compiles routes (in priority order) over their capabilities.
    pub fn new(
        routes: Vec<Route>,
        capabilities: Vec<CapabilityDef>,
        default_backend: Option<String>,
    ) -> Self {
        let mut root = Node::default();
        for (index, route) in routes.iter().enumerate() {
            let mut node = &mut root;
            let segments: Vec<Option<&str>> = match &route.pattern {
                PathPattern::Exact(s) | PathPattern::Prefix(s) => {
                    s.iter().map(|s| Some(s.as_str())).collect()
                }
                PathPattern::Template(s) => s.iter().map(|s| s.as_deref()).collect(),
            };
            for segment in segments {
                node = match segment {
                    Some(literal) => node.literal.entry(literal.to_owned()).or_default(),
                    None => node.param.get_or_insert_with(Box::default),
                };
            }
            match route.pattern {
                PathPattern::Prefix(_) => node.prefix.push(index),
                _ => node.terminal.push(index),
            }
        }
        Self {
            routes,
            capabilities,
            default_backend,
            root,
        }
    }

    /// The routes, in priority order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The capabilities, by index.
    pub fn capabilities(&self) -> &[CapabilityDef] {
        &self.capabilities
    }

    /// The index of the named capability.
    pub fn capability_index(&self, name: &str) -> Option<usize> {
        self.capabilities.iter().position(|c| c.name == name)
    }

    /// The backend for requests no route matches, if any.
    pub fn default_backend(&self) -> Option<&str> {
        self.default_backend.as_deref()
    }

    /// The first route matching the request head, by index.
    pub fn find(
        &self,
        method: &Method,
        host: Option<&str>,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<usize> {
        let segments = path.split('/').filter(|s| !s.is_empty());
        let mut best = None;
        self.walk(&self.root, segments, method, host, headers, &mut best);
        best
    }

    fn consider(
        &self,
        candidates: &[usize],
        method: &Method,
        host: Option<&str>,
        headers: &HeaderMap,
        best: &mut Option<usize>,
    ) {
        // Candidates are in ascending order: the first acceptable one is the
        // best this node offers.
        for &index in candidates {
            if best.is_some_and(|b| b <= index) {
                return;
            }
            if self.routes[index].accepts(method, host, headers) {
                *best = Some(index);
                return;
            }
        }
    }

    fn walk<'p>(
        &self,
        node: &Node,
        mut segments: impl Iterator<Item = &'p str> + Clone,
        method: &Method,
        host: Option<&str>,
        headers: &HeaderMap,
        best: &mut Option<usize>,
    ) {
        self.consider(&node.prefix, method, host, headers, best);
        match segments.next() {
            None => self.consider(&node.terminal, method, host, headers, best),
            Some(segment) => {
                if let Some(child) = node.literal.get(segment) {
                    self.walk(child, segments.clone(), method, host, headers, best);
                }
                if let Some(child) = &node.param {
                    self.walk(child, segments, method, host, headers, best);
                }
            }
        }
    }
}

/// The whole routing table at one moment: the static matcher plus each
/// capability's current stage. Swapped as a whole when a stage changes,
/// so a request sees one consistent table from start to end.
#[derive(Debug, Clone)]
pub struct RouteTable {
    matcher: Arc<Matcher>,
    stages: Vec<Stage>,
    revision: i64,
}

/// Whether a request is copied to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowCopy<'t> {
    /// No: the capability is not in shadow (or no route matched).
    No,
    /// Yes, to this backend.
    To(&'t str),
    /// The capability is in shadow but the method is not idempotent and the
    /// service may write to shared state: not copied.
    RefusedUnsafeMethod,
}

/// Why a request goes where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'t> {
    /// Index and pattern of the matched route, if any.
    pub route: Option<(usize, &'t str)>,
    /// The route's capability, if any.
    pub capability: Option<&'t str>,
    /// Its index in the table.
    pub capability_index: Option<usize>,
    /// The capability's current stage, if a route matched.
    pub stage: Option<Stage>,
    /// The side that answers, if a route matched.
    pub target: Option<Target>,
    /// The backend to send to; `None` means no route and no default (404).
    pub backend: Option<&'t str>,
    /// Whether a copy goes to the service.
    pub shadow: ShadowCopy<'t>,
    /// The backend that answers instead when the service fails and the
    /// request is safe to repeat (canary and service stages).
    pub fallback: Option<&'t str>,
    /// The request's canary bucket (0 to 999), when in canary.
    pub canary_bucket: Option<u16>,
}

impl RouteTable {
    /// A table with every capability at the given stages.
    pub fn new(matcher: Arc<Matcher>, stages: Vec<Stage>, revision: i64) -> Self {
        Self {
            matcher,
            stages,
            revision,
        }
    }

    /// The same routes at other stages.
    pub fn with_stages(&self, stages: Vec<Stage>, revision: i64) -> Self {
        Self::new(Arc::clone(&self.matcher), stages, revision)
    }

    /// The static part.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Current stage of capability `index`.
    pub fn stage(&self, index: usize) -> Stage {
        self.stages.get(index).copied().unwrap_or(Stage::Legacy)
    }

    /// Current stages, by capability index.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The route store revision this table reflects.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Decides where a request goes. `path` must already be normalized and
    /// `host` lower-cased without its port; `client` is the peer's address
    /// (the canary's last-resort sticky key).
    pub fn decide(
        &self,
        method: &Method,
        host: Option<&str>,
        path: &str,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Decision<'_> {
        let Some(index) = self.matcher.find(method, host, path, headers) else {
            return Decision {
                route: None,
                capability: None,
                capability_index: None,
                stage: None,
                target: None,
                backend: self.matcher.default_backend(),
                shadow: ShadowCopy::No,
                fallback: None,
                canary_bucket: None,
            };
        };
        let route = &self.matcher.routes[index];
        let capability = &self.matcher.capabilities[route.capability];
        let stage = self.stage(route.capability);
        let mut canary_bucket = None;
        let target = match stage {
            Stage::Legacy | Stage::Shadow => Target::Legacy,
            Stage::Canary(share) => {
                let bucket = capability.sticky.bucket(&capability.name, headers, client);
                canary_bucket = Some(bucket);
                if canary::to_service(bucket, share) {
                    Target::Service
                } else {
                    Target::Legacy
                }
            }
            Stage::Service | Stage::Retired => Target::Service,
        };
        let shadow = match stage {
            Stage::Shadow if method.is_idempotent() || capability.shadow_writes => {
                ShadowCopy::To(&capability.service_backend)
            }
            Stage::Shadow => ShadowCopy::RefusedUnsafeMethod,
            _ => ShadowCopy::No,
        };
        let (backend, fallback) = match target {
            Target::Legacy => (&capability.legacy_backend, None),
            Target::Service => (
                &capability.service_backend,
                stage.has_fallback().then_some(capability.legacy_backend.as_str()),
            ),
        };
        Decision {
            route: Some((index, route.path.as_str())),
            capability: Some(&capability.name),
            capability_index: Some(route.capability),
            stage: Some(stage),
            target: Some(target),
            backend: Some(backend),
            shadow,
            fallback,
            canary_bucket,
        }
    }
}

/// Lower-cases a `Host` header value and strips its port. Borrowed when
/// already lower case, as hosts nearly always are: this runs per request.
pub fn host_of(value: Option<&HeaderValue>) -> Option<std::borrow::Cow<'_, str>> {
    let text = value?.to_str().ok()?;
    let host = if text.starts_with('[') {
        text.split_once(']')
            .map_or(text, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        text.rsplit_once(':').map_or(text, |(h, _)| h)
    };
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    })
}

#[cfg(test)]
mod tests;
