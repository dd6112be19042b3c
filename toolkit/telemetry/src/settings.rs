//! Where traces go and which are kept, read from the standard `OTEL_*`
//! variables (the OpenTelemetry SDK configuration specification), once, at
//! start-up.
//!
//! Read here rather than left to the SDK and the exporter, which read some
//! of them on their own: the facade decides sampling itself, on its request
//! path, so it needs the sampler as a value; tests give settings explicitly
//! instead of changing the process's environment under other tests; and a
//! value this build cannot honour (gRPC, TLS) stops the start with the
//! variable's name instead of a warning in a log nobody reads.

use std::time::Duration;

use crate::sampling::Sampling;

/// The traces path appended to `OTEL_EXPORTER_OTLP_ENDPOINT`.
const TRACES_PATH: &str = "v1/traces";

/// A variable that cannot be honoured.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SettingsError {
    /// The protocol is not one this build exports with.
    #[error("{variable} is `{value}`, but this build exports traces only over OTLP/HTTP with protobuf: set it to `http/protobuf` (or leave it unset)")]
    Protocol {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// The endpoint is not a plain `http://` URL.
    #[error("{variable} is `{value}`: {reason}")]
    Endpoint {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An unknown sampler.
    #[error("OTEL_TRACES_SAMPLER is `{0}`: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio")]
    Sampler(String),
    /// A sampler argument that is not a ratio.
    #[error("OTEL_TRACES_SAMPLER_ARG is `{0}`: the ratio samplers take a number from 0 to 1")]
    SamplerArgument(String),
    /// A resource attribute list that does not parse.
    #[error("OTEL_RESOURCE_ATTRIBUTES holds `{0}`, which is not `key=value` (separate pairs with commas, percent-encode commas and equals signs in values)")]
    ResourceAttributes(String),
    /// A duration that is not a whole number of milliseconds.
    #[error("{variable} is `{value}`: give a whole number of milliseconds")]
    Milliseconds {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
}

/// How a process exports its traces.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The OTLP/HTTP traces URL spans are posted to.
    pub endpoint: String,
    /// `service.name`.
    pub service_name: String,
    /// More resource attributes (`OTEL_RESOURCE_ATTRIBUTES`, less
    /// `service.name`, which is [`TraceSettings::service_name`]).
    pub resource: Vec<(String, String)>,
    /// Which traces are kept.
    pub sampling: Sampling,
    /// How long finished spans wait to be exported in a batch; `None` for
    /// `OTEL_BSP_SCHEDULE_DELAY` or the SDK's default (5 s).
    pub schedule_delay: Option<Duration>,
    /// How long one export may take; `None` for `OTEL_EXPORTER_OTLP_TIMEOUT`
    /// (or its traces variant) or the exporter's default (10 s).
    pub export_timeout: Option<Duration>,
}

impl TraceSettings {
    /// Settings for tests and tools: every trace kept unless the caller's
    /// parent says otherwise, exported to `endpoint` (a full traces URL).
    pub fn new(endpoint: impl Into<String>, service_name: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            service_name: service_name.into(),
            resource: Vec::new(),
            sampling: Sampling::default(),
            schedule_delay: None,
            export_timeout: None,
        }
    }

    /// The settings in this process's environment, or `None` when no
    /// endpoint is set (or `OTEL_SDK_DISABLED` is `true`): then nothing is
    /// exported and nothing is started. `default_service_name` is used
    /// when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES`
    /// names the service.
    pub fn from_env(default_service_name: &str) -> Result<Option<Self>, SettingsError> {
        Self::from_lookup(default_service_name, |name| std::env::var(name).ok())
    }

    /// [`TraceSettings::from_env`] over any source of variables.
    pub fn from_lookup(
        default_service_name: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SettingsError> {
        // The specification: an empty value is the same as an unset one.
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let endpoint = match (
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            // The signal's own URL is used as it is.
            (Some(url), _) => checked_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)?,
            (None, Some(base)) => {
                let base = checked_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", base)?;
                let separator = if base.ends_with('/') { "" } else { "/" };
                format!("{base}{separator}{TRACES_PATH}")
            }
            (None, None) => return Ok(None),
        };
        for variable in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(value) = get(variable) {
                if value != "http/protobuf" {
                    return Err(SettingsError::Protocol { variable, value });
                }
                // The signal's own variable wins over the generic one.
                break;
            }
        }
        let mut resource = match get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(list) => resource_attributes(&list)?,
            None => Vec::new(),
        };
        let named = resource
            .iter()
            .position(|(key, _)| key == "service.name")
            .map(|at| resource.remove(at).1);
        let service_name = get("OTEL_SERVICE_NAME")
            .or(named)
            .unwrap_or_else(|| default_service_name.to_owned());
        let sampling = Sampling::from_variables(
            get("OTEL_TRACES_SAMPLER").as_deref(),
            get("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )?;
        let milliseconds = |variable: &'static str| -> Result<Option<Duration>, SettingsError> {
            get(variable)
                .map(|value| match value.parse::<u64>() {
                    Ok(ms) => Ok(Duration::from_millis(ms)),
                    Err(_) => Err(SettingsError::Milliseconds { variable, value }),
                })
                .transpose()
        };
        let export_timeout = match milliseconds("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")? {
            Some(timeout) => Some(timeout),
            None => milliseconds("OTEL_EXPORTER_OTLP_TIMEOUT")?,
        };
        Ok(Some(Self {
            endpoint,
            service_name,
            resource,
            sampling,
            schedule_delay: milliseconds("OTEL_BSP_SCHEDULE_DELAY")?,
            export_timeout,
        }))
    }
}

