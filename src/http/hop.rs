//! The claims hop's routes (`/hop/{provider}/…`, [`crate::hop`]) and how their answers are
//! rendered: a redirect is a `302 Found` with `Location` and `Cache-Control: no-store`; a page
//! is plain text (what went wrong, for the person at the browser); JSON answers carry the OAuth
//! headers the flow asks for.
//!
//! The token endpoint reads its form body through [`super::read_body`], with the API's body
//! limit and the body deadline of every route; queries are read by the hop under the same input
//! rules as every outside input.

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION, PRAGMA, WWW_AUTHENTICATE,
};
use actix_web::{HttpRequest, HttpResponse, web};
use tokio::time::Instant;

use super::{AppState, BodyError, read_body};
use crate::hop::{Answer, Callback};

/// Renders the hop's answer.
pub fn render(answer: Answer) -> HttpResponse {
    match answer {
        Answer::Redirect(location) => HttpResponse::Found()
            .insert_header((LOCATION, location))
            .insert_header((CACHE_CONTROL, "no-store"))
            .finish(),
        Answer::Page { status, message } => {
            HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
                .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
                .insert_header((CACHE_CONTROL, "no-store"))
                .body(format!("{message}\n"))
        }
        Answer::Json {
            status,
            body,
            no_store,
            authenticate,
        } => {
            let mut response =
                HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
            if no_store {
                response
                    .insert_header((CACHE_CONTROL, "no-store"))
                    .insert_header((PRAGMA, "no-cache"));
            }
            if let Some(value) = authenticate {
                response.insert_header((WWW_AUTHENTICATE, value));
            }
            response.json(body)
        }
    }
}

/// Renders the answer `work` gives; with `hop.server_timing` on, adds the `Server-Timing`
/// header that splits its time into the calls to dependencies and the rest ([`crate::timing`]).
async fn timed(state: &AppState, work: impl Future<Output = Answer>) -> HttpResponse {
    if !state.server_timing {
        return render(work.await);
    }
    let started = Instant::now();
    let (answer, waited) = crate::timing::measured(work).await;
    let mut response = render(answer);
    if let Ok(value) =
        HeaderValue::from_str(&crate::timing::server_timing(started.elapsed(), waited))
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static("server-timing"), value);
    }
    response
}

fn authorization(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
}

pub async fn discovery(provider: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    render(state.hop.discovery(&provider))
}

pub async fn jwks(provider: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    render(state.hop.jwks(&provider))
}

pub async fn authorize(
    request: HttpRequest,
    provider: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    timed(
        &state,
        state
            .hop
            .authorize(&provider, request.query_string().as_bytes()),
    )
    .await
}

pub async fn callback(
    request: HttpRequest,
    provider: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let with = Callback {
        logins: &state.logins,
        verifier: &state.verifier,
    };
    timed(
        &state,
        state
            .hop
            .callback(&provider, request.query_string().as_bytes(), with),
    )
    .await
}

pub async fn token(
    request: HttpRequest,
    payload: web::Payload,
    provider: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let form_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let body = match read_body(&request, payload, state.max_body_bytes, state.body_timeout).await {
        Ok(body) => body,
        Err(error) => {
            let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let mut response = HttpResponse::build(status);
            if !matches!(error, BodyError::Unreadable(_)) {
                response.force_close();
            }
            return response.insert_header((CACHE_CONTROL, "no-store")).json(
                serde_json::json!({"error": "invalid_request", "error_description": error.to_string()}),
            );
        }
    };
    if !form_type {
        return render(Answer::Json {
            status: 400,
            body: serde_json::json!({
                "error": "invalid_request",
                "error_description": "the body must be application/x-www-form-urlencoded"
            }),
            no_store: true,
            authenticate: None,
        });
    }
    timed(&state, async {
        state.hop.token(&provider, authorization(&request), &body)
    })
    .await
}

pub async fn userinfo(
    request: HttpRequest,
    provider: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    render(state.hop.userinfo(&provider, authorization(&request)))
}

/// The hop's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/hop/{provider}/.well-known/openid-configuration",
        web::get().to(discovery),
    )
    .route("/hop/{provider}/authorize", web::get().to(authorize))
    .route("/hop/{provider}/callback", web::get().to(callback))
    .route("/hop/{provider}/token", web::post().to(token))
    .route("/hop/{provider}/userinfo", web::get().to(userinfo))
    .route("/hop/{provider}/userinfo", web::post().to(userinfo))
    .route("/hop/{provider}/jwks", web::get().to(jwks));
}
