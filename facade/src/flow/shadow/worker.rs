//! Replaying queued requests against the service, learning the monolith's
//! own noise, and comparing the answers.
//!
//! A dispatcher takes jobs from the queue only while fewer than the
//! configured number of copies are in flight; meanwhile the queue fills
//! and further copies are dropped (and counted). Copies carry the client's
//! correlation id and `X-Strangler-Shadow: 1`, so a service can tell them
//! from real traffic.

use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::header::{HeaderName, HeaderValue};
use response_diff::{Captured, Comparison};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use toolkit_db::timestamp;
use toolkit_telemetry::opentelemetry::{Array, KeyValue, StringValue, Value};

use super::store::Sample;
use super::{ShadowJob, SkipReason};
use crate::flow::backend::Backend;
use crate::flow::outgoing::Outgoing;
use crate::flow::state::ProxyState;
use crate::flow::trace::{ShadowSpan, TRACEPARENT};
use crate::wire::body;
use crate::wire::upstream::AnswerWait;

/// The field reported when the service gave no comparable answer.
pub const SERVICE_ERROR_FIELD: &str = "service_error";

/// Runs until `stop`, with at most `concurrency` copies in flight.
pub async fn run(
    mut jobs: mpsc::Receiver<ShadowJob>,
    state: Arc<ProxyState>,
    concurrency: usize,
    stop: CancellationToken,
) {
    let in_flight = Arc::new(Semaphore::new(concurrency.max(1)));
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            permit = Arc::clone(&in_flight).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let job = tokio::select! {
            () = stop.cancelled() => return,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            shadow_one(&state, job).await;
            drop(permit);
        });
    }
}

enum Answer {
    Captured(Captured),
    Failed(String),
    TooLarge,
}

/// Sends the copy to `backend`; a traced copy carries `traceparent`, which
/// names the comparison's span as its parent.
async fn call(backend: &Backend, job: &ShadowJob, cap: usize, traceparent: Option<&HeaderValue>) -> Answer {
    let Some(picked) = backend.pick() else {
        return Answer::Failed(format!("backend `{}` has no instances", backend.name));
    };
    let mut head = job.head.with_header(
        &HeaderName::from_static("x-strangler-shadow"),
        &HeaderValue::from_static("1"),
    );
    if let Some(traceparent) = traceparent {
        head = head.with_header(&TRACEPARENT, traceparent);
    }
    let outgoing = Outgoing {
        method: job.method.clone(),
        uri: job.uri.clone(),
        head,
        original_host: job.original_host.clone(),
    };
    let body = body::full(job.body.clone());
    let host = outgoing.host(backend, picked.instance());
    // The copy has its own deadline around the whole exchange.
    let wait = AnswerWait {
        answer_timeout: backend.request_timeout,
        interim: None,
    };
    let exchange = async {
        let response = picked
            .instance()
            .client
            .send(&outgoing.head, host, body, wait)
            .await
            .map_err(|e| e.error.to_string())?;
        let (parts, body) = response.into_parts();
        match Limited::new(body, cap).collect().await {
            Ok(collected) => {
                let mut headers = parts.headers;
                // Trailers are compared as headers, as on the monolith's side.
                if let Some(trailers) = collected.trailers() {
                    for (name, value) in trailers {
                        headers.append(name.clone(), value.clone());
                    }
                }
                Ok(Some(Captured {
                    status: parts.status.as_u16(),
                    headers,
                    body: collected.to_bytes(),
                }))
            }
            Err(error) if error.is::<http_body_util::LengthLimitError>() => Ok(None),
            Err(error) => Err(format!("reading the answer failed: {error}")),
        }
    };
    match tokio::time::timeout(backend.request_timeout, exchange).await {
        Err(_) => Answer::Failed(format!("no complete answer within {:?}", backend.request_timeout)),
        Ok(Err(message)) => Answer::Failed(message),
        Ok(Ok(None)) => Answer::TooLarge,
        Ok(Ok(Some(captured))) => Answer::Captured(captured),
    }
}

