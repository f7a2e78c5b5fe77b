//! The denials dashboard (`GET /denials`, security and admin): what was refused and which
//! policy events happened in a period, counted by rule, user and day, and listed one by one
//! with their reviews (see [`super::reviews`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use recorder::catalogue::{DenialFilter, DenialRow, PolicyEventRow, ReviewSubject};
use serde::Deserialize;

use super::WebState;
use super::auth::Caller;
use super::html::escape;
use super::i18n::tr;
use super::pages::{catalogue_failed, fmt_time, not_found, page};

/// Denials read for the dashboard at most (the catalogue's page cap).
pub const MAX_DASHBOARD_DENIALS: u32 = recorder::catalogue::MAX_PAGE;
/// Denials listed one by one on the dashboard.
pub const DENIALS_LISTED: usize = 200;
/// Longest a dashboard period may be, in days.
pub const MAX_DASHBOARD_DAYS: i64 = 366;

/// The dashboard's period, and whether to list only what is still unreviewed.
#[derive(Debug, Default, Deserialize)]
pub struct DenialQuery {
    days: Option<i64>,
    unreviewed: Option<String>,
}

impl DenialQuery {
    /// The period in days, within the dashboard's bounds (default 30).
    pub fn days(&self) -> i64 {
        self.days.unwrap_or(30).clamp(1, MAX_DASHBOARD_DAYS)
    }

    fn unreviewed_only(&self) -> bool {
        self.unreviewed
            .as_deref()
            .is_some_and(|v| !v.is_empty() && v != "0")
    }
}

