//! Denial review in the web UI (security, admin): a disposition and a comment per denial,
//! and the reviewed period as CSV for the monthly report.
//!
//! The dashboard itself (`pages::denials`) shows each denial's latest review, or a form to
//! give one, and counts what is still unreviewed.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use recorder::catalogue::{DecisionId, DenialFilter, Disposition, NewReview, ReviewRow};
use serde::Deserialize;
use tracing::info;

use super::WebState;
use super::auth::Caller;
use super::html::escape;
use super::i18n::{Lang, tr};
use super::pages::{DenialQuery, MAX_DASHBOARD_DENIALS, catalogue_failed, not_found};

/// The review form.
#[derive(Debug, Deserialize)]
pub struct ReviewForm {
    csrf: String,
    disposition: String,
    #[serde(default)]
    comment: String,
    /// The dashboard period to return to.
    days: Option<i64>,
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

/// The dashboard cell of one denial: its latest review, and a form to (re)review it.
pub fn review_cell(
    caller: &Caller,
    id: DecisionId,
    latest: Option<&ReviewRow>,
    days: i64,
) -> String {
    let lang = caller.lang;
    let mut cell = String::new();
    if let Some(r) = latest {
        let _ = write!(
            cell,
            "<span class=\"review review-{}\" title=\"{}\">{}</span> ",
            r.disposition.as_str(),
            escape(&format!("{} {}", r.reviewer, r.at.to_rfc3339())),
            disposition_label(lang, r.disposition),
        );
        if let Some(c) = &r.comment {
            let _ = write!(cell, "<span class=\"review-comment\">{}</span>", escape(c));
        }
    }
    let options: String = Disposition::ALL
        .iter()
        .map(|d| {
            format!(
                "<option value=\"{}\"{}>{}</option>",
                d.as_str(),
                if latest.is_some_and(|r| r.disposition == *d) {
                    " selected"
                } else {
                    ""
                },
                disposition_label(lang, *d)
            )
        })
        .collect();
    let _ = write!(
        cell,
        "<form method=\"post\" action=\"/denials/{id}/review\" class=\"review-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"days\" value=\"{days}\">\
         <select name=\"disposition\" id=\"review-{id}-disposition\" aria-label=\"{}\">{options}</select> \
         <input name=\"comment\" id=\"review-{id}-comment\" maxlength=\"2000\" placeholder=\"{}\" aria-label=\"{}\"> \
         <button id=\"review-{id}-submit\">{}</button></form>",
        escape(&caller.csrf),
        tr(lang, "review.disposition"),
        tr(lang, "review.comment"),
        tr(lang, "review.comment"),
        tr(
            lang,
            if latest.is_some() {
                "review.again"
            } else {
                "review.submit"
            }
        ),
    );
    cell
}

/// `POST /denials/{id}/review` (security, admin).
pub async fn review(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<ReviewForm>,
) -> Response {
    if !caller.csrf_ok(&form.csrf) {
        return (StatusCode::FORBIDDEN, tr(caller.lang, "error.csrf")).into_response();
    }
    if !caller.is_security() {
        return not_found(&caller);
    }
    let (Ok(decision), Ok(disposition)) = (
        id.parse::<DecisionId>(),
        form.disposition.parse::<Disposition>(),
    ) else {
        return (StatusCode::BAD_REQUEST, tr(caller.lang, "review.bad")).into_response();
    };
    let new = NewReview {
        decision,
        disposition,
        comment: Some(form.comment),
        reviewer: caller.user.clone(),
        at: Utc::now(),
        instance: state.services.instance().clone(),
    };
    match state.services.catalogue().add_review(&new).await {
        Ok(Some(_)) => {
            info!(user = %caller.user, %decision, %disposition, "Denial reviewed");
            let days = form.days.unwrap_or(30);
            Redirect::to(&format!("/denials?days={days}#d-{decision}")).into_response()
        }
        Ok(None) => not_found(&caller),
        Err(e) => catalogue_failed(&state, &caller, &e),
    }
}

/// One CSV field, quoted, with formula-looking text defused: a cell starting with `=`, `+`,
/// `-`, `@` (or a tab or carriage return) is a formula to a spreadsheet, and a user name or a
/// reason comes from outside.
fn csv_field(s: &str) -> String {
    let defused = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", defused.replace('"', "\"\""))
}

/// `GET /denials.csv?days=N` (security, admin): the period's denials with their reviews.
pub async fn csv(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Query(q): Query<DenialQuery>,
) -> Response {
    if !caller.is_security() {
        return not_found(&caller);
    }
    let days = q.days();
    let since = Utc::now() - chrono::Duration::days(days);
    let catalogue = state.services.catalogue();
    let filter = DenialFilter {
        since: Some(since),
        limit: Some(MAX_DASHBOARD_DENIALS),
        ..DenialFilter::default()
    };
    let (rows, reviews) = match (
        catalogue.list_denials(&filter).await,
        catalogue.latest_reviews(since).await,
    ) {
        (Ok(rows), Ok(reviews)) => (rows, reviews),
        (Err(e), _) | (_, Err(e)) => return catalogue_failed(&state, &caller, &e),
    };
    let tz = state.services.inventory().timezone();
    let mut out = String::from(
        "time,protocol,user,contractor,source,target,rule,reason,disposition,comment,reviewer,reviewed_at,decision\r\n",
    );
    for d in &rows {
        let r = reviews.get(&d.id);
        let fields = [
            d.started_at.with_timezone(&tz).to_rfc3339(),
            d.protocol.to_string(),
            d.user.clone().unwrap_or_default(),
            d.contractor.clone().unwrap_or_default(),
            d.source.to_string(),
            d.target.clone().unwrap_or_default(),
            d.rule.clone(),
            d.reason.clone(),
            r.map(|r| r.disposition.as_str().to_owned())
                .unwrap_or_default(),
            r.and_then(|r| r.comment.clone()).unwrap_or_default(),
            r.map(|r| r.reviewer.clone()).unwrap_or_default(),
            r.map(|r| r.at.with_timezone(&tz).to_rfc3339())
                .unwrap_or_default(),
            d.id.to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    let name = format!(
        "sekisho-denials-{}.csv",
        Utc::now().with_timezone(&tz).format("%Y%m%d")
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("tanaka"), "\"tanaka\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "\"'-1\"");
        assert_eq!(csv_field("a,b\nc"), "\"a,b\nc\"");
    }
}