async fn shadow_one(state: &ProxyState, job: ShadowJob) {
    let table = state.table.load();
    let Some(def) = table.matcher().capabilities().get(job.capability) else {
        return;
    };
    let Some(capability) = state.capabilities.get(job.capability) else {
        return;
    };
    let policy = &capability.policy.shadow;
    let (Some(service), Some(legacy)) = (
        state.backends.get(&def.service_backend),
        state.backends.get(&def.legacy_backend),
    ) else {
        return;
    };
    let shadower = &state.shadower;
    // A copy of a kept request gets a span of its own, in a trace of its
    // own linked to the request's.
    let span = job
        .link
        .filter(|_| state.tracing.is_some())
        .map(ShadowSpan::start);
    let traceparent = span.as_ref().and_then(ShadowSpan::traceparent);
    let answer = call(service, &job, policy.max_body_bytes, traceparent.as_ref()).await;
    if policy.learn_noise && job.method.is_safe() {
        if let Answer::Captured(again) = call(legacy, &job, policy.max_body_bytes, traceparent.as_ref()).await
        {
            let differing = response_diff::differing_fields(&job.legacy, &again, &policy.rules);
            let new = capability.learn(differing);
            if !new.is_empty() {
                tracing::info!(capability = job.name, fields = ?new, "learned shadow noise: the monolith's own answers differ here");
                shadower.recorder.learned(job.name, &new);
            }
        }
    }
    let (comparison, service_status) = match answer {
        Answer::TooLarge => {
            shadower.skipped(job.name, SkipReason::BodyTooLarge);
            if let (Some(span), Some(sink)) = (span, state.tracing.as_ref()) {
                span.ended(sink, "skipped", span_attributes(&job, None));
            }
            return;
        }
        Answer::Failed(message) => (
            Comparison {
                fields: vec![SERVICE_ERROR_FIELD.to_owned()],
                diff: format!("the service gave no answer to compare: {message}\n"),
            },
            0,
        ),
        Answer::Captured(captured) => (
            response_diff::compare(&job.legacy, &captured, &policy.rules, &capability.noise()),
            captured.status,
        ),
    };
    let matched = comparison.is_match();
    state
        .metrics
        .shadow(job.name, if matched { "match" } else { "mismatch" });
    let sample = (!matched).then(|| Sample {
        at: timestamp::now(),
        request_id: job.request_id.clone(),
        method: job.method.to_string(),
        path: job.path.clone(),
        legacy_status: i64::from(job.legacy.status),
        service_status: i64::from(service_status),
        fields: serde_json::to_string(&comparison.fields).unwrap_or_else(|_| "[]".to_owned()),
        diff: comparison.diff.clone(),
    });
    if !matched {
        tracing::debug!(capability = job.name, request_id = %job.request_id, fields = ?comparison.fields, "shadow mismatch");
    }
    if let (Some(span), Some(sink)) = (span, state.tracing.as_ref()) {
        let mut attributes = span_attributes(&job, Some(service_status));
        if !matched {
            let fields = comparison
                .fields
                .iter()
                .map(|f| StringValue::from(f.clone()))
                .collect();
            attributes.push(KeyValue::new(
                "strangler.shadow.fields",
                Value::Array(Array::String(fields)),
            ));
        }
        span.ended(sink, if matched { "match" } else { "mismatch" }, attributes);
    }
    shadower.recorder.compared(job.name, &comparison.fields, sample);
}

/// What the comparison's span says of the copy: its capability and request,
/// both sides' statuses (the service's 0 when it gave no answer).
fn span_attributes(job: &ShadowJob, service_status: Option<u16>) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("strangler.capability", job.name),
        KeyValue::new("strangler.request_id", job.request_id.clone()),
        KeyValue::new("http.request.method", job.method.to_string()),
        KeyValue::new("strangler.shadow.legacy_status", i64::from(job.legacy.status)),
    ];
    if let Some(status) = service_status {
        attributes.push(KeyValue::new(
            "strangler.shadow.service_status",
            i64::from(status),
        ));
    }
    attributes
}