/// `GET /denials` (security, admin): counts by rule, user and day, and the latest denials.
pub async fn denials(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Query(q): Query<DenialQuery>,
) -> Response {
    if !caller.is_security() {
        return not_found(&caller);
    }
    let lang = caller.lang;
    let days = q.days();
    let since = Utc::now() - chrono::Duration::days(days);
    let filter = DenialFilter {
        since: Some(since),
        limit: Some(MAX_DASHBOARD_DENIALS),
        ..DenialFilter::default()
    };
    let rows = match state.services.catalogue().list_denials(&filter).await {
        Ok(r) => r,
        Err(e) => return catalogue_failed(&state, &caller, &e),
    };
    let reviews = match state.services.catalogue().latest_reviews(since).await {
        Ok(r) => r,
        Err(e) => return catalogue_failed(&state, &caller, &e),
    };
    let events = match state
        .services
        .catalogue()
        .policy_events(since, MAX_DASHBOARD_DENIALS)
        .await
    {
        Ok(e) => e,
        Err(e) => return catalogue_failed(&state, &caller, &e),
    };
    let denial_reviewed = |r: &DenialRow| reviews.contains_key(&ReviewSubject::Denial(r.id));
    let event_reviewed =
        |e: &PolicyEventRow| reviews.contains_key(&ReviewSubject::PolicyEvent(e.id));
    // What is still to review, denials and policy events alike: (rule or event, user,
    // contractor).
    let unreviewed: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| !denial_reviewed(r))
        .map(|r| {
            (
                r.rule.as_str(),
                r.user.as_deref().unwrap_or("-"),
                r.contractor.as_deref().unwrap_or("-"),
            )
        })
        .chain(
            events
                .iter()
                .filter(|e| !event_reviewed(e))
                .map(|e| (e.kind.as_str(), e.user.as_str(), e.contractor.as_str())),
        )
        .collect();
    let mut unreviewed_by_rule: BTreeMap<&str, u64> = BTreeMap::new();
    let mut unreviewed_by_user: BTreeMap<&str, u64> = BTreeMap::new();
    let mut unreviewed_by_contractor: BTreeMap<&str, u64> = BTreeMap::new();
    for (rule, user, contractor) in &unreviewed {
        *unreviewed_by_rule.entry(rule).or_default() += 1;
        *unreviewed_by_user.entry(user).or_default() += 1;
        *unreviewed_by_contractor.entry(contractor).or_default() += 1;
    }
    let tz = state.services.inventory().timezone();
    let mut by_rule: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_user: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_day: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        *by_rule.entry(&r.rule).or_default() += 1;
        *by_user.entry(r.user.as_deref().unwrap_or("-")).or_default() += 1;
        *by_day
            .entry(
                r.started_at
                    .with_timezone(&tz)
                    .format("%Y-%m-%d")
                    .to_string(),
            )
            .or_default() += 1;
    }
    let counts = |id: &str, title: &'static str, head: &'static str, items: Vec<(String, u64)>| {
        let max = items.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
        let mut s = format!(
            "<section><h2>{}</h2><table id=\"{id}\"><thead><tr><th>{}</th><th>{}</th><th></th></tr></thead><tbody>",
            tr(lang, title),
            tr(lang, head),
            tr(lang, "field.count")
        );
        for (k, n) in items {
            let _ = write!(
                s,
                "<tr><td>{}</td><td class=\"num\">{n}</td><td><span class=\"bar\" style=\"width:{}px\"></span></td></tr>",
                escape(&k),
                n * 200 / max
            );
        }
        s.push_str("</tbody></table></section>");
        s
    };
    let mut body = format!(
        "<h1>{}</h1><form method=\"get\" action=\"/denials\"><label>{} <input name=\"days\" type=\"number\" min=\"1\" max=\"{MAX_DASHBOARD_DAYS}\" value=\"{days}\"></label> <label><input type=\"checkbox\" name=\"unreviewed\" value=\"1\"{}> {}</label> <button>{}</button> <a id=\"denials-csv\" href=\"/denials.csv?days={days}\">{}</a></form>\
         <p id=\"unreviewed-count\">{}: <strong>{}</strong> / {}</p><div class=\"dashboard\">",
        tr(lang, "denials.title"),
        tr(lang, "denials.days"),
        if q.unreviewed_only() { " checked" } else { "" },
        tr(lang, "review.unreviewed_only"),
        tr(lang, "filter.apply"),
        tr(lang, "review.csv"),
        tr(lang, "review.unreviewed"),
        unreviewed.len(),
        rows.len() + events.len(),
    );
    let mut rules: Vec<(String, u64)> = by_rule
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
    rules.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut users: Vec<(String, u64)> = by_user
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
    users.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    body.push_str(&counts("by-rule", "denials.by_rule", "field.rule", rules));
    body.push_str(&counts("by-user", "denials.by_user", "field.user", users));
    body.push_str(&counts(
        "by-day",
        "denials.by_day",
        "field.day",
        by_day.into_iter().collect(),
    ));
    let sorted = |m: BTreeMap<&str, u64>| {
        let mut v: Vec<(String, u64)> = m.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    };
    body.push_str(&counts(
        "unreviewed-by-rule",
        "review.unreviewed_by_rule",
        "field.rule",
        sorted(unreviewed_by_rule),
    ));
    body.push_str(&counts(
        "unreviewed-by-user",
        "review.unreviewed_by_user",
        "field.user",
        sorted(unreviewed_by_user),
    ));
    body.push_str(&counts(
        "unreviewed-by-contractor",
        "review.unreviewed_by_contractor",
        "field.contractor",
        sorted(unreviewed_by_contractor),
    ));
    let _ = write!(
        body,
        "</div><h2>{}</h2><table id=\"denials\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        tr(lang, "denials.list"),
        tr(lang, "field.time"),
        tr(lang, "field.user"),
        tr(lang, "field.source"),
        tr(lang, "field.target"),
        tr(lang, "field.protocol"),
        tr(lang, "field.rule"),
        tr(lang, "field.reason"),
        tr(lang, "review.title"),
    );
    let listed = rows
        .iter()
        .filter(|r| !q.unreviewed_only() || !denial_reviewed(r))
        .take(DENIALS_LISTED);
    for r in listed {
        let _ = write!(
            body,
            "<tr class=\"denial-row\" id=\"d-{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.id,
            fmt_time(&state, r.started_at),
            escape(r.user.as_deref().unwrap_or("")),
            r.source,
            escape(r.target.as_deref().unwrap_or("")),
            r.protocol,
            escape(&r.rule),
            escape(&super::i18n::reasons::denial_reason(lang, r)),
            super::reviews::review_cell(
                &caller,
                ReviewSubject::Denial(r.id),
                reviews.get(&ReviewSubject::Denial(r.id)),
                days
            ),
        );
    }
    body.push_str("</tbody></table>");
    let listed: Vec<&PolicyEventRow> = events
        .iter()
        .filter(|e| !q.unreviewed_only() || !event_reviewed(e))
        .take(DENIALS_LISTED)
        .collect();
    body.push_str(&super::reviews::policy_event_table(
        &state, &caller, &listed, &reviews, days,
    ));
    page(&caller, tr(lang, "denials.title"), &body).into_response()
}
