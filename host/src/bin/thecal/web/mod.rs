//! `thecal serve`: the clinic's programmer in the browser.
//!
//! One `thecal` process holds the serial port (or the built-in simulator) and one
//! session with the pump, and serves the screens to a browser on the same machine. The
//! pages are HTML rendered here (maud) from the same library calls the command line
//! makes (`thecal_host::workflow`, `view`, `report`); the browser runs no therapy logic,
//! and a few lines of script only check a schedule as it is typed (the server checks it
//! again before anything is planned).
//!
//! * [`guard`]: the door — loopback only, the per-launch token, `Host` and `Origin`.
//! * [`desk`]: what the server holds — the session, the session report, the plan
//!   waiting for its confirmation.
//! * [`page`]: the frame and the shared pieces.
//! * the screens: [`status`] (interrogation, alarms), [`prescription`], [`schedule`]
//!   (editor, review, write), [`refill`] (the refill wizard), [`actions`] (bolus,
//!   stop, resume, clock), [`log`] (event log, link), [`report`] (the session report).
//!
//! Every therapy change is planned first and shown; the plan stays on the server under
//! a one-time number, and only a POST of that number to `/confirm` carries it out —
//! once (a second POST finds nothing to confirm).

mod actions;
mod desk;
mod guard;
mod log;
mod page;
mod prescription;
mod refill;
pub mod report;
mod schedule;
mod schedule_form;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;
use tokio::sync::{Mutex, Notify};

use crate::session::{Access, Global, Session};
use crate::usage::UsageError;
pub use desk::random_hex;
use desk::Desk;
use guard::Door;

/// `thecal serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve on: a loopback address only (the programmer is for the browser
    /// on this machine); port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
}

/// The server's state.
pub struct App {
    door: Door,
    desk: Mutex<Desk>,
    ended: Notify,
}

type Shared = Arc<App>;

/// A page as a response.
fn html(m: Markup) -> Response {
    Html(m.into_string()).into_response()
}

/// Opens the session, serves until the clinician ends the session (or Ctrl-C), then
/// closes the session.
pub async fn run(a: Args, g: &Global) -> anyhow::Result<()> {
    if !a.listen.ip().is_loopback() {
        return Err(UsageError(format!(
            "--listen {}: the programmer serves this machine's browser only; give a \
             loopback address such as 127.0.0.1:7878",
            a.listen
        ))
        .into());
    }
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| UsageError(format!("cannot listen on {}: {e}", a.listen)))?;
    let port = listener.local_addr()?.port();
    let url = crate::cmd::records::url(g);
    let records = thecal_host::records::Records::open(&url)
        .await
        .map_err(|e| {
            UsageError(format!(
                "{e}: every session is kept in the session records; give --records PATH (a \
             SQLite file) or --records postgres://… (the clinic's server)"
            ))
        })?;
    let session = Session::open(g, Access::Session).await?;
    let mut desk = Desk::new(session, g, records)?;
    if let Err(e) = desk.interrogate().await {
        eprintln!("warning: the first interrogation failed: {e}");
    }
    let token = desk::random_hex()?;
    let hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    let app = Arc::new(App {
        door: Door {
            token: token.clone(),
            hosts,
        },
        desk: Mutex::new(desk),
        ended: Notify::new(),
    });
    println!(
        "thecal programmer for pump {}",
        app.desk.lock().await.banner().pump
    );
    println!("Open in this machine's browser: http://127.0.0.1:{port}/?token={token}");
    println!("Session records: {url}");
    println!("(End the session on the page, or press Ctrl-C.)");
    let router = routes(app.clone());
    let stop = {
        let app = app.clone();
        async move {
            tokio::select! {
                _ = app.ended.notified() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    };
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await;
    let app = Arc::try_unwrap(app).map_err(|_| anyhow::anyhow!("the server did not stop"))?;
    let closed = app.desk.into_inner().close().await;
    served?;
    closed
}

fn routes(app: Shared) -> Router {
    Router::new()
        .route("/", get(status::show))
        .route("/alarms/ack", post(status::acknowledge))
        .route("/prescription", get(prescription::show))
        .route("/plot/{which}", get(prescription::plot))
        .route("/schedule", get(schedule::editor))
        .route("/schedule/check", post(schedule::check))
        .route("/schedule/review", post(schedule::review))
        .route("/refill", get(refill::wizard))
        .route("/refill/review", post(refill::review))
        .route("/bolus", get(actions::bolus_form))
        .route("/bolus/review", post(actions::bolus_review))
        .route("/therapy", get(actions::therapy))
        .route("/therapy/review", post(actions::therapy_review))
        .route("/log", get(log::log))
        .route("/link", get(log::link))
        .route("/report", get(report::report))
        .route("/report.json", get(report::report_json))
        .route("/app.js", get(schedule::script))
        .route("/confirm", post(actions::confirm))
        .route("/end", post(end))
        .layer(middleware::from_fn_with_state(app.clone(), door))
        .with_state(app)
}

/// Every request passes the door; the first one (with `?token=`) is answered with the
/// cookie and sent to the same page without the token in its address.
async fn door(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let query = request.uri().query().map(str::to_string);
    if let Err(refused) = app
        .door
        .check(request.method(), request.headers(), query.as_deref())
    {
        let status = match refused {
            guard::Refused::Host(_) => StatusCode::MISDIRECTED_REQUEST,
            _ => StatusCode::FORBIDDEN,
        };
        let mut response =
            (status, html(page::bare("Refused", &refused.to_string()))).into_response();
        secure(&mut response);
        return response;
    }
    let with_token = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
    let mut response = if with_token && request.method() == Method::GET {
        let path = request.uri().path().to_string();
        let mut r = Redirect::to(&path).into_response();
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            guard::COOKIE,
            app.door.token
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    } else {
        next.run(request).await
    };
    secure(&mut response);
    response
}

/// Headers on every answer: no caching of patient data, no framing, a `Referer` only to
/// this server's own pages (`no-referrer` would make the browser send `Origin: null`
/// with every form, which the door refuses), scripts from this server only.
fn secure(r: &mut Response) {
    let h = r.headers_mut();
    for (k, v) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
        ),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
}

/// `POST /end`: the session ends; the page shows the final report, then the server
/// stops and the session is closed.
async fn end(State(app): State<Shared>) -> Response {
    let mut desk = app.desk.lock().await;
    let _ = desk.interrogate().await;
    let page = report::final_report(&mut desk);
    app.ended.notify_one();
    let mut r = html(page);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A response with a body of `text` and `status`, for the JSON checker.
fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
