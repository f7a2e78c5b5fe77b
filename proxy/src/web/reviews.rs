//! Review in the web UI (security, admin): a disposition and a comment per denial and per
//! policy event inside a session (a channel stripped, a transfer refused), and the reviewed
//! period as CSV for the monthly report.
//!
//! The dashboard itself (`denials::denials`) shows each subject's latest review, or a form to
//! give one, and counts what is still unreviewed.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use recorder::catalogue::{
    DecisionId, Disposition, NewReview, PolicyEventRow, ReviewRow, ReviewSubject, SessionEventId,
};
use serde::Deserialize;
use tracing::info;

use super::WebState;
use super::auth::Caller;
use super::i18n::{Lang, labels, tr};
use super::layout::{catalogue_failed, fmt_time, not_found};

/// The review form.
#[derive(Debug, Deserialize)]
pub struct ReviewForm {
    csrf: String,
    disposition: String,
    #[serde(default)]
    comment: String,
    /// The dashboard period to return to (forms of older pages).
    days: Option<i64>,
    /// The dashboard's query string to return to (its filters), without `?`.
    #[serde(default)]
    back: String,
}

/// Longest dashboard query string a review form returns to.
const MAX_BACK_LEN: usize = 4096;

/// `back` when it is a plain query string (so the redirect stays on the dashboard of this
/// site: no fragment, no line break, nothing to break out of `/denials?`).
fn safe_back(back: &str) -> Option<&str> {
    (!back.is_empty()
        && back.len() <= MAX_BACK_LEN
        && back
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~%=&+".contains(c)))
    .then_some(back)
}

/// The label of a disposition in `lang`.
pub fn disposition_label(lang: Lang, d: Disposition) -> &'static str {
    match d {
        Disposition::Expected => tr(lang, "review.expected"),
        Disposition::Mistake => tr(lang, "review.mistake"),
        Disposition::Incident => tr(lang, "review.incident"),
        _ => d.as_str(),
    }
}

/// Where a subject's review form posts, and the dashboard anchor of its row.
fn review_target(subject: ReviewSubject) -> (String, String) {
    match subject {
        ReviewSubject::Denial(id) => (format!("/denials/{id}/review"), format!("d-{id}")),
        ReviewSubject::PolicyEvent(id) => (format!("/events/{id}/review"), format!("e-{id}")),
    }
}

/// The dashboard cell of one denial or policy event: its latest review, and a form to
/// (re)review it.
pub fn review_cell(
    caller: &Caller,
    subject: ReviewSubject,
    latest: Option<&ReviewRow>,
    back: &str,
) -> Markup {
    let lang = caller.lang;
    let (action, _) = review_target(subject);
    let id = subject.id();
    let submit = if latest.is_some() {
        "review.again"
    } else {
        "review.submit"
    };
    html! {
        @if let Some(r) = latest {
            span class={ "review review-" (r.disposition.as_str()) }
                title={ (r.reviewer) " " (r.at.to_rfc3339()) } {
                (disposition_label(lang, r.disposition))
            }
            " "
            @if let Some(c) = &r.comment { span.review-comment { (c) } }
        }
        form.review-form method="post" action=(action) {
            input type="hidden" name="csrf" value=(caller.csrf);
            input type="hidden" name="back" value=(back);
            select name="disposition" id={ "review-" (id) "-disposition" }
                aria-label=(tr(lang, "review.disposition")) {
                @for d in Disposition::ALL {
                    option value=(d.as_str()) selected[latest.is_some_and(|r| r.disposition == *d)] {
                        (disposition_label(lang, *d))
                    }
                }
            }
            " "
            input name="comment" id={ "review-" (id) "-comment" } maxlength="2000"
                placeholder=(tr(lang, "review.comment")) aria-label=(tr(lang, "review.comment"));
            " "
            button id={ "review-" (id) "-submit" } { (tr(lang, submit)) }
        }
    }
}