/// `url` if it is a plain-HTTP URL with a host: this build's exporter has
/// no TLS (a collector or agent beside the process is the usual set-up).
fn checked_endpoint(variable: &'static str, url: String) -> Result<String, SettingsError> {
    let reason = if url.starts_with("https://") {
        "this build exports over plain HTTP only (no TLS): point it at an OpenTelemetry Collector or agent beside the process"
    } else if !url.starts_with("http://") {
        "it must be an http:// URL"
    } else if url["http://".len()..].is_empty() || url["http://".len()..].starts_with('/') {
        "it names no host"
    } else {
        return Ok(url);
    };
    Err(SettingsError::Endpoint {
        variable,
        value: url,
        reason,
    })
}

/// `key=value,key=value`, values percent-decoded (the W3C Baggage format
/// the specification uses).
fn resource_attributes(list: &str) -> Result<Vec<(String, String)>, SettingsError> {
    list.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let bad = || SettingsError::ResourceAttributes(pair.to_owned());
            let (key, value) = pair.split_once('=').ok_or_else(bad)?;
            let key = key.trim();
            if key.is_empty() {
                return Err(bad());
            }
            Ok((key.to_owned(), percent_decode(value.trim()).ok_or_else(bad)?))
        })
        .collect()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::Root;

    fn read(pairs: &[(&str, &str)]) -> Result<Option<TraceSettings>, SettingsError> {
        TraceSettings::from_lookup("default-name", |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn without_an_endpoint_nothing_is_exported() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]), Ok(None));
        assert_eq!(read(&[("OTEL_SERVICE_NAME", "x")]), Ok(None));
        let disabled = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        assert_eq!(read(&disabled), Ok(None));
    }

    #[test]
    fn the_generic_endpoint_gets_the_traces_path_and_the_signal_one_does_not() {
        let generic = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]);
        assert_eq!(
            generic.unwrap().unwrap().endpoint,
            "http://collector:4318/v1/traces"
        );
        let slash = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/otlp/")]);
        assert_eq!(
            slash.unwrap().unwrap().endpoint,
            "http://collector:4318/otlp/v1/traces"
        );
        let both = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9999/in"),
        ]);
        assert_eq!(both.unwrap().unwrap().endpoint, "http://traces:9999/in");
    }

    #[test]
    fn an_unbuilt_protocol_or_tls_is_refused_naming_the_variable() {
        let grpc = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .unwrap_err();
        assert!(
            grpc.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_PROTOCOL is `grpc`"),
            "{grpc}"
        );
        let signal_wins = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]);
        assert!(signal_wins.is_ok());
        let tls = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318")]).unwrap_err();
        assert!(tls.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{tls}");
        assert!(read(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318")]).is_err());
    }

    #[test]
    fn service_name_and_resource_attributes() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        let defaulted = read(&[endpoint]).unwrap().unwrap();
        assert_eq!(defaulted.service_name, "default-name");
        let from_attributes = read(&[
            endpoint,
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=shop, deployment.environment=prod,team=a%2Cb",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(from_attributes.service_name, "shop");
        assert_eq!(
            from_attributes.resource,
            [
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "a,b".to_owned())
            ]
        );
        let named = read(&[
            endpoint,
            ("OTEL_SERVICE_NAME", "edge"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=shop"),
        ]);
        assert_eq!(named.unwrap().unwrap().service_name, "edge");
        assert_eq!(
            read(&[endpoint, ("OTEL_RESOURCE_ATTRIBUTES", "novalue")]),
            Err(SettingsError::ResourceAttributes("novalue".to_owned()))
        );
    }

    #[test]
    fn sampler_and_delays() {
        let settings = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ])
        .unwrap()
        .unwrap();
        assert!(settings.sampling.parent_based);
        assert!(matches!(settings.sampling.root, Root::Ratio(r) if (r - 0.01).abs() < 1e-12));
        assert_eq!(settings.schedule_delay, Some(Duration::from_millis(100)));
        let bad_delay = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
        ]);
        assert!(bad_delay.is_err());
    }
}
