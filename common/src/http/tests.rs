//! A toy API driven through [`super::router`], asserting the router's NSQ
//! behaviour independently of any one daemon.

use super::*;
use axum::body::Body;
use axum::http::Request as HttpRequest;
use tower::ServiceExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ep {
    Ping,
    Info,
    Create,
    Opt,
    Boom,
}

const ROUTES: &[Route<Ep>] = &[
    route("GET", "/ping", Ep::Ping),
    route("HEAD", "/ping", Ep::Ping).extra(),
    route("GET", "/info", Ep::Info).unlogged(),
    route("POST", "/topic/create", Ep::Create),
    route("GET", "/opt/:name", Ep::Opt),
    route("PUT", "/opt/:name", Ep::Opt),
    route("GET", "/boom", Ep::Boom),
];

fn app() -> Router {
    router(
        ROUTES,
        "state",
        |state: &'static str, m: Matched<Ep>, req| async move {
            match m.endpoint {
                Ep::Ping => plain_text(Ok(Reply::text("OK"))),
                Ep::Info => v1(Ok(Reply::json(&serde_json::json!({ "state": state })))),
                Ep::Create => v1(Params::from_query(req.uri().query()).and_then(|p| {
                    p.get("topic")
                        .map(|_| Reply::Empty)
                        .ok_or(ApiError::bad_request("MISSING_ARG_TOPIC"))
                })),
                Ep::Opt => v1(Ok(Reply::text(format!(
                    "{} {}",
                    req.method(),
                    m.param("name").unwrap_or_default()
                )))),
                Ep::Boom => panic!("handler bug"),
            }
        },
    )
}

struct Resp {
    status: u16,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn send(method: &str, uri: &str) -> Resp {
    let req = HttpRequest::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let resp = app().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test]
async fn matched_routes_reach_the_handler_with_state_and_params() {
    let r = send("GET", "/ping").await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    assert_eq!(r.header("x-nsq-content-type"), None);
    let r = send("GET", "/info").await;
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"state":"state"}"#));
    assert_eq!(r.header("x-nsq-content-type"), Some("nsq; version=1.0"));
    let r = send("PUT", "/opt/log_level").await;
    assert_eq!((r.status, r.body.as_str()), (200, "PUT log_level"));
    let r = send("POST", "/topic/create").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, r#"{"message":"MISSING_ARG_TOPIC"}"#)
    );
    let r = send("POST", "/topic/create?topic=t;x").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, r#"{"message":"INVALID_REQUEST"}"#)
    );
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_options_follow_httprouter() {
    let r = send("GET", "/nope").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, r#"{"message":"NOT_FOUND"}"#)
    );
    assert_eq!(r.header("x-nsq-content-type"), Some("nsq; version=1.0"));
    let r = send("GET", "/topic/create").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (405, r#"{"message":"METHOD_NOT_ALLOWED"}"#)
    );
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    let r = send("DELETE", "/opt/x").await;
    assert_eq!(r.header("allow"), Some("GET, PUT, OPTIONS"));
    let r = send("OPTIONS", "/ping").await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(send("OPTIONS", "/nope").await.status, 404);
    assert_eq!(send("GET", "/opt/").await.status, 404);
    assert_eq!(send("GET", "/p%zzng").await.status, 400);
    assert_eq!(send("GET", "/p%69ng").await.status, 200);
}

#[tokio::test]
async fn near_misses_redirect_for_methods_the_go_router_knows() {
    let r = send("GET", "/ping/?x=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/ping?x=1"));
    assert_eq!(r.body, "<a href=\"/ping?x=1\">Moved Permanently</a>.\n\n");
    let r = send("POST", "//Topic/./CREATE/").await;
    assert_eq!(
        (r.status, r.header("location")),
        (307, Some("/topic/create"))
    );
    let r = send("GET", "/OPT/Mixed").await;
    assert_eq!((r.status, r.header("location")), (301, Some("/opt/Mixed")));
    // HEAD only has an extra route: no redirect, like the Go router.
    assert_eq!(send("HEAD", "/PING").await.status, 404);
}

#[tokio::test]
async fn a_panicking_handler_answers_500_internal_error() {
    let r = send("GET", "/boom").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, r#"{"message":"INTERNAL_ERROR"}"#)
    );
    // The router still serves after a panic.
    assert_eq!(send("GET", "/ping").await.status, 200);
}