/// `POST /denials/{id}/review` (security, admin).
pub async fn review(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<ReviewForm>,
) -> Response {
    let subject = id.parse::<DecisionId>().ok().map(ReviewSubject::Denial);
    add_review(&state, &caller, subject, form).await
}

/// `POST /events/{id}/review` (security, admin): the review of a policy event.
pub async fn review_event(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<ReviewForm>,
) -> Response {
    let subject = id
        .parse::<SessionEventId>()
        .ok()
        .map(ReviewSubject::PolicyEvent);
    add_review(&state, &caller, subject, form).await
}

async fn add_review(
    state: &WebState,
    caller: &Caller,
    subject: Option<ReviewSubject>,
    form: ReviewForm,
) -> Response {
    if !caller.csrf_ok(&form.csrf) {
        return (StatusCode::FORBIDDEN, tr(caller.lang, "error.csrf")).into_response();
    }
    if !caller.is_security() {
        return not_found(caller);
    }
    let (Some(subject), Ok(disposition)) = (subject, form.disposition.parse::<Disposition>())
    else {
        return (StatusCode::BAD_REQUEST, tr(caller.lang, "review.bad")).into_response();
    };
    let new = NewReview {
        subject,
        disposition,
        comment: Some(form.comment),
        reviewer: caller.user.clone(),
        at: Utc::now(),
        instance: state.services.instance().clone(),
    };
    match state.services.catalogue().add_review(&new).await {
        Ok(Some(_)) => {
            info!(user = %caller.user, ?subject, %disposition, "Reviewed");
            let (_, anchor) = review_target(subject);
            let back = safe_back(&form.back).map_or_else(
                || format!("days={}", form.days.unwrap_or(30)),
                str::to_owned,
            );
            Redirect::to(&format!("/denials?{back}#{anchor}")).into_response()
        }
        Ok(None) => not_found(caller),
        Err(e) => catalogue_failed(state, caller, &e),
    }
}

/// The dashboard's table of policy events (newest first), each with its review cell. The
/// event's kind is shown by name in the page's language; its id stays in `data-kind`.
pub fn policy_event_table(
    state: &WebState,
    caller: &Caller,
    events: &[&PolicyEventRow],
    reviews: &std::collections::HashMap<ReviewSubject, ReviewRow>,
    back: &str,
) -> Markup {
    let lang = caller.lang;
    html! {
        h2 id="policy-events-title" { (tr(lang, "review.policy_events")) }
        @if events.is_empty() {
            p id="no-policy-events" { (tr(lang, "review.policy_events_none")) }
        } @else {
            div.table-wrap {
                table id="policy-events" aria-labelledby="policy-events-title" {
                    thead { tr {
                        th scope="col" { (tr(lang, "field.time")) }
                        th scope="col" { (tr(lang, "field.user")) }
                        th scope="col" { (tr(lang, "field.source")) }
                        th scope="col" { (tr(lang, "field.target")) }
                        th scope="col" { (tr(lang, "field.protocol")) }
                        th scope="col" { (tr(lang, "field.event")) }
                        th scope="col" { (tr(lang, "field.detail")) }
                        th scope="col" { (tr(lang, "review.title")) }
                    } }
                    tbody {
                        @for e in events {
                            @let subject = ReviewSubject::PolicyEvent(e.id);
                            // maud writes `class` before `id`: the review tests find a row by both.
                            tr.policy-event-row id={ "e-" (e.id) } data-kind=(e.kind) {
                                td { a href={ "/sessions/" (e.session_id) } {
                                    time datetime=(e.at.to_rfc3339()) { (fmt_time(state, e.at)) }
                                } }
                                td { (e.user) }
                                td { (e.source) }
                                td { (e.target) }
                                td { (labels::protocol(lang, e.protocol)) }
                                td { (super::playback::marker_label(lang, &e.kind)) }
                                td { (e.detail.as_deref().unwrap_or("")) }
                                td { (review_cell(caller, subject, reviews.get(&subject), back)) }
                            }
                        }
                    }
                }
            }
        }
    }
}
