//! `GET /metrics` on the `metrics.listen` address: the Prometheus exposition
//! ([`crate::metrics::Metrics::encode`]) and nothing else.
//!
//! It is a listener of its own, never the public one: the public port answers `/metrics` with
//! 404 like any unknown path, so a scrape cannot be reached through the route Kratos, the IdPs
//! and browsers use. One worker thread serves it; a scrape only reads counters. Scrapes are not
//! logged.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};

use crate::metrics::{CONTENT_TYPE, Metrics};

async fn exposition(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(metrics.encode())
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body("not found: the metrics are at /metrics\n")
}

/// The metrics server on `listener`, started when awaited or spawned.
pub fn server(listener: TcpListener, metrics: Metrics) -> std::io::Result<actix_web::dev::Server> {
    let metrics = web::Data::new(metrics);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(metrics.clone())
            .route("/metrics", web::get().to(exposition))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .max_connections(64)
    .client_request_timeout(Duration::from_secs(5))
    .shutdown_timeout(1)
    // The application's server handles the signals and stops this one.
    .disable_signals()
    .listen(listener)?
    .run())
}
