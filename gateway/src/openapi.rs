//! The OpenAPI 3 document of the REST API, served at `/api/openapi.json`.
//! Kept as a file beside the code; a test checks it covers every route.

use axum::http::header;
use axum::response::IntoResponse;

pub const DOCUMENT: &str = include_str!("../openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for (path, method) in [
            ("/api/v1/dossiers", "post"),
            ("/api/v1/dossiers/{reference}", "get"),
            ("/api/v1/dossiers/{reference}/notices", "get"),
            ("/api/v1/queue", "get"),
            ("/healthz", "get"),
            ("/readyz", "get"),
            ("/api/v1/dossiers/{reference}/status", "get"),
            ("/api/v1/dossiers/{reference}/code", "post"),
            ("/api/v1/postal/envelopes/{id}/attachment", "post"),
            ("/api/v1/dossiers/{reference}/documents", "post"),
            ("/api/v1/dossiers/{reference}/documents/{sha256}", "get"),
            ("/api/v1/dossiers/{reference}/papers", "get"),
            ("/api/v1/dossiers/{reference}/papers/{id}", "get"),
            ("/api/v1/processing-times", "get"),
            ("/api/v1/attestations/{code}", "get"),
            ("/api/v1/agent/queue/next", "post"),
            ("/api/v1/agent/dossiers/{reference}", "get"),
            (
                "/api/v1/agent/dossiers/{reference}/document-requests",
                "post",
            ),
            ("/api/v1/agent/dossiers/{reference}/documents", "post"),
            ("/api/v1/agent/dossiers/{reference}/decision", "post"),
            ("/api/v1/agent/dossiers/{reference}/withdrawal", "post"),
            ("/api/v1/agent/dossiers/{reference}/link", "post"),
            ("/api/v1/agent/dossiers/{reference}/takeover", "post"),
            ("/api/v1/agent/dossiers/{reference}/card-handover", "post"),
            ("/api/v1/admin/agents", "get"),
            (
                "/api/v1/admin/agents/{uid}/grants/{role}/{prefecture}",
                "put",
            ),
            (
                "/api/v1/admin/agents/{uid}/grants/{role}/{prefecture}",
                "delete",
            ),
            ("/api/v1/admin/audit", "get"),
            ("/api/v1/equity", "get"),
            ("/metrics", "get"),
            ("/ops", "get"),
            ("/api/v1/sites", "get"),
            ("/api/v1/sites/{site}/slots", "get"),
            ("/api/v1/appointments", "post"),
            ("/api/v1/appointments/{id}", "get"),
            ("/api/v1/appointments/{id}/move", "post"),
            ("/api/v1/appointments/{id}/notice", "get"),
            ("/api/v1/appointments/{id}/cancellation", "post"),
            ("/api/v1/reports/{id}", "get"),
            ("/api/v1/agent/reports/{id}/alternative", "post"),
            ("/api/v1/postal/forms", "post"),
            ("/api/v1/postal/separators", "get"),
            ("/api/v1/postal/batches", "post"),
            ("/api/v1/postal/batches/{id}", "get"),
            ("/api/v1/postal/keying", "get"),
            ("/api/v1/postal/envelopes/{id}", "get"),
            ("/api/v1/postal/envelopes/{id}/confirmation", "post"),
            ("/api/v1/postal/envelopes/{id}/routing", "post"),
            ("/api/v1/postal/pages/{sha256}", "get"),
            ("/api/v1/postal/letters", "get"),
            ("/api/v1/postal/letters/{id}", "get"),
        ] {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} undocumented"
            );
        }
        // Every $ref points at a schema that exists.
        let text = super::DOCUMENT;
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "missing schema {name}"
            );
        }
    }

    /// What the extractors, the body limit, the timeout and the services
    /// can answer is written down for every route that can get it.
    #[test]
    fn every_status_a_route_can_answer_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let mut missing = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let body = &op["requestBody"]["content"];
                let mut needed = Vec::new();
                if !params.is_empty() || body.is_object() {
                    needed.push("400");
                }
                if params.iter().any(|p| p["in"] == "path") {
                    needed.push("404");
                }
                if body.is_object() {
                    needed.extend(["413", "415"]);
                }
                if path.starts_with("/api/v1/") {
                    needed.extend(["503", "504"]);
                }
                for code in needed {
                    if !op["responses"][code].is_object() {
                        missing.push(format!("{method} {path} {code}"));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "undocumented: {missing:?}");
        // Every response $ref points at one that exists.
        for part in super::DOCUMENT.split("\"#/components/responses/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                doc["components"]["responses"][name].is_object(),
                "missing response {name}"
            );
        }
    }

    /// Every route is behind the policy layer: a token that does not check
    /// is a 401 (saying how to authenticate), a scanning station's token a
    /// 403 even on public routes, a provider that cannot be reached a 503.
    /// Each operation says which sign-in it takes.
    #[test]
    fn every_operation_documents_sign_in_and_its_refusals() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
        let unauthenticated = &doc["components"]["responses"]["Unauthenticated"];
        assert!(
            unauthenticated["headers"]["WWW-Authenticate"].is_object(),
            "a 401 says how to authenticate"
        );
        let mut missing = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = &op["responses"];
                if responses["401"]["$ref"] != "#/components/responses/Unauthenticated" {
                    missing.push(format!("{method} {path} 401"));
                }
                for code in ["403", "503"] {
                    if !responses[code].is_object() {
                        missing.push(format!("{method} {path} {code}"));
                    }
                }
                let Some(security) = op["security"].as_array() else {
                    missing.push(format!("{method} {path} security"));
                    continue;
                };
                for requirement in security {
                    for name in requirement.as_object().unwrap().keys() {
                        if !doc["components"]["securitySchemes"][name].is_object() {
                            missing.push(format!("{method} {path} scheme {name}"));
                        }
                    }
                }
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                if params.iter().any(|p| p["name"] == "X-Agent-Id") {
                    missing.push(format!("{method} {path} still takes X-Agent-Id"));
                }
            }
        }
        assert!(missing.is_empty(), "undocumented: {missing:?}");
        // The person's own link, on what it opens.
        for (path, method) in [
            ("/api/v1/appointments/{id}", "get"),
            ("/api/v1/appointments/{id}/move", "post"),
            ("/api/v1/appointments/{id}/notice", "get"),
            ("/api/v1/appointments/{id}/cancellation", "post"),
            ("/api/v1/reports/{id}", "get"),
        ] {
            let params = doc["paths"][path][method]["parameters"].as_array().unwrap();
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == "X-Link-Secret" && p["in"] == "header"),
                "{method} {path} takes no X-Link-Secret"
            );
        }
        assert!(
            doc["components"]["schemas"]["Appointment"]["properties"]["secret"].is_object(),
            "the booking's answer carries the secret"
        );
    }

    /// OpenAPI 3.0 takes `exclusiveMinimum`/`exclusiveMaximum` as booleans
    /// beside `minimum`/`maximum`; a number there is 3.1 and breaks 3.0 tools.
    #[test]
    fn the_document_is_openapi_3_0_throughout() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.0."));
        fn walk(v: &serde_json::Value, at: &str, bad: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, child) in m {
                        if matches!(k.as_str(), "exclusiveMinimum" | "exclusiveMaximum")
                            && !child.is_boolean()
                        {
                            bad.push(format!("{at}/{k}"));
                        }
                        if k == "type" && child.is_array() {
                            bad.push(format!("{at}/type (a list of types is 3.1)"));
                        }
                        walk(child, &format!("{at}/{k}"), bad);
                    }
                }
                serde_json::Value::Array(items) => {
                    for (i, child) in items.iter().enumerate() {
                        walk(child, &format!("{at}/{i}"), bad);
                    }
                }
                _ => {}
            }
        }
        let mut bad = Vec::new();
        walk(&doc, "", &mut bad);
        assert!(bad.is_empty(), "3.1 syntax in a 3.0 document: {bad:?}");
    }

    #[test]
    fn the_document_lists_the_domain_codes() {
        use guichet_dossier::{AnswerChannel, DocumentKind, Motif, Procedure, TitleKind};
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let schemas = &doc["components"]["schemas"];
        let listed = |v: &serde_json::Value| -> Vec<String> {
            v["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        let codes = |all: Vec<&str>| all.into_iter().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            listed(&schemas["Filing"]["properties"]["procedure"]),
            codes(Procedure::ALL.iter().map(|c| c.as_str()).collect())
        );
        assert_eq!(
            listed(&schemas["Filing"]["properties"]["motif"]),
            codes(Motif::ALL.iter().map(|c| c.as_str()).collect())
        );
        assert_eq!(
            listed(&schemas["CurrentTitle"]["properties"]["kind"]),
            codes(TitleKind::ALL.iter().map(|c| c.as_str()).collect())
        );
        assert_eq!(
            listed(&schemas["DocumentRef"]["properties"]["kind"]),
            codes(DocumentKind::ALL.iter().map(|c| c.as_str()).collect())
        );
        assert_eq!(
            listed(&schemas["Contact"]["properties"]["answer_channel"]),
            codes(AnswerChannel::ALL.iter().map(|c| c.as_str()).collect())
        );
    }
}
