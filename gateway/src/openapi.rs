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
            ("/api/v1/queue", "get"),
            ("/healthz", "get"),
            ("/readyz", "get"),
            ("/api/v1/dossiers/{reference}/status", "get"),
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
            ("/api/v1/equity", "get"),
            ("/metrics", "get"),
            ("/ops", "get"),
            ("/api/v1/sites", "get"),
            ("/api/v1/sites/{site}/slots", "get"),
            ("/api/v1/appointments", "post"),
            ("/api/v1/appointments/{id}", "get"),
            ("/api/v1/appointments/{id}/move", "post"),
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
