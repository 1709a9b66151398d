//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of every route,
//! generated from the handlers' `#[utoipa::path]` attributes and the wire
//! types' `ToSchema` derives, so that it follows the code.

use std::sync::LazyLock;

use rocket::http::{ContentType, Status};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::overview::{OverviewBody, ServerOverviewBody};
use super::params::TimeText;
use super::prometheus::{
    PromErrorBody, PromListForm, PromQueryForm, PromRangeForm, PromSeriesForm, PromSuccessBody,
    QueryData, SelectorText, Selectors, SeriesLabels,
};
use super::wire::{
    BatchEntry, BucketBody, HealthBody, LoadBody, RangeBody, SampleBody, ServerBody,
};
use crate::error::{ApiError, ErrorBody};

const DESCRIPTION: &str = "\
Records server CPU and RAM load and answers per-minute, per-hour and \
any-step averages, minima and maxima.

Every error is `{\"error\": \"...\"}` (`ErrorBody`), except the dashboard's \
HTML error pages and the Prometheus-compatible routes' failures, which use \
Prometheus's envelope (`PromErrorBody`; a `401` or `415` there is still an \
`ErrorBody`). A query parameter of an `/api/v1` route given twice is \
refused with `422`. A request whose path exists under another method is \
answered `405` with an `Allow` header (response `MethodNotAllowed`).

Tokens are optional: with `read_token` set, data routes need \
`Authorization: Bearer <read token>`; with `ingest_token` set, ingest and \
delete routes need the ingest token. Without them configured those routes \
are open. `/health`, the dashboard pages and this document never need one.";

#[derive(OpenApi)]
#[openapi(
    info(title = "sperform", description = DESCRIPTION),
    paths(
        super::samples::post_sample,
        super::samples::post_batch,
        super::servers::list,
        super::servers::load,
        super::servers::range,
        super::servers::delete,
        super::overview::overview,
        openapi,
        super::health::health,
        super::metrics::metrics,
        super::dashboard::overview_page,
        super::dashboard::server_page,
        super::dashboard::no_such_server_page,
        super::dashboard::asset,
        super::prometheus::query_get,
        super::prometheus::query_post,
        super::prometheus::query_range_get,
        super::prometheus::query_range_post,
        super::prometheus::labels_get,
        super::prometheus::labels_post,
        super::prometheus::label_values,
        super::prometheus::series_get,
        super::prometheus::series_post,
        super::prometheus::buildinfo,
    ),
    components(schemas(
        ErrorBody,
        SampleBody,
        BatchEntry,
        LoadBody,
        BucketBody,
        RangeBody,
        ServerBody,
        OverviewBody,
        ServerOverviewBody,
        HealthBody,
        PromErrorBody,
        PromSuccessBody<QueryData>,
        PromSuccessBody<Vec<String>>,
        PromSuccessBody<Vec<SeriesLabels>>,
        PromQueryForm,
        PromRangeForm,
        PromListForm,
        PromSeriesForm,
        SelectorText,
        Selectors,
        TimeText,
    )),
    modifiers(&Security),
    tags(
        (name = "ingest", description = "Reporting samples (ingest token)"),
        (name = "read", description = "Reading load (read token)"),
        (name = "operations", description = "Health, metrics and this document"),
        (name = "dashboard", description = "The dashboard's HTML pages and assets"),
        (name = "prometheus", description = "The Prometheus-compatible read API (read token), in Prometheus's envelopes"),
    )
)]
pub struct ApiDoc;

/// Adds the two bearer schemes and the shared `405` response.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            (
                "read_token",
                "The read token (`read_token`), when the daemon has one configured.",
            ),
            (
                "ingest_token",
                "The ingest token (`ingest_token`), when the daemon has one configured.",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(description))
                        .build(),
                ),
            );
        }
        components.responses.insert(
            "MethodNotAllowed".to_owned(),
            ResponseBuilder::new()
                .description("The path exists, but not under this method")
                .header(
                    "Allow",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .description(Some("The methods the path accepts, comma separated"))
                        .build(),
                )
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
                .into(),
        );
    }
}

static DOCUMENT: LazyLock<Result<String, String>> =
    LazyLock::new(|| ApiDoc::openapi().to_json().map_err(|err| err.to_string()));

/// The OpenAPI document of this daemon (never behind a token).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "This OpenAPI 3.1 document", content(("application/json"))),
        (status = 500, description = "The document could not be rendered", body = ErrorBody),
    )
)]
#[rocket::get("/openapi.json")]
pub fn openapi() -> Result<(ContentType, &'static str), ApiError> {
    match &*DOCUMENT {
        Ok(json) => Ok((ContentType::JSON, json.as_str())),
        Err(err) => {
            log::error!("could not render the OpenAPI document: {err}");
            Err(ApiError::new(
                Status::InternalServerError,
                "could not render the OpenAPI document; see the daemon's log",
            ))
        }
    }
}
