//! The dashboard's CSV (`GET /denials.csv`): the period's denials and policy events with
//! their latest reviews, for the monthly report.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use recorder::catalogue::{DenialFilter, DenialRow, PolicyEventRow, ReviewRow, ReviewSubject};

use super::WebState;
use super::auth::Caller;
use super::denials::{DenialQuery, MAX_DASHBOARD_DENIALS};
use super::layout::{catalogue_failed, not_found};

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

/// `GET /denials.csv?days=N` (or `from`/`to`, as the dashboard's link gives them; security,
/// admin): the period's denials and policy events with their reviews.
pub async fn csv(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Query(q): Query<DenialQuery>,
) -> Response {
    if !caller.is_security() {
        return not_found(&caller);
    }
    let period = q.csv_period(&state);
    let since = period.since;
    let catalogue = state.services.catalogue();
    let filter = DenialFilter {
        since: Some(period.since),
        until: Some(period.until),
        limit: Some(MAX_DASHBOARD_DENIALS),
        ..DenialFilter::default()
    };
    let (rows, events, reviews) = match (
        catalogue.list_denials(&filter).await,
        catalogue.policy_events(since, MAX_DASHBOARD_DENIALS).await,
        catalogue.latest_reviews(since).await,
    ) {
        (Ok(rows), Ok(events), Ok(reviews)) => (rows, events, reviews),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return catalogue_failed(&state, &caller, &e);
        }
    };
    let tz = state.services.inventory().timezone();
    let mut out = String::from(
        "time,kind,protocol,user,contractor,source,target,rule,reason,disposition,comment,reviewer,reviewed_at,id\r\n",
    );
    let mut lines: Vec<(chrono::DateTime<Utc>, Vec<String>, Option<&ReviewRow>)> = Vec::new();
    for d in &rows {
        lines.push((
            d.started_at,
            denial_fields(d),
            reviews.get(&ReviewSubject::Denial(d.id)),
        ));
    }
    for e in events.iter().filter(|e| e.at < period.until) {
        lines.push((
            e.at,
            event_fields(e),
            reviews.get(&ReviewSubject::PolicyEvent(e.id)),
        ));
    }
    // One period, newest first, whatever the kind.
    lines.sort_by_key(|l| std::cmp::Reverse(l.0));
    for (at, subject, r) in lines {
        let mut fields = vec![at.with_timezone(&tz).to_rfc3339()];
        let id = subject.last().cloned().unwrap_or_default();
        fields.extend(subject.into_iter().take(8));
        fields.extend([
            r.map(|r| r.disposition.as_str().to_owned())
                .unwrap_or_default(),
            r.and_then(|r| r.comment.clone()).unwrap_or_default(),
            r.map(|r| r.reviewer.clone()).unwrap_or_default(),
            r.map(|r| r.at.with_timezone(&tz).to_rfc3339())
                .unwrap_or_default(),
            id,
        ]);
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    let name = format!(
        "sekisho-reviews-{}.csv",
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

/// A denial's CSV fields from `kind` to `reason`, then its id.
fn denial_fields(d: &DenialRow) -> Vec<String> {
    vec![
        "denial".to_owned(),
        d.protocol.to_string(),
        d.user.clone().unwrap_or_default(),
        d.contractor.clone().unwrap_or_default(),
        d.source.to_string(),
        d.target.clone().unwrap_or_default(),
        d.rule.clone(),
        d.reason.clone(),
        d.id.to_string(),
    ]
}

/// A policy event's CSV fields from `kind` to `reason` (the event kind as the rule, its
/// detail as the reason), then its id.
fn event_fields(e: &PolicyEventRow) -> Vec<String> {
    vec![
        "policy event".to_owned(),
        e.protocol.to_string(),
        e.user.clone(),
        e.contractor.clone(),
        e.source.to_string(),
        e.target.clone(),
        e.kind.clone(),
        e.detail.clone().unwrap_or_default(),
        e.id.to_string(),
    ]
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
